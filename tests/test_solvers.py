"""Time grids and the newer ODE samplers: endpoints, exact grid mapping, convergence orders
against the exact ODE solution, identities, and the k-diffusion peer on the same score."""

import pytest
import torch

from oldschool import gaussian_mixture, samplers, solver_study
from oldschool.sde import VESDE, VPSDE, DiscreteVP, GaussianPath, SubVPSDE

MIXTURE = gaussian_mixture.example_mixture()
PATHS = {
    "vp": VPSDE(),
    "subvp": SubVPSDE(),
    "ve": VESDE(),
    "sd": DiscreteVP.stable_diffusion(),
}


pytestmark = pytest.mark.usefixtures("one_thread")


class LinearPath(GaussianPath):
    """alpha = 1 - t, sigma = t (rectified flow's path), written here from the definitions
    alone, to check that the samplers need nothing beyond alpha, sigma, lam and t_of_lam."""

    def alpha(self, t):
        return 1 - t

    def sigma(self, t):
        return t + 0.0

    def f(self, t):
        return -1 / (1 - t)  # d log alpha / dt

    def g2(self, t):
        return 2 * t + 2 * t**2 / (1 - t)  # d sigma^2/dt - 2 f sigma^2

    def t_of_lam(self, lam):
        return torch.sigmoid(-lam / 2)  # (1 - t) / t = exp(lam / 2)


@pytest.mark.parametrize("schedule", samplers.SCHEDULES)
@pytest.mark.parametrize("path", sorted(PATHS))
def test_grid_endpoints_monotone_and_exact_mapping(path, schedule):
    sde = PATHS[path]
    ts = samplers.time_grid(sde, 12, t_min=2e-3, schedule=schedule)
    assert ts.shape == (13,) and ts.dtype == torch.float64
    assert float(ts[0]) == sde.T and float(ts[-1]) == 2e-3
    assert (ts[1:] < ts[:-1]).all()
    lam = sde.lam(ts)
    if schedule == "logsnr":  # equal steps in lam: the map lam -> t is exact
        steps = lam[1:] - lam[:-1]
        torch.testing.assert_close(steps, steps.mean().expand(12), rtol=1e-7, atol=1e-9)
    elif schedule == "edm":  # equal steps in (sigma / alpha)^(1/7)
        root = samplers.noise_levels(sde, ts) ** (1 / 7)
        steps = root[1:] - root[:-1]
        torch.testing.assert_close(steps, steps.mean().expand(12), rtol=1e-7, atol=1e-9)
    else:
        steps = ts[1:] - ts[:-1]
        torch.testing.assert_close(steps, steps.mean().expand(12))


@pytest.mark.parametrize("path", ["vp", "subvp", "ve"])
def test_t_of_lam_inverts_lam(path):
    sde = PATHS[path]
    t = torch.linspace(1e-3, 1.0, 200, dtype=torch.float64)
    torch.testing.assert_close(sde.t_of_lam(sde.lam(t)), t, rtol=1e-9, atol=1e-12)


def test_grid_and_int_agree_and_bad_grids_fail():
    sde = VPSDE()
    x = sde.prior_sample((50, 2), generator=torch.Generator().manual_seed(0))
    score = MIXTURE.score_fn(sde)
    by_int = samplers.dpm_solver_2m(sde, score, x, 8, t_min=0.01)
    by_grid = samplers.dpm_solver_2m(
        sde, score, x, samplers.time_grid(sde, 8, t_min=0.01)
    )
    torch.testing.assert_close(by_int, by_grid)
    with pytest.raises(ValueError, match="strictly decreasing"):
        samplers.ddim(sde, score, x, torch.tensor([0.5, 0.6, 0.1]))
    with pytest.raises(ValueError, match="t_min is for an int"):
        samplers.ddim(sde, score, x, samplers.time_grid(sde, 4), t_min=0.1)
    with pytest.raises(ValueError, match="unknown schedule"):
        samplers.time_grid(sde, 4, schedule="cosine")
    with pytest.raises(ValueError, match="final"):
        samplers.euler_maruyama(sde, score, x, 4, final="none")


def _errors(name, sde, x, reference, nfes, schedule):
    score = MIXTURE.score_fn(sde)
    return [
        (
            nfe,
            solver_study.mean_error(
                solver_study.run(name, sde, score, x, nfe, schedule)[0], reference
            ),
        )
        for nfe in nfes
    ]


# Orders measured against the exact ODE solution, between the last two NFEs of each sweep.
# dpm_solver_3m starts with one first-order step, whose O(h^2) local error caps its global
# order at 2 (its third order shows pre-asymptotically: see chapter 6).
ORDERS = {
    "ode_euler": (1, (160, 320)),
    "ddim": (1, (1280, 2560)),
    "edm_heun": (2, (160, 320)),
    "dpm_solver_2m": (2, (160, 320)),
    "dpm_solver_3m": (2, (320, 640)),
    "dpm_solver_3m_pc": (3, (320, 640)),  # the corrector also corrects the first step
}


