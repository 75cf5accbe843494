"""GPU mode without a GPU: the device override, the cap on long loops, and the dry-run runner."""

import nbformat
import pytest
import torch

from conftest import load_script
from oldschool import config


def test_gpu_mode_runs_on_the_device_override(monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, "gpu")
    monkeypatch.setenv(config.DEVICE_ENV_VAR, "cpu")
    assert config.mode() == "gpu" and config.device() == torch.device("cpu")
    assert config.settings("ch3").mode == "gpu"
    monkeypatch.setenv(config.ENV_VAR, "cpu")
    monkeypatch.setenv(config.DEVICE_ENV_VAR, "meta")
    assert config.device() == torch.device("meta")  # the override holds in either mode
    monkeypatch.setenv(config.DEVICE_ENV_VAR, "gpu0")
    with pytest.raises(
        ValueError, match="OLDSCHOOL_DEVICE='gpu0' is not a torch device"
    ):
        config.device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpu_mode_without_cuda_or_override_is_still_refused(monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, "gpu")
    monkeypatch.delenv(config.DEVICE_ENV_VAR, raising=False)
    with pytest.raises(RuntimeError, match="OLDSCHOOL_DEVICE=cpu"):
        config.mode()


def test_the_cap_switch(monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, "cpu")
    monkeypatch.delenv(config.CAP_ENV_VAR, raising=False)
    S = config.settings("ch1")
    assert S.capped is False and S.steps == config.CHAPTERS["ch1"]["cpu"]["steps"]
    monkeypatch.setenv(config.CAP_ENV_VAR, "1")
    assert config.settings("ch1").capped is True and config.settings("ch1").steps == 2
    monkeypatch.setenv(config.CAP_ENV_VAR, "yes")
    with pytest.raises(ValueError, match="OLDSCHOOL_CAP='yes' must be 0 or 1"):
        config.settings("ch1")


@pytest.mark.parametrize(
    "name, kind",
    [
        ("steps", "training steps"),
        ("beta1_steps", "training steps"),
        ("sweep_steps", "training steps"),
        ("sample_steps", "solver steps"),
        ("sim_steps", "solver steps"),
        ("n_samples", "sample count"),
        ("mc_samples", "sample count"),
        ("is_images", "sample count"),
        ("per_class", "sample count"),
        ("n_train", "sample count"),
        ("frames", "animation frames"),
        ("batch_size", "batch size"),
        ("step_counts", "sweep"),
        ("guidance_scales", "sweep"),
        ("betas", "sweep"),
        ("tolerances", "sweep"),
        ("hidden", None),
        ("block_out_channels", None),
        ("patch", None),
        ("latent_dim", None),
        ("ema_decay", None),
        ("sweep_hidden", None),
        ("sweep_latent_dim", None),
        ("lr", None),
        ("channels", None),
        ("layers_per_block", None),
    ],
)
def test_cap_rules_classify_settings_by_name(name, kind):
    rule = config.cap_rule(name)
    assert (rule[0] if rule else None) == kind


@pytest.mark.parametrize("chapter", sorted(config.CHAPTERS))
def test_a_capped_gpu_column_keeps_every_shape_and_shortens_every_loop(chapter):
    full = config.CHAPTERS[chapter]["gpu"]
    capped = vars(config.settings(chapter, "gpu", capped_run=True))
    for name, value in full.items():
        short = capped[name]
        assert type(short) is type(value), name
        if config.cap_rule(name) is None and name not in config.CAP_OVERRIDES.get(
            chapter, {}
        ):
            assert short == value, f"{chapter}.{name} is a shape; the cap must keep it"
        elif isinstance(
            override := config.CAP_OVERRIDES.get(chapter, {}).get(name), tuple
        ):
            assert short == override and set(short) <= set(value), (
                name
            )  # a kept sub-sweep
        elif isinstance(value, (tuple, list)):
            assert (
                list(short) == list(value)
                if len(value) <= 2
                else list(short) == [value[0], value[-1]]
            )
        elif isinstance(value, int):
            assert 1 <= short <= value
    # a long loop the rules do not recognize shows up as a big int left in the capped column
    big = {
        n: v
        for n, v in capped.items()
        if isinstance(v, int) and not isinstance(v, bool) and v > 2048
    }
    assert not big, (
        f"{chapter}: {big} look like loop lengths the cap misses; name them per config.CAP_RULES"
    )


def _gpu_check():
    return load_script("benchmarks/gpu_check.py")


def test_the_dry_run_records_assertions_and_fails_on_errors(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# a chapter"),
        nbformat.v4.new_code_cell(
            "x = 1\nassert x == 1\nassert x == 2, f'x is {x}'\nafter = True"
        ),
        nbformat.v4.new_code_cell("def f():\n    assert False\n    return 3\ny = f()"),
        nbformat.v4.new_markdown_cell("text"),
        nbformat.v4.new_code_cell("assert after and y == 3\nundefined_name"),
    ]
    path = tmp_path / "ch99_test.ipynb"
    nbformat.write(nb, path)
    result = _gpu_check().run_chapter(path, capped=True, timeout=120)
    failures = [
        (f["cell"], f["line"], f["test"], f["message"]) for f in result["soft_failures"]
    ]
    assert failures == [(1, 3, "x == 2", "x is 1"), (2, 2, "False", None)]
    assert [e["cell"] for e in result["errors"]] == [4] and "NameError" in result[
        "errors"
    ][0]["error"]
    assert result["peak_rss"] > 10 * 2**20 and result["wall"] > 0

    uncapped = _gpu_check().run_chapter(
        path, capped=False, timeout=120
    )  # assertions stay hard
    assert [e["cell"] for e in uncapped["errors"]] == [1, 2, 4]
    assert uncapped["soft_failures"] == []
