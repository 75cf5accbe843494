"""oldschool.symbolic: each sympy derivation against an independent computation.

Chapter 1 (the Gaussian NLL, the reparameterized gradient), chapter 2 (the KL of
Gaussians, the VAE loss), chapter 4 (prediction maps, loss weights, the per-step KL) and
chapters 5-6 (moment ODEs, Fokker-Planck, the reverse SDE).
"""

import math

import pytest
import sympy as sp
import torch

from oldschool import denoising, gaussians, symbolic
from oldschool.sde import VESDE, VPSDE, SubVPSDE, append_dims


# chapter 1: the Gaussian NLL and the reparameterized gradient -----------------------


def test_gaussian_nll_is_squared_error_plus_constant():
    expr, (x, x_hat, sigma) = symbolic.gaussian_nll_1d()
    assert (
        sp.simplify(
            expr
            - ((x - x_hat) ** 2 / (2 * sigma**2) + sp.log(sigma * sp.sqrt(2 * sp.pi)))
        )
        == 0
    )
    # and it agrees with the code on numbers
    value = float(expr.subs({x: 0.3, x_hat: -0.2, sigma: 0.7}))
    ours = gaussians.gaussian_nll(
        torch.tensor([[0.3]]), torch.tensor([[-0.2]]), 2 * math.log(0.7)
    )
    assert math.isclose(value, ours.item(), rel_tol=1e-6)


def test_nd_nll_is_a_sum_of_1d_terms():
    expr, (xs, x_hats, sigma) = symbolic.gaussian_nll_nd(3)
    one, (x, x_hat, s) = symbolic.gaussian_nll_1d()
    total = sum(one.subs({x: a, x_hat: b, s: sigma}) for a, b in zip(xs, x_hats))
    assert sp.simplify(expr - total) == 0


def test_reparameterized_gradient_of_second_moment():
    grad_mu, grad_sigma, (mu, sigma) = symbolic.reparameterized_gradient_1d()
    # E[z^2] = mu^2 + sigma^2 for z ~ N(mu, sigma^2)
    assert sp.simplify(grad_mu - sp.diff(mu**2 + sigma**2, mu)) == 0
    assert sp.simplify(grad_sigma - sp.diff(mu**2 + sigma**2, sigma)) == 0


# chapter 2: the KL of Gaussians and the VAE loss ------------------------------------


def test_kl_gaussians_1d_is_the_textbook_closed_form():
    kl, (mu_q, sigma_q, mu_p, sigma_p) = symbolic.kl_gaussians_1d()
    textbook = (
        sp.log(sigma_p / sigma_q)
        + (sigma_q**2 + (mu_q - mu_p) ** 2) / (2 * sigma_p**2)
        - sp.Rational(1, 2)
    )
    assert sp.simplify(sp.expand_log(kl - textbook, force=True)) == 0
    # zero exactly when the two Gaussians are equal, and not otherwise
    assert sp.simplify(kl.subs({mu_p: mu_q, sigma_p: sigma_q})) == 0
    assert kl.subs({mu_q: 1, mu_p: 0, sigma_q: 1, sigma_p: 1}) == sp.Rational(1, 2)


def test_kl_gaussians_1d_agrees_with_oldschool_numerically():
    kl, symbols = symbolic.kl_gaussians_1d()
    f = sp.lambdify(symbols, kl, "math")
    g = torch.Generator().manual_seed(0)
    mean1, mean2 = torch.randn(2, 6, 1, generator=g, dtype=torch.float64)
    logvar1, logvar2 = torch.randn(2, 6, 1, generator=g, dtype=torch.float64)
    ours = gaussians.kl_diagonal(mean1, logvar1, mean2, logvar2)
    from_sympy = [
        f(m1, math.exp(lv1 / 2), m2, math.exp(lv2 / 2))
        for m1, lv1, m2, lv2 in zip(
            mean1[:, 0].tolist(),
            logvar1[:, 0].tolist(),
            mean2[:, 0].tolist(),
            logvar2[:, 0].tolist(),
        )
    ]
    assert torch.allclose(ours, torch.tensor(from_sympy, dtype=torch.float64))


@pytest.mark.parametrize("dim", [1, 3])
def test_kl_diagonal_nd_is_eq9_summed_over_coordinates(dim):
    kl, (mus, sigmas) = symbolic.kl_diagonal_nd(dim)
    eq9 = sp.Rational(1, 2) * sum(
        mu**2 + s**2 - sp.log(s**2) - 1 for mu, s in zip(mus, sigmas)
    )
    assert sp.simplify(sp.expand_log(kl - eq9, force=True)) == 0
    assert kl.free_symbols == set(mus) | set(
        sigmas
    )  # the integration variables are gone


def test_kl_diagonal_nd_is_the_sum_of_one_dimensional_kls():
    kl_1d, (mu_q, sigma_q, mu_p, sigma_p) = symbolic.kl_gaussians_1d()
    kl, (mus, sigmas) = symbolic.kl_diagonal_nd(2)
    total = sum(
        kl_1d.subs({mu_q: mu, sigma_q: s, mu_p: 0, sigma_p: 1})
        for mu, s in zip(mus, sigmas)
    )
    assert sp.simplify(sp.expand_log(kl - total, force=True)) == 0