@pytest.mark.parametrize("name", sorted(ORDERS))
@pytest.mark.parametrize("path", ["vp", "ve"])
def test_convergence_order_against_the_exact_solution(name, path):
    sde = PATHS[path]
    x = sde.prior_sample(
        (60, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    reference = solver_study.exact_solution(sde, MIXTURE.score_fn(sde), x, tol=1e-12)
    order, nfes = ORDERS[name]
    rows = _errors(name, sde, x, reference, nfes, "logsnr")
    measured = solver_study.observed_order(rows)
    assert abs(measured - order) < 0.3, (rows, measured)


def test_ddim_is_the_exponential_integrator_and_3m_beats_2m():
    """eta = 0 DDIM = alpha_s x0_hat + sigma_s eps_hat (Song et al.'s form), step by step;
    and at 20 NFE the third-order multistep beats the second-order one on the logsnr grid."""
    sde = VPSDE()
    score = MIXTURE.score_fn(sde)
    x = sde.prior_sample(
        (200, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    ts = samplers.time_grid(sde, 6, schedule="logsnr", like=x)
    ours = samplers.ddim(sde, score, x, ts)
    y = x
    for t, s in zip(ts[:-1], ts[1:]):
        x0_hat, eps_hat, _, _ = samplers._posterior_step(sde, score, y, t, s)
        y = sde.alpha(s) * x0_hat + sde.sigma(s) * eps_hat
    torch.testing.assert_close(ours, y, rtol=1e-10, atol=1e-10)
    reference = solver_study.exact_solution(sde, score, x)
    err_2m = _errors("dpm_solver_2m", sde, x, reference, [20], "logsnr")[0][1]
    err_3m = _errors("dpm_solver_3m", sde, x, reference, [20], "logsnr")[0][1]
    assert err_3m < 0.7 * err_2m, (err_2m, err_3m)


def test_samplers_run_on_any_gaussian_path():
    """The linear path alpha = 1 - t, sigma = t: 3M on its logsnr grid from t = 0.99 lands on
    the exact ODE solution; with a flipped sign in the step it would not."""
    path = LinearPath()
    score = MIXTURE.score_fn(path)
    x = torch.randn(
        200, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    x = 0.99 * x  # roughly p_0.99: sigma = 0.99, signal 0.01 x0
    ts = samplers.time_grid(path, 40, t_min=1e-3, t_max=0.99, schedule="logsnr", like=x)
    out = samplers.dpm_solver_3m(path, score, x, ts)
    exact, _ = samplers.solve_probability_flow(
        path, score, x, 0.99, 1e-3, rtol=1e-10, atol=1e-10
    )
    assert solver_study.mean_error(out, exact) < 2e-3
    assert solver_study.mean_error(x, exact) > 0.3  # the ODE moved the points far


def test_final_denoise_is_one_tweedie_step():
    """Gaussian data N(0, c^2): "denoise" runs the same chain as "noise" (same generator),
    then maps its end point x to E[x0 | x] = alpha c^2 x / (alpha^2 c^2 + sigma^2), for
    one more evaluation; "mean" differs from "noise" only in the last step's noise."""
    sde, c, t_min = VPSDE(), 0.05, 0.05

    def score(x, t):
        a, s = sde.alpha(t)[:, None], sde.sigma(t)[:, None]
        return -x / (a**2 * c**2 + s**2)

    x = sde.prior_sample(
        (2000, 1), generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    runs = {}
    for final in samplers.FINAL_STEPS:
        counted = samplers.CountingScore(score)
        runs[final] = samplers.euler_maruyama(
            sde,
            counted,
            x,
            50,
            t_min=t_min,
            final=final,
            generator=torch.Generator().manual_seed(4),
        )
        assert counted.calls == 50 + (final == "denoise")
    t = torch.tensor(t_min, dtype=torch.float64)
    a, s = float(sde.alpha(t)), float(sde.sigma(t))
    torch.testing.assert_close(
        runs["denoise"], a * c**2 / (a**2 * c**2 + s**2) * runs["noise"]
    )
    assert runs["mean"].var() < runs["noise"].var()


@pytest.fixture(scope="module")
def k_sampling():
    module = solver_study.k_diffusion_sampling()
    if module is None:
        pytest.skip("k-diffusion is not installed (requirements-peers.txt)")
    return module


@pytest.mark.parametrize(
    "ours, theirs, schedule, grid",
    [
        ("dpm_solver_2m", "dpmpp_2m", "logsnr", "exponential"),
        ("dpm_solver_2m", "dpmpp_2m", "edm", "karras"),
        ("ddim", "euler", "logsnr", "exponential"),
        ("edm_heun", "heun", "edm", "karras"),
        ("dpm_solver_3m", "dpmpp_3m_sde", "logsnr", "exponential"),  # eta = 0
    ],
)
def test_same_algorithm_same_grid_as_k_diffusion(
    k_sampling, ours, theirs, schedule, grid
):
    """Given the same exact score as a denoiser in the VE form, our samplers reproduce
    k-diffusion's to rounding (DDIM is Euler in the VE form: Karras et al. 2022, Sec. 3)."""
    sde = VPSDE()
    score = MIXTURE.score_fn(sde)
    x = sde.prior_sample(
        (100, 2), generator=torch.Generator().manual_seed(5), dtype=torch.float64
    )
    mine, _ = solver_study.run(ours, sde, score, x, 12, schedule)
    peer, _ = solver_study.k_run(k_sampling, theirs, sde, score, x, 12, grid)
    torch.testing.assert_close(mine, peer, rtol=1e-8, atol=1e-8)


def test_order_check_fails_on_a_first_order_method():
    """Chapter 6's order check (|order - 2| < 0.3 for DPM-Solver++(2M)) on DDIM, which is
    2M with its extrapolation dropped: it must fail."""
    sde = VPSDE()
    x = sde.prior_sample(
        (60, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    reference = solver_study.exact_solution(sde, MIXTURE.score_fn(sde), x, tol=1e-12)
    rows = _errors("ddim", sde, x, reference, (160, 320), "logsnr")
    assert abs(solver_study.observed_order(rows) - 2) > 0.3
