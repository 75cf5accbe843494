"""oldschool.flow_matching: the loss and its minimizer, t sampling and the shift,
reflow's straightness, the score transfer between paths, the weighting in log-SNR."""

import math

import pytest
import sympy as sp
import torch

from oldschool import denoising, flow_matching as fm, gaussian_mixture
from oldschool import nets, ode_solvers, symbolic
from oldschool.sde import VESDE, VPSDE, LinearPath, SubVPSDE


def gaussian_data(mean=0.4, std=0.5):
    """x0 ~ N(mean, std^2 I) in 2-D, as a one-component mixture (its velocity in closed
    form)."""
    return gaussian_mixture.GaussianMixture(
        [1.0], [[mean, -mean]], (std**2 * torch.eye(2, dtype=torch.float64))[None]
    )


# ------------------------------------------------------------- t sampling and the shift


def bin_probabilities(density, low, high, bins):
    """The probability of each of ``bins`` equal bins of [low, high] under ``density``
    (trapezoid)."""
    fine = torch.linspace(low, high, bins * 200 + 1, dtype=torch.float64)
    values = density(fine)
    return torch.stack(
        [
            torch.trapezoid(
                values[i * 200 : (i + 1) * 200 + 1], fine[i * 200 : (i + 1) * 200 + 1]
            )
            for i in range(bins)
        ]
    )


def assert_histogram_matches(samples, density, low=0.02, high=0.98, bins=24):
    counts = torch.histc(samples, bins=bins, min=low, max=high) / len(samples)
    expected = bin_probabilities(density, low, high, bins)
    se = (expected * (1 - expected) / len(samples)).sqrt()
    assert ((counts - expected).abs() < 5 * se + 1e-4).all(), (counts - expected) / se


def test_logit_normal_density_matches_its_samples_and_integrates_to_one():
    t = fm.logit_normal_times(
        400_000,
        mean=0.3,
        std=0.8,
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64,
    )
    assert_histogram_matches(t, lambda u: fm.logit_normal_density(u, 0.3, 0.8))
    # the check can fail:
    wrong = lambda u: fm.logit_normal_density(u, 0.3, 0.9)  # noqa: E731
    with pytest.raises(AssertionError):
        assert_histogram_matches(t, wrong)
    grid = torch.linspace(1e-6, 1 - 1e-6, 200_001, dtype=torch.float64)
    assert abs(torch.trapezoid(fm.logit_normal_density(grid), grid).item() - 1) < 1e-4


@pytest.mark.parametrize("shift", [0.5, 3.0, fm.flux_shift(4096)])
def test_shifted_density_matches_shifted_samples(shift):
    gen = torch.Generator().manual_seed(1)
    for base_sample, base_density in (
        (
            torch.rand(400_000, generator=gen, dtype=torch.float64),
            lambda t: torch.ones_like(t),
        ),
        (
            fm.logit_normal_times(400_000, generator=gen, dtype=torch.float64),
            fm.logit_normal_density,
        ),
    ):
        t = fm.shift_time(base_sample, shift)
        assert_histogram_matches(
            t, lambda u: fm.shifted_density(u, shift, base_density)
        )
        grid = torch.linspace(1e-6, 1 - 1e-6, 200_001, dtype=torch.float64)
        assert (
            abs(
                torch.trapezoid(
                    fm.shifted_density(grid, shift, base_density), grid
                ).item()
                - 1
            )
            < 1e-3
        )


def test_shift_is_a_constant_move_in_log_snr_and_the_published_values():
    lin = LinearPath()
    t = torch.linspace(0.01, 0.9, 50, dtype=torch.float64)
    for s in (0.5, 3.0, 7.0):
        shifted = fm.shift_time(t, s).clamp(max=lin.T)
        torch.testing.assert_close(lin.lam(shifted), lin.lam(t) - 2 * math.log(s))
    assert (
        fm.shift_time(torch.tensor(1.0), 3.0) == 1.0
        and fm.shift_time(torch.tensor(0.0), 3.0) == 0.0
    )
    assert (
        fm.resolution_shift(1024 * 1024) == 4.0
        and fm.resolution_shift(256 * 256) == 1.0
    )
    assert fm.flux_shift(256) == pytest.approx(math.exp(0.5))
    assert fm.flux_shift(4096) == pytest.approx(math.exp(1.15))
    assert fm.flux_shift(1024) == pytest.approx(math.exp(0.5 + 0.65 * 768 / 3840))
    with pytest.raises(ValueError, match="shift must be positive"):
        fm.shift_time(t, 0.0)


def test_sample_times_stay_on_the_path():
    lin = LinearPath()
    for sampling in ("uniform", "logit_normal"):
        t = fm.sample_times(
            100_000,
            lin,
            sampling=sampling,
            shift=10.0,
            generator=torch.Generator().manual_seed(2),
        )
        assert t.min() >= 0 and t.max() <= lin.T and t.shape == (100_000,)
    with pytest.raises(ValueError, match="sampling must be"):
        fm.sample_times(4, lin, sampling="cosine")


# ----------------------------------------------------------- the loss and its minimizer