def test_negative_elbo_has_the_constants_eq10_drops():
    loss, (xs, x_hats, sigma, mus, sigmas) = symbolic.negative_elbo_gaussian(2, 2)
    squared_error = sum((x - xh) ** 2 for x, xh in zip(xs, x_hats))
    bracket = sum(
        mu**2 + s**2 - sp.log(s**2) - 1 for mu, s in zip(mus, sigmas)
    )  # eq. (9) without its 1/2
    const = 2 * sp.log(sigma) + sp.log(2 * sp.pi)
    assert (
        sp.simplify(
            sp.expand_log(
                2 * sigma**2 * (loss - const) - (squared_error + sigma**2 * bracket),
                force=True,
            )
        )
        == 0
    )
    eq10 = squared_error + bracket
    assert sp.solve(
        sp.expand_log(eq10 - 2 * sigma**2 * (loss - const), force=True), sigma
    ) == [1]


def test_kl_diagonal_nd_rejects_bad_dim():
    with pytest.raises(ValueError, match=r"dim must lie in \[1, inf\], got 0"):
        symbolic.kl_diagonal_nd(0)


# chapter 4: prediction maps, loss weights versus SNR, the diffusion ELBO's per-step KL


# chapter 4's four; the fifth, the velocity, needs the path's time derivatives and is
# derived in chapter 8 (symbolic.velocity_from_score, tests/test_flow_matching.py)
FOUR = tuple(p for p in denoising.PARAMETERIZATIONS if p != "velocity")


def test_prediction_maps_agree_with_nets_and_compose_to_identity():
    maps, (x_t, out, alpha, sigma) = symbolic.prediction_maps()
    assert set(maps) == set(FOUR)
    for p in maps:
        assert sp.simplify(maps[p][p] - out) == 0
        for q in maps:  # p -> q -> p is the identity
            back = maps[q][p].subs(out, maps[p][q])
            assert sp.simplify(back - out) == 0, (p, q)

    g = torch.Generator().manual_seed(0)
    t = 0.05 + 0.9 * torch.rand(50, generator=g, dtype=torch.float64)
    sde = VPSDE()
    a, s = sde.alpha(t)[:, None], sde.sigma(t)[:, None]  # (50, 1)
    x_t_value = torch.randn(50, 2, generator=g, dtype=torch.float64)
    output = torch.randn(50, 2, generator=g, dtype=torch.float64)
    for p in maps:
        eps_hat, x0_hat = denoising.eps_and_x0(output, x_t_value, a, s, p)
        implied = denoising.targets(x0_hat, eps_hat, a, s)
        for q in maps:
            f = sp.lambdify(
                (x_t, out, alpha, sigma), maps[p][q]
            )  # only + - * / **: works on tensors
            expected = f(x_t_value, output, a, s) * torch.ones_like(output)
            torch.testing.assert_close(implied[q], expected)


def test_loss_weights_match_nets_and_monte_carlo():
    w_as, w_snr, (alpha, sigma, snr) = symbolic.loss_weights_vs_snr()
    assert sp.simplify(w_snr["x0"] * snr - 1) == 0  # x0-MSE = eps-MSE / SNR
    g = torch.Generator().manual_seed(1)
    sde = VPSDE()
    for t_value in (0.02, 0.3, 0.9):
        t = torch.tensor([t_value], dtype=torch.float64)
        a, s = sde.alpha(t), sde.sigma(t)
        snr_value = float(a**2 / s**2)
        x0 = torch.randn(100_000, 2, generator=g, dtype=torch.float64)
        eps = torch.randn(100_000, 2, generator=g, dtype=torch.float64)
        x_t = a * x0 + s * eps
        eps_hat = eps + 0.1 * torch.randn(
            100_000, 2, generator=g, dtype=torch.float64
        )  # an imperfect model
        x0_hat = (x_t - s * eps_hat) / a
        errors = {
            q: (pred - true).pow(2).mean()
            for q, pred, true in zip(
                FOUR,
                denoising.targets(x0_hat, eps_hat, a, s).values(),
                denoising.targets(x0, eps, a, s).values(),
            )
        }
        for q in FOUR:
            w = float(w_snr[q].subs(snr, snr_value))
            torch.testing.assert_close(errors[q], w * errors["eps"], rtol=1e-9, atol=0)
            torch.testing.assert_close(
                torch.tensor(w) * denoising.eps_weight(a, s, q)[0],
                torch.tensor(1.0, dtype=torch.float64),
            )
            assert abs(
                float(w_as[q].subs({alpha: float(a), sigma: float(s)})) - w
            ) < 1e-9 * max(1.0, w)


