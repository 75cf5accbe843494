"""oldschool.solver_study: convergence orders against the exact ODE solution, and the
k-diffusion peer driven by the same exact score."""

import pytest
import torch

from oldschool import gaussian_mixture, solver_study
from oldschool.sde import VESDE, VPSDE

MIXTURE = gaussian_mixture.example_mixture()
PATHS = {"vp": VPSDE(), "ve": VESDE()}


pytestmark = pytest.mark.usefixtures("one_thread")


# Orders measured against the exact ODE solution, between the last two NFEs of each
# sweep. dpm_solver_3m starts with one first-order step, whose O(h^2) local error caps
# its global order at 2 (its third order shows pre-asymptotically: see chapter 6).
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
    score = MIXTURE.score_fn(sde)
    reference = solver_study.exact_solution(sde, score, x, tol=1e-12)
    order, nfes = ORDERS[name]
    table = solver_study.sweep([name], ["logsnr"], sde, score, x, reference, nfes)
    rows = table[name, "logsnr"]
    measured = solver_study.observed_order(rows)
    assert abs(measured - order) < 0.3, (rows, measured)


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
    k-diffusion's to rounding (DDIM is Euler in the VE form: Karras et al. 2022, Sec.
    3)."""
    sde = VPSDE()
    score = MIXTURE.score_fn(sde)
    x = sde.prior_sample(
        (100, 2), generator=torch.Generator().manual_seed(5), dtype=torch.float64
    )
    mine, _ = solver_study.run(ours, sde, score, x, 12, schedule)
    peer, _ = solver_study.k_run(k_sampling, theirs, sde, score, x, 12, grid)
    torch.testing.assert_close(mine, peer, rtol=1e-8, atol=1e-8)


def test_order_check_fails_on_a_first_order_method():
    """Chapter 6's order check (|order - 2| < 0.3 for DPM-Solver++(2M)) on DDIM, which
    is 2M with its extrapolation dropped: it must fail."""
    sde = VPSDE()
    x = sde.prior_sample(
        (60, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    score = MIXTURE.score_fn(sde)
    reference = solver_study.exact_solution(sde, score, x, tol=1e-12)
    table = solver_study.sweep(
        ["ddim"], ["logsnr"], sde, score, x, reference, (160, 320)
    )
    rows = table["ddim", "logsnr"]
    assert abs(solver_study.observed_order(rows) - 2) > 0.3
