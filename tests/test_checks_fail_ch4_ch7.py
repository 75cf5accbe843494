"""A sample of chapter 4's checks, fed deliberately broken input: each must fail.

Every helper below repeats the condition of one `assert` of a chapter (named by its label,
see book/checks.md) on inputs the test chooses. Each test runs the check once on the right
input, where it must pass, and once on a broken one (a dropped factor, a flipped sign, an
untrained model, a label that leaks), where it must fail. A check that passed on the broken
input would be an illustration, not a check.
"""

import sympy as sp
import torch

from oldschool import gaussians, symbolic
from oldschool import sde as sde_lib
from oldschool.sde import append_dims

VP = sde_lib.VPSDE()


# ---- chapter 4 ----------------------------------------------------------------------------


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
