"""oldschool.budgets: each chapter's GPU budget from shapes, under 12 GB, in README."""

from pathlib import Path

import pytest
import torch.nn as nn

from oldschool import budgets, config, guidance, workloads

ROOT = Path(__file__).resolve().parents[1]


def test_forward_profile_counts_a_small_network_by_hand():
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    profile = budgets.forward_profile(model, lambda m, b: m(workloads._empty(b, 3)))
    # float32 bytes of each leaf's output
    assert profile["activations"] == (5 + 5 + 2) * 4
    assert profile["largest"] == 5 * 4
    assert profile["flops"] == 2 * (3 * 5 + 5 * 2)
    assert profile["calls"] == 3


def test_budget_parameters_are_the_models_own():
    model = guidance.class_conditional_unet(config.settings("ch7", "gpu", False))
    row = budgets.chapter_budget("ch7")
    assert row["parameters"] == sum(p.numel() for p in model.parameters())
    assert row["weights"] == 2 * 4 * row["parameters"]  # float32, and its EMA copy
    # plus gradients and Adam
    assert row["peak"] > row["weights"] + row["resident"] + row["activations"]


def test_a_bigger_batch_needs_more_memory(monkeypatch):
    small = budgets.chapter_budget("ch7")
    gpu = dict(
        config.CHAPTERS["ch7"]["gpu"],
        batch_size=4 * config.CHAPTERS["ch7"]["gpu"]["batch_size"],
    )
    monkeypatch.setitem(config.CHAPTERS, "ch7", {**config.CHAPTERS["ch7"], "gpu": gpu})
    big = budgets.chapter_budget("ch7")
    assert big["activations"] == pytest.approx(4 * small["activations"])
    assert big["peak"] > small["peak"] and big["gpu_seconds"] > small["gpu_seconds"]


@pytest.mark.parametrize("chapter", sorted(config.CHAPTERS))
def test_every_chapter_fits_under_12_gb(chapter):
    # a KeyError names a chapter with no workload listed
    row = budgets.chapter_budget(chapter)
    assert row["peak"] < budgets.LIMIT_BYTES, (
        f"{chapter}: estimated peak {row['peak'] / 1e9:.1f} GB "
        f"(largest step: {row['peak_loop']}) is over "
        f"{budgets.LIMIT_BYTES / 1e9:.0f} GB: "
        "shrink its gpu column"
    )


def test_the_readme_carries_the_table_for_every_chapter():
    text = (ROOT / "README.md").read_text()
    section = text.split("<!-- gpu-budget:start -->", 1)[1].split(
        "<!-- gpu-budget:end -->", 1
    )[0]
    for chapter in config.CHAPTERS:
        assert f"| {chapter} |" in section, (
            f"README's GPU budget table lacks {chapter}: run make gpu-budget"
        )


def test_readme_table_has_one_row_per_chapter_and_right_aligned_numbers():
    rows = [
        dict(
            chapter="chX",
            parameters=2.5e6,
            weights=1e9,
            resident=0,
            activations=2e9,
            peak=16e9,
            peak_loop="train",
            gpu_seconds=90.0,
        )
    ]
    lines = budgets.readme_table(rows, {"chX": 3e9}).splitlines()
    assert lines[1] == "|---|---:|---:|---:|---:|---:|---|---:|---:|---|"
    assert lines[2] == (
        "| chX | 2.50 M | 1.00 | 0.00 | 2.00 | 16.00 | no | 1.5 | 3.00 | train |"
    )
