"""oldschool.widgets, the kernel explorers: they redraw what changed, only when it
changed."""

import matplotlib

matplotlib.use("Agg")

import io  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from oldschool import explorer, gaussian_mixture, widgets  # noqa: E402
from oldschool.sde import VPSDE  # noqa: E402

MIXTURE = gaussian_mixture.example_mixture()


pytestmark = pytest.mark.usefixtures("one_thread")


def _pixels(png):
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def test_controls_start_on_their_grids():
    """Every slider's default is one of its values, so the frontend has nothing to snap
    and send."""
    e = widgets.KernelExplorer(MIXTURE, n_points=100, view="sde")
    for name in ("beta_min", "beta_max", "sigma_min", "sigma_max", "steps"):
        control = e.controls[name]
        assert (
            control.value == explorer.DEFAULTS[name]
            and control.value in control.options
        ), name
        assert control.continuous_update is False, f"{name} redraws while dragged"
    assert e.controls["seed"].continuous_update is False


def test_redraw_only_on_change_and_the_image_follows():
    e = widgets.KernelExplorer(MIXTURE, n_points=200, view="sde")
    assert len(e.times) == 1  # the first draw
    first = e.image.value
    assert e.redraw() is False and len(e.times) == 1  # nothing changed
    e.controls["beta_max"].value = explorer.DEFAULTS[
        "beta_max"
    ]  # the same value: no redraw
    assert len(e.times) == 1
    for name, value in [
        ("beta_max", 10.0),
        ("seed", 3),
        ("steps", 20),
        ("sampler", "ddpm_ancestral"),
    ]:
        before = e.image.value
        e.controls[name].value = value
        assert len(e.times) >= 2 and e.image.value != before, (
            f"{name} did not change the image"
        )
    assert e.image.value != first


def test_process_switch_redraws_once_with_an_ode_sampler():
    e = widgets.KernelExplorer(MIXTURE, n_points=100, view="sde")
    count = len(e.times)
    e.controls["process"].value = "ODE"
    assert e.controls["sampler"].value == widgets.ODE_SAMPLERS[0]
    assert len(e.times) == count + 1, "one switch, one redraw"


def test_forward_run_is_kept_when_only_the_sampler_changes():
    e = widgets.KernelExplorer(MIXTURE, n_points=100, view="sde")
    kept = e._forward[1]
    e.controls["sampler"].value = "predictor_corrector"
    assert e._forward[1] is kept
    e.controls["seed"].value = 1
    assert e._forward[1] is not kept


def test_blitted_image_equals_a_full_draw():
    """The background-plus-changes PNG shows what drawing the whole figure shows."""
    e = widgets.KernelExplorer(MIXTURE, n_points=200, view="sde_vs_ode")
    e.controls["kind"].value = "VE"
    blitted = _pixels(e.image.value)
    for artist in e.figure.dynamic:
        artist.set_animated(False)
    buffer = io.BytesIO()
    e.figure.fig.savefig(buffer, format="png", dpi=e.figure.fig.dpi)
    full = _pixels(buffer.getvalue())
    assert blitted.shape == full.shape
    assert np.abs(blitted - full).mean() < 0.5, (
        "the blitted image misses or misplaces artists"
    )


def test_learned_score_and_bad_input():
    vp = VPSDE()
    e = widgets.KernelExplorer(
        MIXTURE, learned=(vp, MIXTURE.score_fn(vp)), n_points=100, view="sde_vs_ode"
    )
    e.controls["score"].value = "learned"
    assert "learned score" in e.status.value
    with pytest.raises(ValueError, match="learned"):
        widgets.KernelExplorer(MIXTURE, learned=(vp,), n_points=100)


def test_explorer_boxes():
    box = widgets.sde_explorer(
        MIXTURE, learned=(VPSDE(), MIXTURE.score_fn(VPSDE())), n_points=100
    )
    assert len(box.children) == 2
    assert widgets.sde_vs_ode_explorer(MIXTURE, n_points=100) is not None
