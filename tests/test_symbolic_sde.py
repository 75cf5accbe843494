"""oldschool.symbolic, chapters 5-6: moments from the moment ODEs, Fokker-Planck, the reverse SDE."""

import sympy as sp
import torch

from oldschool import symbolic
from oldschool.sde import VESDE, VPSDE, SubVPSDE

TIMES = [0.0, 0.01, 0.3, 0.77, 1.0]


def _check_moments(derived, sde, params):
    m, variance, (t, a, b) = derived
    m_f, v_f = (sp.lambdify((t, a, b), e, "math") for e in (m, variance))
    tt = torch.tensor(TIMES, dtype=torch.float64)
    torch.testing.assert_close(
        torch.tensor([float(m_f(x, *params)) for x in TIMES], dtype=torch.float64),
        sde.alpha(tt),
        rtol=1e-12,
        atol=1e-12,
    )
    torch.testing.assert_close(
        torch.tensor([float(v_f(x, *params)) for x in TIMES], dtype=torch.float64),
        sde.sigma(tt) ** 2,
        rtol=1e-10,
        atol=1e-12,
    )


def test_vp_moments_match_the_sde_module():
    _check_moments(symbolic.vp_marginal_moments(), VPSDE(0.1, 20.0), (0.1, 20.0))
    _check_moments(symbolic.vp_marginal_moments(), VPSDE(0.5, 3.0), (0.5, 3.0))


def test_ve_moments_match_the_sde_module():
    m, variance, (t, s_min, s_max) = symbolic.ve_marginal_moments()
    assert m == 1
    assert sp.simplify(variance - ((s_min * (s_max / s_min) ** t) ** 2 - s_min**2)) == 0
    _check_moments((m, variance, (t, s_min, s_max)), VESDE(0.01, 50.0), (0.01, 50.0))


def test_subvp_moments():
    m, variance, symbols = symbolic.subvp_marginal_moments()
    assert sp.simplify(variance - (1 - m**2) ** 2) == 0
    _check_moments((m, variance, symbols), SubVPSDE(0.1, 20.0), (0.1, 20.0))


def test_fokker_planck():
    sde_residual, ode_residual, (x, t) = symbolic.fokker_planck_residuals()
    assert sde_residual == 0 and ode_residual == 0
    _, wrong, _ = symbolic.fokker_planck_residuals(
        score_weight=1
    )  # the reverse drift as an ODE
    assert sp.simplify(wrong) != 0


def test_general_identities():
    assert symbolic.probability_flow_identity()[0] == 0
    assert symbolic.reverse_sde_residual()[0] == 0
