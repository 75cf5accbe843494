"""The GPU budget of every chapter: estimated from shapes, under 12 GB, and in the README."""

from pathlib import Path

import pytest
import torch.nn as nn

from oldschool import budgets, config, guidance, unet

ROOT = Path(__file__).resolve().parents[1]


def test_forward_profile_counts_a_small_network_by_hand():
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    profile = budgets.forward_profile(model, lambda m, b: m(budgets._empty(b, 3)))
    assert (
        profile["activations"] == (5 + 5 + 2) * 4
    )  # float32 bytes of each leaf's output
    assert profile["largest"] == 5 * 4
    assert profile["flops"] == 2 * (3 * 5 + 5 * 2)
    assert profile["calls"] == 3


def test_budget_parameters_are_the_models_own():
    S = config.settings("ch7", "gpu", capped_run=False)
    model = guidance.ClassConditionalUNet(
        unet.tiny_unet(
            channels=S.channels,
            layers_per_block=S.layers_per_block,
            heads=S.heads,
            cross_attention_dim=S.context_dim,
            groups=S.groups,
        ),
        num_classes=10,
    )
    row = budgets.chapter_budget("ch7")
    assert row["parameters"] == sum(p.numel() for p in model.parameters())
    assert row["weights"] == 2 * 4 * row["parameters"]  # float32, and its EMA copy
    assert (
        row["peak"] > row["weights"] + row["resident"] + row["activations"]
    )  # plus gradients and Adam


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
    row = budgets.chapter_budget(
        chapter
    )  # a KeyError names a chapter with no workload listed
    assert row["peak"] < budgets.LIMIT_BYTES, (
        f"{chapter}: estimated peak {row['peak'] / 1e9:.1f} GB (largest step: {row['peak_loop']}) "
        f"is over {budgets.LIMIT_BYTES / 1e9:.0f} GB: shrink its gpu column"
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
