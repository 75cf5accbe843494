"""oldschool.trajectory_figure: the explorers' panels, their density, static figures."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from oldschool import gaussian_mixture, trajectories, trajectory_figure  # noqa: E402
from oldschool.sde import VESDE, VPSDE, SubVPSDE  # noqa: E402

MIXTURE = gaussian_mixture.example_mixture()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize(
    "sde", [VPSDE(), SubVPSDE(0.5, 10.0), VESDE()], ids=["vp", "subvp", "ve"]
)
def test_density_columns_match_density_over_time(sde):
    """The one-expression density of the paths' background is
    trajectories.density_over_time."""
    times = torch.tensor([1e-3, 0.05, 0.4, 1.0], dtype=torch.float64)
    grid = torch.linspace(-2, 2, 41, dtype=torch.float64)
    expected = trajectories.density_over_time(MIXTURE, sde, times, grid, normalize=True)
    torch.testing.assert_close(
        trajectory_figure.density_columns(MIXTURE, sde, times, grid), expected
    )


def test_static_figures():
    fig = trajectory_figure.explorer_figure(
        MIXTURE,
        trajectory_figure.make_sde("sub-VP"),
        sampler="ddim",
        steps=10,
        n_points=100,
    )
    assert len(fig.axes) == 3 and "NFE 10" in fig.axes[2].get_title()
    fig = trajectory_figure.sde_vs_ode_figure(
        MIXTURE, trajectory_figure.make_sde("VE"), steps=10, n_points=100
    )
    assert len(fig.axes) == 3
    with pytest.raises(ValueError, match="unknown SDE kind"):
        trajectory_figure.make_sde("VX")
    with pytest.raises(ValueError, match="unknown sampler"):
        trajectory_figure.explorer_figure(MIXTURE, VPSDE(), sampler="rk4")
