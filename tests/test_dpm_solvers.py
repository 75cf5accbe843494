"""oldschool.dpm_solvers: DDIM as the first-order exponential integrator, 3M against 2M,
and the multistep solvers on a path written from its definitions alone."""

import pytest
import torch

from oldschool import dpm_solvers, gaussian_mixture, ode_solvers, samplers, solver_study
from oldschool.sde import VPSDE, GaussianPath

MIXTURE = gaussian_mixture.example_mixture()


pytestmark = pytest.mark.usefixtures("one_thread")


class LinearPath(GaussianPath):
    """alpha = 1 - t, sigma = t (rectified flow's path), written here from the
    definitions alone, to check that the samplers need nothing beyond alpha, sigma, lam
    and t_of_lam."""

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


def test_ddim_is_the_exponential_integrator_and_3m_beats_2m():
    """eta = 0 DDIM = alpha_s x0_hat + sigma_s eps_hat (Song et al.'s form), step by
    step; and at 20 NFE the third-order multistep beats the second-order one on the
    logsnr grid."""
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
    names = ("dpm_solver_2m", "dpm_solver_3m")
    table = solver_study.sweep(names, ["logsnr"], sde, score, x, reference, [20])
    err_2m, err_3m = (table[name, "logsnr"][0][1] for name in names)
    assert err_3m < 0.7 * err_2m, (err_2m, err_3m)


def test_samplers_run_on_any_gaussian_path():
    """The linear path alpha = 1 - t, sigma = t: 3M on its logsnr grid from t = 0.99
    lands on the exact ODE solution; with a flipped sign in the step it would not."""
    path = LinearPath()
    score = MIXTURE.score_fn(path)
    x = torch.randn(
        200, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    x = 0.99 * x  # roughly p_0.99: sigma = 0.99, signal 0.01 x0
    ts = samplers.time_grid(path, 40, t_min=1e-3, t_max=0.99, schedule="logsnr", like=x)
    out = dpm_solvers.dpm_solver_3m(path, score, x, ts)
    exact, _ = ode_solvers.solve_probability_flow(
        path, score, x, 0.99, 1e-3, rtol=1e-10, atol=1e-10
    )
    assert solver_study.mean_error(out, exact) < 2e-3
    assert solver_study.mean_error(x, exact) > 0.3  # the ODE moved the points far
