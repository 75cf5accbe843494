"""oldschool.workloads: every chapter's GPU column is listed; its loops are sound."""

import pytest

from oldschool import config, guidance, workloads


@pytest.mark.parametrize("chapter", sorted(config.CHAPTERS))
def test_every_chapter_has_a_workload_whose_loops_use_its_models(chapter):
    assert chapter in workloads.WORKLOADS, f"no workload listed for {chapter}"
    work = workloads.WORKLOADS[chapter](config.settings(chapter, "gpu", False))
    assert work.loops and any(loop.train for loop in work.loops)
    for loop in work.loops:
        assert loop.model in work.models, (chapter, loop.what)
        assert loop.batch >= 1 and loop.repeats >= 1, (chapter, loop.what)
    assert all(size >= 0 for size in work.resident.values())


def test_the_chapter_7_workload_builds_the_chapters_denoiser():
    S = config.settings("ch7", "gpu", False)
    work = workloads.WORKLOADS["ch7"](S)
    ((builder, ema),) = work.models.values()
    built, chapters = builder(), guidance.class_conditional_unet(S)
    assert ema and built.unet.config == chapters.unet.config
    shapes = {k: tuple(v.shape) for k, v in built.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in chapters.state_dict().items()}
