"""oldschool.ode_solvers: Euler and Heun converge at their orders, RK45 meets its
tolerance, the probability-flow ODE is invertible, and bad input is named."""

import math

import pytest
import torch

from oldschool import gaussian_mixture, ode_solvers
from oldschool.sde import VESDE, VPSDE

MIXTURE = gaussian_mixture.example_mixture()


pytestmark = pytest.mark.usefixtures("one_thread")


def _errors(sampler, sde, x, reference, step_counts):
    return [
        (sampler(sde, MIXTURE.score_fn(sde), x, n) - reference)
        .norm(dim=1)
        .mean()
        .item()
        for n in step_counts
    ]


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_convergence_orders(sde):
    """On the exact-score ODE (no score error): Euler's error halves, Heun's quarters,
    when steps double."""
    x = sde.prior_sample(
        (100, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    reference = ode_solvers.ode_rk45(
        sde, MIXTURE.score_fn(sde), x, 1, rtol=1e-10, atol=1e-10
    )
    euler = _errors(ode_solvers.ode_euler, sde, x, reference, [100, 200])
    heun = _errors(ode_solvers.ode_heun, sde, x, reference, [200, 400])
    assert 0.7 < math.log2(euler[0] / euler[1]) < 1.3, euler
    assert 1.7 < math.log2(heun[0] / heun[1]) < 2.4, heun
    stats = {}
    rk45 = ode_solvers.ode_rk45(
        sde, MIXTURE.score_fn(sde), x, 1, rtol=1e-6, atol=1e-6, stats=stats
    )
    assert (rk45 - reference).norm(dim=1).mean() < 1e-4 and 0 < stats["nfev"] < 1000


def test_probability_flow_round_trip():
    sde = VPSDE()
    data = MIXTURE.sample(
        200, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    score = MIXTURE.score_fn(sde)
    noise, info = ode_solvers.solve_probability_flow(
        sde, score, data, 1e-3, sde.T, rtol=1e-9, atol=1e-9
    )
    assert (
        info["nfev"] > 0 and abs(noise.std().item() - 1) < 0.15
    )  # data -> (roughly) N(0, I)
    back, _ = ode_solvers.solve_probability_flow(
        sde, score, noise, sde.T, 1e-3, rtol=1e-9, atol=1e-9
    )
    assert (back - data).abs().max() < 1e-5


def test_solve_probability_flow_names_bad_input():
    sde = VPSDE()
    score = MIXTURE.score_fn(sde)
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="t_end must lie in"):
        ode_solvers.solve_probability_flow(sde, score, x, sde.T, 1.5)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        ode_solvers.solve_probability_flow(sde, score, x.long(), sde.T, 1e-3)
