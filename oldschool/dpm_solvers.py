"""DPM-Solver++: multistep exponential integrators of the probability-flow ODE.

In the half log-SNR l = lam / 2 = log(alpha / sigma) the probability-flow ODE (notes
eq. (18)) for x / sigma reads d(x / sigma)/dl = e^l x0_hat(x, l): a linear part solved
exactly, and an integral of Tweedie's denoiser x0_hat (``samplers.denoise``) weighted by
e^l. Holding x0_hat fixed over a step is DDIM (``samplers.ddim``, first order);
extrapolating it through earlier steps' estimates gives the multistep methods here, one
score evaluation per step (Lu et al. 2022b, "DPM-Solver++"; Zhao et al. 2023, UniPC, for
the corrector). Each has the samplers' signature (``samplers`` module docstring).
"""

import math

import torch

from .samplers import denoise, start


@torch.no_grad()
def dpm_solver_2m(sde, score_fn, x, ts, *, t_min=None, callback=None, generator=None):
    """DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2): second order, one evaluation a step.

    As DDIM, but x0_hat over the step is extrapolated linearly in l = lam / 2 from this
    step's and the previous step's estimates: D = (1 + 1 / (2r)) x0_i - 1 / (2r)
    x0_{i-1}, r = h_{i-1} / h_i. The first step has no previous estimate and is DDIM's.
    """
    ts = start(sde, x, ts, t_min, callback)
    alpha, sigma, lam = sde.alpha(ts), sde.sigma(ts), sde.lam(ts)
    l = lam / 2  # DPM-Solver's lambda = log(alpha / sigma)
    x0_prev = None
    for i in range(len(ts) - 1):
        x0_hat = denoise(sde, score_fn, x, ts[i])
        h = l[i + 1] - l[i]
        if x0_prev is None:
            d = x0_hat
        else:
            r = (l[i] - l[i - 1]) / h
            d = (1 + 1 / (2 * r)) * x0_hat - 1 / (2 * r) * x0_prev
        x = sigma[i + 1] / sigma[i] * x - alpha[i + 1] * torch.expm1(-h) * d
        x0_prev = x0_hat
        if callback is not None:
            callback(i + 1, ts[i + 1], x)
    return x


def _higher_order(alpha_s, d, l, h, phi2, phi3):
    """The multistep terms of DPM-Solver++ beyond DDIM's: alpha_s phi2 D1 for two
    estimates d (newest first, at half log-SNRs l), alpha_s (phi2 D1 - phi3 D2) for
    three, with D1 the slope at l_0 and D2 half the curvature, in units of the step h
    (Lu et al. 2022b, App. B)."""
    r0 = (l[0] - l[1]) / h
    d1_0 = (d[0] - d[1]) / r0  # slope in units of h
    if len(d) == 2:
        return alpha_s * phi2 * d1_0
    r1 = (l[1] - l[2]) / h
    d1_1 = (d[1] - d[2]) / r1
    d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)  # slope at l_0
    d2 = (d1_0 - d1_1) / (r0 + r1)  # half the second derivative
    return alpha_s * (phi2 * d1 - phi3 * d2)


@torch.no_grad()
def dpm_solver_3m(sde, score_fn, x, ts, *, t_min=None, callback=None, generator=None):
    """DPM-Solver++(3M) (Lu et al. 2022b, App. B): third order, one evaluation per step.

    x_s = (sigma_s / sigma_t) x_t + sigma_s int_{l_t}^{l_s} e^l x0(l) dl, with x0(l) the
    quadratic through the last three estimates. In divided differences D1 (slope) and D2
    (curvature) the integral is alpha_s (-phi1 x0_i + phi2 D1 - phi3 D2), where
    phi1 = e^-h - 1, phi2 = phi1 / h + 1, phi3 = phi2 / h - 1/2. Steps 1 and 2 fall back
    to orders 1 and 2 (DDIM, 2M).
    """
    ts = start(sde, x, ts, t_min, callback)
    alpha, sigma, lam = sde.alpha(ts), sde.sigma(ts), sde.lam(ts)
    l = lam / 2
    history = []  # the last x0 estimates, newest first
    for i in range(len(ts) - 1):
        history = [denoise(sde, score_fn, x, ts[i])] + history[:2]
        h = l[i + 1] - l[i]
        phi1 = torch.expm1(-h)
        phi2 = phi1 / h + 1
        phi3 = phi2 / h - 0.5
        x = sigma[i + 1] / sigma[i] * x - alpha[i + 1] * phi1 * history[0]
        if len(history) >= 2:  # steps 2 on: order 2, then 3
            l_hist = [l[i - j] for j in range(len(history))]
            x = x + _higher_order(alpha[i + 1], history, l_hist, h, phi2, phi3)
        if callback is not None:
            callback(i + 1, ts[i + 1], x)
    return x


