"""oldschool.edm: the preconditioning's identities, the denoiser from any score, loss
weightings over log-SNR, and churn."""

import pytest
import torch

from oldschool import edm, gaussian_mixture, ode_solvers, samplers
from oldschool.sde import VESDE, VPSDE, SubVPSDE

MIXTURE = gaussian_mixture.example_mixture()


pytestmark = pytest.mark.usefixtures("one_thread")


def test_preconditioning_makes_unit_variance_input_and_target():
    """For data of std sigma_data: Var(c_in y) = 1 and Var(F*) = 1 at every noise level,
    and D = c_skip y + c_out F* recovers x0 exactly (EDM App. B.6)."""
    sigma_data = 0.5
    gen = torch.Generator().manual_seed(0)
    x0 = sigma_data * torch.randn(200_000, 1, generator=gen, dtype=torch.float64)
    for s_value in (0.01, 0.3, 2.0, 80.0):
        s = torch.full((len(x0),), s_value, dtype=torch.float64)
        y = x0 + s[:, None] * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        c_skip, c_out, c_in, _ = edm.preconditioning(s[:1], sigma_data)
        target = edm.network_target(x0, y, s, sigma_data)
        assert abs(float((c_in * y).var()) - 1) < 0.02
        assert abs(float(target.var()) - 1) < 0.02
        torch.testing.assert_close(c_skip * y + c_out * target, x0)
    network = lambda y_in, c_noise: torch.zeros_like(y_in)  # noqa: E731
    s = torch.full((4,), 80.0, dtype=torch.float64)
    y = torch.ones(4, 1, dtype=torch.float64)
    assert float(edm.denoiser(network, y, s, sigma_data)[0]) == pytest.approx(
        sigma_data**2 / (80.0**2 + sigma_data**2)
    )


@pytest.mark.parametrize(
    "sde", [VPSDE(), SubVPSDE(), VESDE()], ids=["vp", "subvp", "ve"]
)
def test_denoiser_from_score_is_the_exact_posterior_mean(sde):
    """D(y, s) from the score equals E[x0 | y] of the mixture computed in the VE form
    (the mixture diffused by a VE path of noise level s, Tweedie there)."""
    t = torch.full((64,), 0.3, dtype=torch.float64)
    s = samplers.noise_levels(sde, t)
    y = torch.randn(
        64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    D = edm.denoiser_from_score(sde, MIXTURE.score_fn(sde))(y, s)
    ve = VESDE(sigma_min=1e-9, sigma_max=100.0)
    t_ve = ve.t_of_lam(-2 * torch.log(s))
    direct = y + ve.sigma(t_ve)[:, None] ** 2 * MIXTURE.score(y, t_ve, ve)
    torch.testing.assert_close(D, direct, rtol=1e-6, atol=1e-8)


def test_loss_weightings_relations():
    """v-weighting = eps-weighting x (1 + e^-lam) (the v-MSE is the eps-MSE / alpha^2),
    x0 = eps x e^-lam, and each integrates what its training draws: t ~ U(0, 1) on the
    VP path covers lam(1) .. lam(0) with total mass 1."""
    sde = VPSDE()
    lam = torch.linspace(
        float(sde.lam(torch.tensor(1.0))), 12.0, 4001, dtype=torch.float64
    )
    w = edm.loss_weightings(lam, sde)
    torch.testing.assert_close(w["v"], w["eps"] * (1 + torch.exp(-lam)))
    torch.testing.assert_close(w["x0"], w["eps"] * torch.exp(-lam))
    mass = torch.trapezoid(w["eps"], lam)  # t from 1 to t_of_lam(12) ~ 6e-6
    assert abs(float(mass) - (1 - float(sde.t_of_lam(torch.tensor(12.0))))) < 1e-3


def test_churn_zero_is_edm_heun_and_churn_keeps_the_mixture():
    sde = VPSDE()
    score = MIXTURE.score_fn(sde)
    gen = torch.Generator().manual_seed(2)
    x = sde.prior_sample((3000, 2), generator=gen, dtype=torch.float64)
    ts = samplers.time_grid(sde, 20, schedule="edm", like=x)
    torch.testing.assert_close(
        edm.stochastic_sampler(sde, score, x, ts),
        ode_solvers.edm_heun(sde, score, x, ts),
    )
    churned = edm.stochastic_sampler(sde, score, x, ts, s_churn=10.0, generator=gen)
    weights = MIXTURE.responsibilities(churned).argmax(1).bincount(minlength=4) / len(x)
    se = (MIXTURE.weights * (1 - MIXTURE.weights) / len(x)).sqrt()
    assert ((weights.double() - MIXTURE.weights).abs() < 4 * se + 0.01).all(), weights
    assert not torch.allclose(churned, ode_solvers.edm_heun(sde, score, x, ts))


def test_stochastic_sampler_names_bad_input():
    sde = VPSDE()
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="s_churn"):
        edm.stochastic_sampler(sde, MIXTURE.score_fn(sde), x, 4, s_churn=-1.0)
    with pytest.raises(ValueError, match="s_noise"):
        edm.stochastic_sampler(sde, MIXTURE.score_fn(sde), x, 4, s_noise=0.0)