def test_velocity_from_score_is_eq_18_symbolically():
    difference, (f, g2), t = symbolic.velocity_from_score()
    assert difference == 0
    assert (
        sp.simplify(f - (-1 / (1 - t))) == 0 and sp.simplify(g2 - 2 * t / (1 - t)) == 0
    )


@pytest.mark.parametrize(
    "path",
    [LinearPath(), VPSDE(), VESDE(), SubVPSDE()],
    ids=["linear", "vp", "ve", "subvp"],
)
def test_cfm_loss_is_dsm_loss_with_the_velocity_parameterization(path):
    torch.manual_seed(0)
    model = nets.ScoreMLP(hidden=16, layers=1, embed_dim=8).double()
    torch.nn.init.normal_(model.x_out.weight, std=0.3)
    x0 = torch.randn(256, 2, dtype=torch.float64)
    t = 0.01 + 0.98 * torch.rand(256, dtype=torch.float64)
    eps = torch.randn(
        x0.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    ours, ours_parts = fm.velocity_regression(model, x0, eps, t, path)
    theirs, theirs_parts = denoising.dsm_loss(
        model, x0, path, "velocity", t=t, generator=torch.Generator().manual_seed(3)
    )
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(ours_parts["mse_eps"], theirs_parts["mse_eps"])


def test_the_flow_matching_minimizer_is_the_marginal_velocity():
    """Gaussian data on the linear path: the marginal velocity is linear in x, so least
    squares on (x_t, eps - x0) samples finds it; the loss of the exact field is
    Var(target | x_t) in closed form, and any other field pays E||delta||^2 on top (the
    loss is a conditional-mean regression)."""
    data, lin, n = gaussian_data(), LinearPath(), 400_000
    gen = torch.Generator().manual_seed(4)
    x0 = data.sample(n, generator=gen, dtype=torch.float64)
    for t_value in (0.1, 0.5, 0.9):
        t = torch.full((n,), t_value, dtype=torch.float64)
        eps = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        x_t = (1 - t_value) * x0 + t_value * eps
        features = torch.cat(
            [x_t, torch.ones(n, 1, dtype=torch.float64)], 1
        )  # (n, 3): u = A x + b
        coef = torch.linalg.lstsq(features, eps - x0).solution  # (3, 2)
        probe = torch.randn(64, 2, generator=gen, dtype=torch.float64)
        fitted = torch.cat([probe, torch.ones(64, 1, dtype=torch.float64)], 1) @ coef
        torch.testing.assert_close(
            fitted, data.velocity(probe, t_value, lin), atol=0.01, rtol=0.01
        )

        loss, _ = fm.velocity_regression(
            lambda x, t: data.velocity(x, t, lin), x0, eps, t, lin
        )
        s2, a = 0.25, 1 - t_value  # Var(x0), alpha
        var_target = (
            1 + s2 - (t_value - a * s2) ** 2 / (a**2 * s2 + t_value**2)
        )  # per coordinate
        assert abs(float(loss) / var_target - 1) < 0.01
        worse, _ = fm.velocity_regression(
            lambda x, t: data.velocity(x, t, lin) + 0.3, x0, eps, t, lin
        )
        assert abs(float(worse - loss) - 0.09) < 0.01  # + E||delta||^2 / D = 0.3^2


def test_cfm_loss_trains_a_model_towards_the_exact_velocity():
    data, lin = gaussian_data(), LinearPath()
    torch.manual_seed(0)
    model = nets.ScoreMLP(hidden=32, layers=2, embed_dim=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(5)
    probe = data.sample(512, generator=gen)
    t_probe = torch.full((512,), 0.5)
    x_probe = 0.5 * probe + 0.5 * torch.randn(512, 2, generator=gen)

    def error():
        with torch.no_grad():
            return float(
                (model(x_probe, t_probe) - data.velocity(x_probe, t_probe, lin))
                .pow(2)
                .mean()
            )

    before = error()
    for _ in range(300):
        loss, parts = fm.cfm_loss(
            model,
            data.sample(256, generator=gen),
            lin,
            sampling="logit_normal",
            generator=gen,
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert set(parts) == {"mse_eps", "mse_x0"}
    assert error() < 0.1 * before


# ------------------------------------------------------- reflow, straightness, transfer


def test_straightness_of_known_curves():
    ts = torch.linspace(0, 1, 2001, dtype=torch.float64)
    line = torch.stack([2 * ts, -ts], -1)[
        :, None, :
    ]  # (steps + 1, 1, 2): a line at constant speed
    assert fm.straightness(ts, line) < 1e-20
    parabola = torch.stack([ts, ts**2], -1)[
        :, None, :
    ]  # chord velocity (1, 1), dx/dt = (1, 2t)
    assert fm.straightness(ts, parabola) == pytest.approx(
        1 / 3, rel=1e-3
    )  # int (2t - 1)^2 dt
    assert fm.straightness(ts.flip(0), parabola.flip(0)) == pytest.approx(
        1 / 3, rel=1e-3
    )
    assert fm.length_ratio(line) == pytest.approx(1.0)
    accelerating = torch.stack([ts**3, -(ts**3)], -1)[
        :, None, :
    ]  # straight, not constant speed
    assert (
        fm.length_ratio(accelerating) == pytest.approx(1.0)
        and fm.straightness(ts, accelerating) > 0.5
    )
    half_circle = torch.stack([torch.cos(math.pi * ts), torch.sin(math.pi * ts)], -1)[
        :, None, :
    ]
    assert fm.length_ratio(half_circle) == pytest.approx(math.pi / 2, rel=1e-5)


def test_a_point_mass_flows_in_straight_lines_on_the_linear_path_only():
    """Data = one point: the linear path's ODE paths are straight (S ~ 0), the VP SDE's
    are not."""
    point = gaussian_mixture.GaussianMixture(
        [1.0], [[0.5, -0.3]], (1e-10 * torch.eye(2, dtype=torch.float64))[None]
    )
    noise = torch.randn(
        64, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64
    )
    s = {}
    for name, path in (("linear", LinearPath()), ("vp", VPSDE())):
        ts, xs = [], []
        fm.integrate(
            ode_solvers.ode_heun,
            path,
            point.score_fn(path),
            noise,
            200,
            callback=lambda i, t, x: (ts.append(float(t)), xs.append(x)),
        )
        s[name] = fm.straightness(
            torch.tensor(ts, dtype=torch.float64), torch.stack(xs)
        )
    assert s["linear"] < 1e-6 and s["vp"] > 0.1


def test_reflow_pairs_and_loss():
    data, lin = gaussian_data(), LinearPath()
    eps = torch.randn(
        128, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64
    )
    x0, same = fm.reflow_pairs(ode_solvers.ode_heun, lin, data.score_fn(lin), eps, 50)
    assert same is eps
    torch.testing.assert_close(
        x0, ode_solvers.ode_heun(lin, data.score_fn(lin), eps, 50)
    )
    model = lambda x, t: x * 0.1  # noqa: E731
    loss, _ = fm.reflow_loss(
        model, (x0, eps), lin, generator=torch.Generator().manual_seed(8)
    )
    t = fm.sample_times(
        128, lin, generator=torch.Generator().manual_seed(8), dtype=torch.float64
    )
    expected, _ = fm.velocity_regression(model, x0, eps, t, lin)
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="eps.*one shape"):
        fm.reflow_loss(model, (x0, eps[:3]), lin)


@pytest.mark.parametrize(
    "source, target",
    [(VPSDE(), LinearPath()), (LinearPath(), VPSDE()), (VESDE(), LinearPath())],
    ids=["vp->linear", "linear->vp", "ve->linear"],
)
def test_transfer_score_gives_the_exact_score_of_the_other_path(source, target):
    mixture = gaussian_mixture.example_mixture()
    x = torch.randn(50, 2, dtype=torch.float64)
    t = torch.linspace(0.01, 0.95, 50, dtype=torch.float64)
    transferred = fm.transfer_score(mixture.score_fn(source), source, target)
    torch.testing.assert_close(
        transferred(x, t), mixture.score(x, t, target), rtol=1e-6, atol=1e-6
    )


def test_lam_weighting_of_rectified_flow():
    """Uniform t, velocity loss, linear path: w(lam) = e^(-lam/2) / 2 (SD3's w_t = t /
    (1 - t) up to their factor); with the eps parameterization w is the density of lam
    and integrates to 1."""
    lin = LinearPath()
    lam = torch.linspace(-12, 12, 2001, dtype=torch.float64)
    torch.testing.assert_close(
        fm.lam_weighting(lin, lam, "velocity"), torch.exp(-lam / 2) / 2
    )
    lam_all = torch.linspace(
        float(lin.lam(torch.tensor(lin.T, dtype=torch.float64))),
        60,
        200_001,
        dtype=torch.float64,
    )  # t in [0, T]
    density = fm.lam_weighting(lin, lam_all, "eps")
    assert abs(torch.trapezoid(density, lam_all).item() - lin.T) < 1e-6
    logit_normal = fm.lam_weighting(lin, lam, "eps", fm.logit_normal_density)
    # t = sigmoid(-lam / 2) is logit-normal with std 1, so lam is normal with std 2
    torch.testing.assert_close(
        logit_normal, torch.exp(-(lam**2) / 8) / math.sqrt(8 * math.pi)
    )


def test_error_vs_nfe_counts_evaluations_and_converges():
    lin, data = LinearPath(), gaussian_data()
    x = torch.randn(
        32, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64
    )
    reference = ode_solvers.ode_rk45(
        lin, data.score_fn(lin), x, 1, rtol=1e-10, atol=1e-10
    )
    nfes, errors = fm.error_vs_nfe(
        ode_solvers.ode_heun, lin, data.score_fn(lin), x, (2, 4, 8, 16), reference
    )
    assert nfes == [4, 8, 16, 32]
    assert all(b < a for a, b in zip(errors, errors[1:]))
    assert fm.nfe_to_reach(nfes, errors, errors[2] * 1.01) == 16
    assert fm.nfe_to_reach(nfes, errors, 0.0) == math.inf
