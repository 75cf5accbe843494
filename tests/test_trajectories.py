"""oldschool.trajectories: recorded paths, densities over time, plots, animations."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from oldschool import gaussian_mixture, ode_solvers, samplers, trajectories  # noqa: E402
from oldschool.sde import VESDE, VPSDE  # noqa: E402

MIXTURE = gaussian_mixture.example_mixture()


@pytest.fixture(autouse=True)
def one_thread_and_close():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny 2-D problems: threads only cost time
    yield
    torch.set_num_threads(threads)
    plt.close("all")


def test_record_keeps_every_state():
    sde = VPSDE()
    x = sde.prior_sample((50, 2), generator=torch.Generator().manual_seed(0))
    ts, xs = trajectories.record(
        ode_solvers.ode_heun, sde, MIXTURE.score_fn(sde), x, 10
    )
    assert ts.shape == (11,) and xs.shape == (11, 50, 2)
    assert ts[0] == 1.0 and torch.equal(xs[0], x)
    torch.testing.assert_close(
        xs[-1], ode_solvers.ode_heun(sde, MIXTURE.score_fn(sde), x, 10)
    )
    ts_f, xs_f = trajectories.record_forward(
        sde, xs[-1], 5, generator=torch.Generator().manual_seed(1)
    )
    assert ts_f[0] == 0.0 and ts_f[-1] == 1.0 and xs_f.shape == (6, 50, 2)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_density_over_time_is_normalized(sde):
    grid = torch.linspace(-4, 4, 801)
    ts = torch.tensor([0.0, 0.1, 0.5, 1.0])
    density = trajectories.density_over_time(MIXTURE, sde, ts, grid, normalize=True)
    assert density.shape == (4, 801)
    mass = density.sum(1) * (grid[1] - grid[0])
    torch.testing.assert_close(mass, torch.ones(4, dtype=mass.dtype), atol=2e-3, rtol=0)


def test_coordinate_marginal():
    one = MIXTURE.coordinate(1)
    x = torch.randn(
        20000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    assert one.dim == 1 and torch.equal(one.means[:, 0], MIXTURE.means[:, 1])
    with pytest.raises(ValueError, match="coordinate"):
        MIXTURE.coordinate(2)
    assert torch.isfinite(one.log_prob(x[:, :1])).all()


def test_plots_and_animation():
    sde = VESDE()
    x = sde.prior_sample((40, 2), generator=torch.Generator().manual_seed(0))
    ts, xs = trajectories.record(
        samplers.euler_maruyama,
        sde,
        MIXTURE.score_fn(sde),
        x,
        12,
        generator=torch.Generator().manual_seed(1),
    )
    grid = torch.linspace(-2, 2, 50)
    density = trajectories.density_over_time(MIXTURE, sde, ts, grid, normalize=True)
    ax = trajectories.plot_paths(
        ts, xs, density=density, grid=grid, sde=sde, normalize=True
    )
    image = ax.images[0].get_array()
    assert image.shape == (50, 13)
    torch.testing.assert_close(
        torch.as_tensor(image[:, 0]), density[-1]
    )  # left column is t = eps
    trajectories.plot_points(xs[-1], background=MIXTURE)
    trajectories.plot_score_field(MIXTURE.score_fn(sde), 0.1, sde=sde)
    trajectories.plot_error_vs_nfe({"a": ([10, 20], [1e-2, 5e-3])})
    anim = trajectories.animate(ts, xs, MIXTURE, sde, frames=4)
    html = trajectories.to_html(anim).data
    assert "<script" in html and html.count("frames[") >= 4
