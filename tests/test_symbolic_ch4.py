"""Tests of chapter 4's sympy derivations (oldschool.symbolic): prediction maps, loss weights
versus SNR, and the per-step KL of the diffusion ELBO, each against an independent computation."""

import sympy as sp
import torch

from oldschool import gaussians, denoising, symbolic
from oldschool.sde import VPSDE

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
        # posterior by Gaussian conditioning of the joint (x_s, x_t) given x0: an independent route
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
