import pytest
import torch

from oldschool import config


def test_mode_follows_cuda_and_can_be_forced(monkeypatch):
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    assert config.mode() == ("gpu" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv(config.ENV_VAR, "cpu")
    assert config.mode() == "cpu" and config.device() == torch.device("cpu")


def test_unknown_mode_is_refused(monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, "tpu")
    with pytest.raises(ValueError, match="OLDSCHOOL_MODE='tpu'"):
        config.mode()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_forcing_gpu_without_cuda_is_an_error(monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, "gpu")
    with pytest.raises(RuntimeError, match="no CUDA"):
        config.mode()


@pytest.mark.parametrize("chapter", sorted(config.CHAPTERS))
def test_both_modes_have_the_same_settings(chapter):
    cpu, gpu = config.CHAPTERS[chapter]["cpu"], config.CHAPTERS[chapter]["gpu"]
    assert set(cpu) == set(gpu), (
        f"{chapter}: cpu and gpu columns name different settings"
    )
    assert config.settings(chapter, "gpu").mode == "gpu"


def test_unknown_chapter_and_mode_are_refused():
    with pytest.raises(KeyError, match="ch99"):
        config.settings("ch99")
    with pytest.raises(ValueError, match="mode 'fast'"):
        config.settings("ch1", "fast")


def test_progress_switch(monkeypatch):
    monkeypatch.setenv(config.PROGRESS_ENV_VAR, "0")
    assert config.progress() is False
    monkeypatch.setenv(config.PROGRESS_ENV_VAR, "yes")
    with pytest.raises(ValueError, match="must be 0 or 1"):
        config.progress()
