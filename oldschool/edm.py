"""The EDM view: every Gaussian path a noise level, every loss a weighting over log-SNR.

Karras et al. 2022 ("Elucidating the design space of diffusion-based generative models",
EDM) divide x_t = alpha(t) x0 + sigma(t) eps by alpha: y = x0 + s eps with the noise
level s = sigma / alpha = exp(-lam / 2). In (y, s) every VP, sub-VP, VE or linear path
is the same VE process, and the probability-flow ODE is dy/ds = (y - D(y, s)) / s with
the denoiser D = E[x0 | y] (``ode_solvers.edm_heun``). This module holds:

* the preconditioning c_skip, c_out, c_in, c_noise (EDM Table 1) and the denoiser
  D(y, s) = c_skip y + c_out F(c_in y, c_noise) built on a raw network F;
* ``denoiser_from_score``: D from any score function of any path;
* ``loss_weightings``: eps-, v-, x0-prediction and EDM training written as one weighting
  w(lam) of the eps-MSE over log-SNR (Kingma & Gao 2023);
* ``stochastic_sampler``: EDM's Algorithm 2, Heun steps with "churn" (noise added, then
  removed by the ODE step).
"""

import math

import torch

from . import checks, samplers
from .sde import append_dims


def preconditioning(s, sigma_data=0.5):
    """(c_skip, c_out, c_in, c_noise) at noise level s (EDM Table 1, "ours" column).

    c_in scales the network input to unit variance, c_skip and c_out make the network's
    target F = (x0 - c_skip y) / c_out unit-variance for data of std sigma_data.
    """
    total = s**2 + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = s * sigma_data / total.sqrt()
    c_in = 1 / total.sqrt()
    c_noise = torch.log(s) / 4
    return c_skip, c_out, c_in, c_noise


def denoiser(network, y, s, sigma_data=0.5):
    """D(y, s) = c_skip y + c_out F(c_in y, c_noise) (EDM eq. (7)); s of shape (B,)."""
    c_skip, c_out, c_in, c_noise = (
        append_dims(c, y.dim()) if c.dim() else c
        for c in preconditioning(s, sigma_data)
    )
    return c_skip * y + c_out * network(c_in * y, c_noise.reshape(-1))


def network_target(x0, y, s, sigma_data=0.5):
    """What F must output for D to be x0: F* = (x0 - c_skip y) / c_out (EDM eq. (8))."""
    c_skip, c_out, _, _ = (
        append_dims(c, y.dim()) for c in preconditioning(s, sigma_data)
    )
    return (x0 - c_skip * y) / c_out


def denoiser_from_score(sde, score_fn):
    """D(y, s) from a score of the path ``sde``: t = t_of_lam(-2 log s), x = alpha(t) y,
    D = (x + sigma^2 score(x, t)) / alpha (Tweedie; EDM Table 1's mapping)."""

    def D(y, s):
        t = sde.t_of_lam(-2 * torch.log(s)).clamp(
            0, sde.T
        )  # (B,); clamp: rounding at T
        alpha, sigma = (append_dims(v, y.dim()) for v in (sde.alpha(t), sde.sigma(t)))
        x = alpha * y
        return (x + sigma**2 * score_fn(x, t)) / alpha

    return D


# ------------------------------------------------------------------------------------
# Losses as weightings over log-SNR
# ------------------------------------------------------------------------------------


def loss_weightings(lam, sde=None, sigma_data=0.5, p_mean=-1.2, p_std=1.2):
    """Each training loss as w(lam) x (eps-MSE) per unit of log-SNR (Kingma & Gao 2023).

    The prediction's own MSE is a multiple of the eps-MSE at the same lam
    (x0 error = e^{-lam/2} eps error; v = alpha eps - sigma x0 error = eps error / alpha
    on a VP path), and the training distribution of lam adds its density p(lam):
    t ~ U(0, 1) on ``sde`` for eps, v and x0 (p(lam) = |dt/dlam|), and EDM's
    log s ~ N(p_mean, p_std^2) with its weight (s^2 + sigma_data^2) / (s sigma_data)^2.
    Returns {name: w(lam)} for "eps", "v", "x0", "edm", each shaped like lam.
    """
    out = {}
    if sde is not None:
        t = sde.t_of_lam(lam)
        dt = 1e-6
        dlam_dt = (
            sde.lam((t + dt).clamp(max=sde.T)) - sde.lam((t - dt).clamp(min=0))
        ) / ((t + dt).clamp(max=sde.T) - (t - dt).clamp(min=0))
        density = 1 / dlam_dt.abs()  # p(lam) for t ~ U(0, 1)
        out["eps"] = density
        out["v"] = density * (1 + torch.exp(-lam))  # 1 / alpha^2 on a VP path
        out["x0"] = density * torch.exp(-lam)
    log_s = -lam / 2
    s = torch.exp(log_s)
    density = torch.exp(-0.5 * ((log_s - p_mean) / p_std) ** 2) / (
        p_std * math.sqrt(2 * math.pi)
    )
    density = density / 2  # d log s / d lam = -1/2
    weight = (s**2 + sigma_data**2) / (s * sigma_data) ** 2  # EDM's lambda(sigma)
    out["edm"] = density * weight * s**2  # D error = s x eps error
    return out


# ------------------------------------------------------------------------------------
# Stochastic sampling with churn
# ------------------------------------------------------------------------------------


@torch.no_grad()
def stochastic_sampler(
    sde,
    score_fn,
    x,
    ts,
    *,
    s_churn=0.0,
    s_tmin=0.0,
    s_tmax=float("inf"),
    s_noise=1.0,
    callback=None,
    generator=None,
):
    """EDM's Algorithm 2 on any path: at each step raise the noise level s_i to
    s_hat = (1 + gamma) s_i by adding fresh noise, then take a Heun step from s_hat to
    s_{i+1}. gamma = min(s_churn / N, sqrt(2) - 1) for s_i in [s_tmin, s_tmax], else 0,
    and s_hat is capped at the grid's first noise level. s_churn = 0 is ``edm_heun``.
    """
    checks.number(s_churn, "s_churn", low=0)
    checks.number(s_noise, "s_noise", low=0, low_open=True)
    ts = samplers.start(sde, x, ts, None, callback)
    s = samplers.noise_levels(sde, ts)
    alpha = sde.alpha(ts)
    D = denoiser_from_score(sde, score_fn)
    steps = len(ts) - 1
    y = x / alpha[0]
    for i in range(steps):
        in_range = s_tmin <= float(s[i]) <= s_tmax
        gamma = min(s_churn / steps, math.sqrt(2) - 1) if in_range else 0.0
        s_hat = torch.clamp(s[i] * (1 + gamma), max=s[0])
        if s_hat > s[i]:  # churn: add noise to move from s_i up to s_hat
            z = torch.randn(
                y.shape, generator=generator, device=y.device, dtype=y.dtype
            )
            y = y + (s_hat**2 - s[i] ** 2).sqrt() * s_noise * z
        s_batch = s_hat.expand(y.shape[0])
        d_cur = (y - D(y, s_batch)) / s_hat  # Heun from s_hat to s_{i+1}
        y_euler = y + (s[i + 1] - s_hat) * d_cur
        d_next = (y_euler - D(y_euler, s[i + 1].expand(y.shape[0]))) / s[i + 1]
        y = y + (s[i + 1] - s_hat) * 0.5 * (d_cur + d_next)
        if callback is not None:
            callback(i + 1, ts[i + 1], alpha[i + 1] * y)
    return alpha[-1] * y