def _adams_moulton_weights(nodes, h):
    """Weights w_j with int_{-h}^0 e^u P(u) du = sum_j w_j D_j, P the polynomial through
    (u_j, D_j): the exponential Adams quadrature. M_k = int_{-h}^0 u^k e^u du obeys
    M_0 = 1 - e^-h, M_k = -(-h)^k e^-h - k M_{k-1}; then w = V^-T M, V_jk = u_j^k."""
    e = math.exp(-h)
    moments = [1 - e]
    for k in range(1, len(nodes)):
        moments.append(-((-h) ** k) * e - k * moments[-1])
    u = torch.tensor(nodes, dtype=torch.float64)
    vandermonde = u[:, None] ** torch.arange(len(nodes), dtype=torch.float64)
    return torch.linalg.solve(vandermonde.T, torch.tensor(moments, dtype=torch.float64))


@torch.no_grad()
def dpm_solver_3m_pc(
    sde, score_fn, x, ts, *, t_min=None, callback=None, generator=None
):
    """DPM-Solver++(3M) as predictor, an exponential Adams-Moulton step as corrector.

    The predictor's end point x_{i+1} must be evaluated anyway (D_{i+1} = x0_hat there,
    for the next step); the corrector reuses that evaluation to redo the step with the
    quadratic through D_{i+1}, D_i, D_{i-1}: x_{i+1} = (sigma_{i+1} / sigma_i) x_i +
    alpha_{i+1} int_{-h}^0 e^u P(u) du (the idea of UniPC, Zhao et al. 2023, here with
    exact quadrature weights). D_{i+1} is not recomputed at the corrected point, so the
    cost stays one evaluation per step; the last step has no evaluation after it, so it
    has no corrector and uses a second-order predictor (Lu et al. 2022b's lower order at
    the final step).
    """
    ts = start(sde, x, ts, t_min, callback)
    alpha, sigma, lam = sde.alpha(ts), sde.sigma(ts), sde.lam(ts)
    l = (lam.double() / 2).tolist()
    steps = len(ts) - 1
    history = [(l[0], denoise(sde, score_fn, x, ts[0]))]  # (l_j, D_j), newest first
    for i in range(steps):
        h = l[i + 1] - l[i]
        phi1 = math.expm1(-h)
        phi2 = phi1 / h + 1
        phi3 = phi2 / h - 0.5
        linear = sigma[i + 1] / sigma[i] * x  # the exactly solved linear part
        x_next = linear - alpha[i + 1] * phi1 * history[0][1]  # predictor: DPM-Solver++
        order = min(len(history), 2 if i == steps - 1 else 3)
        if order >= 2:
            l_hist, d_hist = zip(*history[:order])
            x_next = x_next + _higher_order(alpha[i + 1], d_hist, l_hist, h, phi2, phi3)
        if i < steps - 1:  # corrector, with the evaluation the next step needs anyway
            d_next = denoise(sde, score_fn, x_next, ts[i + 1])
            nodes = [(l[i + 1], d_next)] + history[:2]
            w = _adams_moulton_weights([lj - l[i + 1] for lj, _ in nodes], h)
            x_next = linear + alpha[i + 1] * sum(
                wj * dj for wj, (_, dj) in zip(w.tolist(), nodes)
            )
            history = [(l[i + 1], d_next)] + history[:2]
        x = x_next
        if callback is not None:
            callback(i + 1, ts[i + 1], x)
    return x