def test_diffusion_step_kl_is_half_snr_gap_times_squared_error():
    mean, var, kl, (x_s, x_t, x0, x0_hat, a_s, s_s, a_t, s_t) = (
        symbolic.diffusion_step_kl()
    )
    snr_gap = a_s**2 / s_s**2 - a_t**2 / s_t**2
    assert sp.simplify(kl - snr_gap / 2 * (x0 - x0_hat) ** 2) == 0

    sde = VPSDE()
    g = torch.Generator().manual_seed(2)
    for s_time, t_time in ((0.1, 0.11), (0.4, 0.5), (0.01, 0.9)):
        values = {
            a_s: float(sde.alpha(s_time)),
            s_s: float(sde.sigma(s_time)),
            a_t: float(sde.alpha(t_time)),
            s_t: float(sde.sigma(t_time)),
        }
        # posterior by Gaussian conditioning of the joint (x_s, x_t) given x0: an
        # independent route
        a_ts = values[a_t] / values[a_s]
        cov_st, var_t = a_ts * values[s_s] ** 2, values[s_t] ** 2
        x0_v, x_t_v, x0_hat_v = torch.randn(
            3, generator=g, dtype=torch.float64
        ).tolist()
        cond_mean = values[a_s] * x0_v + cov_st / var_t * (x_t_v - values[a_t] * x0_v)
        cond_var = values[s_s] ** 2 - cov_st**2 / var_t
        point = {**values, x0: x0_v, x_t: x_t_v}
        assert abs(float(mean.subs(point)) - cond_mean) < 1e-10
        assert abs(float(var.subs(values)) - cond_var) < 1e-10
        # the KL against gaussians.kl_diagonal with the same two Gaussians
        logvar = torch.tensor([[cond_var]], dtype=torch.float64).log()
        decoder_mean = float(mean.subs({**point, x0: x0_hat_v}))
        kl_code = gaussians.kl_diagonal(
            torch.tensor([[cond_mean]], dtype=torch.float64),
            logvar,
            torch.tensor([[decoder_mean]], dtype=torch.float64),
            logvar,
        )
        kl_sym = float(kl.subs({**values, x0: x0_v, x0_hat: x0_hat_v}))
        assert abs(float(kl_code[0]) - kl_sym) < 1e-9 * max(1.0, kl_sym)


# chapters 5-6: moments from the moment ODEs, Fokker-Planck, the reverse SDE ---------


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


# The chapters' checks, shown failing on broken input (see book/checks.md) ---------


def test_ch2_eq9_check_fails_with_a_dropped_half():
    kl_1d, (mu_q, sigma_q, mu_p, sigma_p) = symbolic.kl_gaussians_1d()
    eq9 = kl_1d.subs({mu_p: 0, sigma_p: 1})
    right = (mu_q**2 + sigma_q**2 - sp.log(sigma_q**2) - 1) / 2
    wrong = mu_q**2 + sigma_q**2 - sp.log(sigma_q**2) - 1  # the notes' eq. (10) bracket
    assert sp.simplify(sp.expand_log(eq9 - right, force=True)) == 0
    assert sp.simplify(sp.expand_log(eq9 - wrong, force=True)) != 0


VP = VPSDE()


def elbo_term_holds(weight):
    """ch4-elbo: the KL of one denoising step equals weight(SNR_s, SNR_t) * ||x0 - x0_hat||^2."""
    post_mean, post_var, _, (x_s, x_t_, x0_, x0_hat_, a_s, s_s, a_t, s_t) = (
        symbolic.diffusion_step_kl()
    )
    mean_fn = sp.lambdify((x_t_, x0_, a_s, s_s, a_t, s_t), post_mean)
    var_fn = sp.lambdify((a_s, s_s, a_t, s_t), post_var)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(256, 2, generator=g, dtype=torch.float64)
    s_b, t_b = (
        torch.full((256,), 0.2, dtype=torch.float64),
        torch.full((256,), 0.25, dtype=torch.float64),
    )
    coeffs = [
        append_dims(c, 2)
        for c in (VP.alpha(s_b), VP.sigma(s_b), VP.alpha(t_b), VP.sigma(t_b))
    ]
    x_t, _ = VP.perturb(x0, t_b, generator=g)
    x0_hat = x0 + 0.1 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    logvar = var_fn(*coeffs).log().expand_as(x0)
    kl = gaussians.kl_diagonal(
        mean_fn(x_t, x0, *coeffs), logvar, mean_fn(x_t, x0_hat, *coeffs), logvar
    )
    weighted_se = weight(VP.snr(s_b), VP.snr(t_b)) * (x0 - x0_hat).pow(2).sum(1)
    return torch.allclose(kl, weighted_se, rtol=1e-8, atol=1e-12)


def test_ch4_elbo_check_fails_on_a_dropped_half_and_a_flipped_sign():
    assert elbo_term_holds(lambda snr_s, snr_t: 0.5 * (snr_s - snr_t))
    assert not elbo_term_holds(lambda snr_s, snr_t: snr_s - snr_t)  # the 1/2 dropped
    assert not elbo_term_holds(
        lambda snr_s, snr_t: 0.5 * (snr_t - snr_s)
    )  # sign flipped
