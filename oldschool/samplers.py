"""Samplers: integrate the reverse SDE (eq. (17)) or the probability-flow ODE (eq. (18)).

Every sampler has one signature,

    sampler(sde, score_fn, x, ts, *, callback=None, generator=None) -> x at t = ts[-1]

``sde`` is any ``GaussianPath`` (x_t = alpha(t) x0 + sigma(t) eps); ``x`` holds samples
at t = ts[0]; ``score_fn(x, t)`` takes t of shape (B,). ``ts`` is the time grid, a
decreasing 1-D tensor t_0 > t_1 > ... > t_N (``time_grid`` builds the usual ones); an
int N still means N uniform steps from T to ``t_min`` (default 1e-3; the score blows up
at t = 0, so Song et al. 2021 stop short of it). Grid and solver are two separate levers
(Karras et al. 2022). ``callback(i, t_i, x_i)`` is called for i = 0..N, first with the
starting point.

Everything is written in alpha, sigma and the log-SNR lam = log(alpha^2 / sigma^2), so
the samplers run on VP, sub-VP, VE, DiscreteVP and the linear path of chapter 8 alike.
The network enters only through the score; the denoised estimate ("x0-prediction",
Tweedie) is x0_hat = (x + sigma^2 score) / alpha, and the noise estimate is eps_hat =
-sigma score.

Models: Song et al. 2021 (Euler-Maruyama, predictor-corrector, the probability-flow
ODE), Ho et al. 2020 (ancestral sampling), Song, Meng & Ermon 2021 (DDIM), Lu et al.
2022a/b (DPM-Solver, DPM-Solver++), Karras et al. 2022 (Heun, the EDM grid).
"""

import math

import torch
from scipy.integrate import solve_ivp

from . import checks
from .sde import append_dims

SCHEDULES = ("uniform", "edm", "logsnr")


# ------------------------------------------------------------------------------------
# Time grids
# ------------------------------------------------------------------------------------


def time_grid(
    sde, steps, *, t_min=1e-3, schedule="uniform", rho=7.0, t_max=None, like=None
):
    """The grid t_max = t_0 > ... > t_steps = t_min, shape (steps + 1,), float64 by default.

    schedule: "uniform" in t (Song et al. 2021); "edm", the noise level sigma/alpha
    spaced uniformly in sigma^(1/rho) (Karras et al. 2022, eq. (5); rho = 7); "logsnr",
    uniform in lam (Lu et al. 2022a; k-diffusion's "exponential" grid). The noise levels
    are mapped back to t exactly through ``sde.t_of_lam`` (lam = -2 log(sigma/alpha)).
    t_max: the start, default ``sde.T`` (a path with alpha(T) = 0 needs t_max < T for
    the "edm" and "logsnr" grids, whose noise level must be finite).
    """
    t_max = sde.T if t_max is None else float(t_max)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not 0 < t_min < t_max <= sde.T:
        raise ValueError(
            f"need 0 < t_min < t_max <= T={sde.T}, got t_min={t_min!r}, t_max={t_max!r}"
        )
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho!r}")
    ends = torch.tensor([t_max, t_min], dtype=torch.float64)
    u = torch.linspace(0, 1, steps + 1, dtype=torch.float64)  # (steps + 1,)
    if schedule == "uniform":
        ts = t_max + u * (t_min - t_max)
    else:
        lam_start, lam_end = sde.lam(ends)
        if not torch.isfinite(lam_start):
            raise ValueError(
                f"the log-SNR is infinite at t_max={t_max}; start below it"
            )
        if schedule == "logsnr":
            lam = lam_start + u * (lam_end - lam_start)
        else:  # edm: sigma_i^(1/rho) linear in i, with sigma = exp(-lam / 2)
            s_max, s_min = torch.exp(-lam_start / 2), torch.exp(-lam_end / 2)
            s = (
                s_max ** (1 / rho) + u * (s_min ** (1 / rho) - s_max ** (1 / rho))
            ) ** rho
            lam = -2 * torch.log(s)
        ts = sde.t_of_lam(lam)
    ts[0], ts[-1] = t_max, t_min  # exact ends (the maps above are exact up to rounding)
    if like is not None:
        ts = ts.to(device=like.device, dtype=like.dtype)
    return ts


def noise_levels(sde, ts):
    """The EDM noise level sigma(t) / alpha(t) of each time in ``ts`` (k-diffusion's sigmas)."""
    return sde.sigma(ts) / sde.alpha(ts)


def _start(sde, x, ts, t_min, callback):
    """Check the inputs once and return the grid on x's device and dtype."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise ValueError(
            "x must be a floating-point tensor of shape (B, ...) holding samples "
            "at t = ts[0]"
        )
    if isinstance(ts, int) and not isinstance(ts, bool):
        ts = time_grid(sde, ts, t_min=1e-3 if t_min is None else t_min, like=x)
    elif isinstance(ts, torch.Tensor):
        if t_min is not None:
            raise ValueError(
                "t_min is for an int number of steps; a grid ts ends where it ends"
            )
        ts = ts.to(device=x.device, dtype=x.dtype)
        if ts.dim() != 1 or len(ts) < 2 or not (ts[1:] < ts[:-1]).all():
            raise ValueError(
                "ts must be a strictly decreasing 1-D tensor of length >= 2"
            )
        checks.times(ts, "ts", t_max=sde.T)
    else:
        raise ValueError(
            f"ts must be an int (steps) or a 1-D tensor of times, got {ts!r}"
        )
    if callback is not None:
        callback(0, ts[0], x)
    return ts


def _noise(x, generator):
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _batch_time(t, x):
    return t.expand(x.shape[0])  # score_fn and the SDE take t of shape (B,)


def denoise(sde, score_fn, x, t):
    """Tweedie's denoised estimate x0_hat = E[x0 | x_t = x] = (x + sigma^2 score) / alpha.

    notes eq. (18)'s score read as a denoiser; Efron 2011; Karras et al. 2022, eq. (3).
    ``t`` is a 0-dim tensor; one score evaluation.
    """
    t_b = _batch_time(t, x)
    alpha, sigma = (append_dims(v, x.dim()) for v in (sde.alpha(t_b), sde.sigma(t_b)))
    return (x + sigma**2 * score_fn(x, t_b)) / alpha


# ------------------------------------------------------------------------------------
# The forward SDE and the reverse SDE (stochastic samplers)
# ------------------------------------------------------------------------------------


@torch.no_grad()
def forward_euler_maruyama(
    sde, x0, steps, *, t_end=None, callback=None, generator=None
):
    """Simulate the forward SDE, eq. (14), from data x0 at t = 0 to ``t_end`` (default T).

    Euler-Maruyama on a uniform grid 0 = t_0 < ... < t_steps = t_end: x <- x + f(x, t)
    dt + g(t) sqrt(dt) z. ``callback(i, t_i, x_i)`` as for the samplers.
    """
    t_end = sde.T if t_end is None else float(t_end)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not 0 < t_end <= sde.T:
        raise ValueError(f"t_end must lie in (0, T={sde.T}], got {t_end!r}")
    x = x0
    ts = torch.linspace(0.0, t_end, steps + 1, device=x.device, dtype=x.dtype)
    if callback is not None:
        callback(0, ts[0], x)
    for i in range(steps):
        t, dt = ts[i], ts[i + 1] - ts[i]
        drift, diffusion = sde.sde(x, _batch_time(t, x))
        x = x + drift * dt + diffusion * dt.sqrt() * _noise(x, generator)
        if callback is not None:
            callback(i + 1, ts[i + 1], x)
    return x


FINAL_STEPS = ("mean", "noise", "denoise")


@torch.no_grad()
def euler_maruyama(
    sde, score_fn, x, ts, *, t_min=None, callback=None, generator=None, final="mean"
):
    """Euler-Maruyama on the reverse SDE, eq. (17): x <- x + drift dt + g sqrt(|dt|) z.

    final: what happens at the end. "mean": the last step adds no noise (score_sde's
    default), which also removes the g^2 |dt| of variance that step should add; "noise":
    every step adds its noise, so the chain ends at (an approximation of) p_{t_min};
    "denoise": as "noise", then one Tweedie step x0_hat(x, t_min) (one more evaluation).
    """
    if final not in FINAL_STEPS:
        raise ValueError(f"final must be one of {FINAL_STEPS}, got {final!r}")
    ts = _start(sde, x, ts, t_min, callback)
    reverse = sde.reverse(score_fn)
    steps = len(ts) - 1
    for i in range(steps):
        t, dt = ts[i], ts[i + 1] - ts[i]  # dt < 0: time runs backwards
        drift, diffusion = reverse.sde(x, _batch_time(t, x))
        x = x + drift * dt
        if i < steps - 1 or final != "mean":
            x = x + diffusion * (-dt).sqrt() * _noise(x, generator)
        if callback is not None:
            callback(i + 1, ts[i + 1], x)
    return denoise(sde, score_fn, x, ts[-1]) if final == "denoise" else x


@torch.no_grad()
def predictor_corrector(
    sde,
    score_fn,
    x,
    ts,
    *,
    t_min=None,
    callback=None,
    generator=None,
    snr=0.16,
    corrector_steps=1,
):
    """Predictor-corrector sampling (Song et al. 2021, Alg. 1-2).

    At each t_i: ``corrector_steps`` Langevin MCMC steps that target p_{t_i},
        x <- x + delta score + sqrt(2 delta) z,  delta = 2 (snr ||z|| / ||score||)^2,
    with the norms averaged over the batch (a per-sample ratio explodes where the score
    vanishes, at the modes), then one reverse-diffusion (Euler-Maruyama) predictor step
    to t_{i+1}. snr: the corrector's signal-to-noise ratio (0.16: Song et al., VE,
    CIFAR-10).
    """
    if not isinstance(corrector_steps, int) or corrector_steps < 0:
        raise ValueError(
            f"corrector_steps must be an int >= 0, got {corrector_steps!r}"
        )
    if snr <= 0:
        raise ValueError(f"snr must be positive, got {snr!r}")
    ts = _start(sde, x, ts, t_min, callback)
    reverse = sde.reverse(score_fn)
    steps = len(ts) - 1
    for i in range(steps):
        t, dt = _batch_time(ts[i], x), ts[i + 1] - ts[i]
        for _ in range(corrector_steps):  # corrector: Langevin dynamics at fixed t
            score, z = score_fn(x, t), _noise(x, generator)
            z_norm = z.flatten(1).norm(dim=1).mean()
            score_norm = score.flatten(1).norm(dim=1).mean().clamp_min(1e-12)
            delta = 2 * (snr * z_norm / score_norm) ** 2  # the Langevin step size
            x = x + delta * score + (2 * delta).sqrt() * z
        drift, diffusion = reverse.sde(x, t)  # predictor: one reverse-diffusion step
        x = x + drift * dt
        if i < steps - 1:
            x = x + diffusion * (-dt).sqrt() * _noise(x, generator)
        if callback is not None:
            callback(i + 1, ts[i + 1], x)
    return x


def _posterior_step(sde, score_fn, x, t, s):
    """Tweedie's x0_hat at t and the Gaussian q(x_s | x_t, x0_hat) of the forward process.

    x_t | x_s ~ N(a x_s, v) with a = alpha_t / alpha_s and v = sigma_t^2 - a^2
    sigma_s^2. Returns (x0_hat, eps_hat, posterior mean, posterior variance).
    """
    t_b, s_b = _batch_time(t, x), _batch_time(s, x)
    m_t, s_t = (append_dims(v, x.dim()) for v in (sde.alpha(t_b), sde.sigma(t_b)))
    m_s, s_s = (append_dims(v, x.dim()) for v in (sde.alpha(s_b), sde.sigma(s_b)))
    score = score_fn(x, t_b)
    eps_hat = -s_t * score  # the noise the score implies: score = -eps / sigma
    x0_hat = (
        x - s_t * eps_hat
    ) / m_t  # Tweedie: E[x0 | x_t] = (x_t + sigma^2 score) / alpha
    a = m_t / m_s
    v = s_t**2 - a**2 * s_s**2  # variance of the forward transition s -> t
    mean = (s_s**2 * a * x + v * m_s * x0_hat) / s_t**2  # Ho et al. eq. (7)
    variance = s_s**2 * v / s_t**2  # and its variance, beta_tilde
    return x0_hat, eps_hat, mean, variance


@torch.no_grad()
def ddpm_ancestral(sde, score_fn, x, ts, *, t_min=None, callback=None, generator=None):
    """Ancestral sampling (Ho et al. 2020, Alg. 2), for any path: x_s ~ q(x_s | x_t, x0_hat).

    With ``sde = DiscreteVP(...)``, ``ts = N`` and ``t_min = 1/N`` it is exactly DDPM's
    loop over t = N..1. The last step returns the posterior mean (no noise), as DDPM
    does.
    """
    ts = _start(sde, x, ts, t_min, callback)
    steps = len(ts) - 1
    for i in range(steps):
        _, _, mean, variance = _posterior_step(sde, score_fn, x, ts[i], ts[i + 1])
        x = mean + variance.sqrt() * _noise(x, generator) if i < steps - 1 else mean
        if callback is not None:
            callback(i + 1, ts[i + 1], x)
    return x


# ------------------------------------------------------------------------------------
# The probability-flow ODE (deterministic samplers)
# ------------------------------------------------------------------------------------


@torch.no_grad()
def ode_euler(sde, score_fn, x, ts, *, t_min=None, callback=None, generator=None):
    """Euler's method in t on the probability-flow ODE, eq. (18)-(19): x <- x + v(x, t) dt.

    First order: the global error shrinks like the largest step. ``generator`` is
    unused.
    """
    ts = _start(sde, x, ts, t_min, callback)
    flow = sde.reverse(score_fn, probability_flow=True)
    for i in range(len(ts) - 1):
        dt = ts[i + 1] - ts[i]
        velocity, _ = flow.sde(x, _batch_time(ts[i], x))
        x = x + velocity * dt
        if callback is not None:
            callback(i + 1, ts[i + 1], x)
    return x


@torch.no_grad()
def ode_heun(sde, score_fn, x, ts, *, t_min=None, callback=None, generator=None):
    """Heun's method (explicit trapezoid) in t on the probability-flow ODE.

    Karras et al. 2022, Alg. 1, but in the variable t and the state x: an Euler step
    gives a trial point, the step is redone with the mean of the slopes at both ends.
    Second order, two score evaluations per step.
    """
    ts = _start(sde, x, ts, t_min, callback)
    flow = sde.reverse(score_fn, probability_flow=True)
    for i in range(len(ts) - 1):
        t, t_next = ts[i], ts[i + 1]
        dt = t_next - t
        d_cur, _ = flow.sde(x, _batch_time(t, x))  # slope at the start
        x_euler = x + d_cur * dt  # Euler predictor
        d_next, _ = flow.sde(x_euler, _batch_time(t_next, x))  # slope at the trial end
        x = x + 0.5 * (d_cur + d_next) * dt  # trapezoidal correction
        if callback is not None:
            callback(i + 1, t_next, x)
    return x


@torch.no_grad()
def edm_heun(sde, score_fn, x, ts, *, t_min=None, callback=None, generator=None):
    """Heun's method on the EDM form of the ODE (Karras et al. 2022, Alg. 1), any path.

    In y = x / alpha and the noise level s = sigma / alpha every Gaussian path is VE,
    y = x0 + s eps, and eq. (18) becomes dy/ds = (y - D(y, s)) / s with the denoiser
    D = x0_hat: no linear drift left for the solver to track. Heun in (y, s): an Euler
    trial step, then the mean of the slopes at both ends. Two evaluations per step.
    """
    ts = _start(sde, x, ts, t_min, callback)
    alpha, s = sde.alpha(ts), noise_levels(sde, ts)
    y = x / alpha[0]
    for i in range(len(ts) - 1):
        ds = s[i + 1] - s[i]
        d_cur = (y - denoise(sde, score_fn, alpha[i] * y, ts[i])) / s[i]  # dy/ds at s_i
        y_euler = y + ds * d_cur
        d_next = (
            y_euler - denoise(sde, score_fn, alpha[i + 1] * y_euler, ts[i + 1])
        ) / s[i + 1]
        y = y + ds * 0.5 * (d_cur + d_next)
        if callback is not None:
            callback(i + 1, ts[i + 1], alpha[i + 1] * y)
    return alpha[-1] * y


@torch.no_grad()
def ddim(sde, score_fn, x, ts, *, t_min=None, callback=None, generator=None, eta=0.0):
    """DDIM (Song, Meng & Ermon 2021, eq. (12)); with eta = 0, the exponential integrator.

    Write the ODE in the half log-SNR l = lam / 2 for x / sigma: d(x / sigma)/dl =
    e^l x0_hat. Its linear part is solved exactly; holding x0_hat fixed over a step
    (first order, Lu et al. 2022b, eq. (9)) gives, with h = l_s - l_t,

        x_s = (sigma_s / sigma_t) x_t + alpha_s (1 - e^-h) x0_hat,

    which is DDIM's x_s = alpha_s x0_hat + sigma_s eps_hat. With eta > 0, noise of std
    eta * (the DDPM posterior std) is added (eta = 1: ancestral sampling).
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta!r}")
    ts = _start(sde, x, ts, t_min, callback)
    alpha, sigma, lam = sde.alpha(ts), sde.sigma(ts), sde.lam(ts)  # (N + 1,) each
    steps = len(ts) - 1
    for i in range(steps):
        if eta == 0:
            x0_hat = denoise(sde, score_fn, x, ts[i])
            h = (lam[i + 1] - lam[i]) / 2
            x = sigma[i + 1] / sigma[i] * x - alpha[i + 1] * torch.expm1(-h) * x0_hat
        else:
            x0_hat, eps_hat, _, variance = _posterior_step(
                sde, score_fn, x, ts[i], ts[i + 1]
            )
            c = eta * variance.sqrt()  # the std of the added noise
            x = (
                alpha[i + 1] * x0_hat
                + (sigma[i + 1] ** 2 - c**2).clamp_min(0).sqrt() * eps_hat
            )
            if i < steps - 1:
                x = x + c * _noise(x, generator)
        if callback is not None:
            callback(i + 1, ts[i + 1], x)
    return x


@torch.no_grad()
def dpm_solver_2m(sde, score_fn, x, ts, *, t_min=None, callback=None, generator=None):
    """DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2): second order, one evaluation per step.

    As DDIM, but x0_hat over the step is extrapolated linearly in l = lam / 2 from this
    step's and the previous step's estimates: D = (1 + 1 / (2r)) x0_i - 1 / (2r)
    x0_{i-1}, r = h_{i-1} / h_i. The first step has no previous estimate and is DDIM's.
    """
    ts = _start(sde, x, ts, t_min, callback)
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


@torch.no_grad()
def dpm_solver_3m(sde, score_fn, x, ts, *, t_min=None, callback=None, generator=None):
    """DPM-Solver++(3M) (Lu et al. 2022b, App. B): third order, one evaluation per step.

    x_s = (sigma_s / sigma_t) x_t + sigma_s int_{l_t}^{l_s} e^l x0(l) dl, with x0(l) the
    quadratic through the last three estimates. In divided differences D1 (slope) and D2
    (curvature) the integral is alpha_s (-phi1 x0_i + phi2 D1 - phi3 D2), where
    phi1 = e^-h - 1, phi2 = phi1 / h + 1, phi3 = phi2 / h - 1/2. Steps 1 and 2 fall back
    to orders 1 and 2 (DDIM, 2M).
    """
    ts = _start(sde, x, ts, t_min, callback)
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
        if len(history) >= 2:
            h0 = l[i] - l[i - 1]
            d1_0 = (history[0] - history[1]) / (h0 / h)  # slope in units of h
            if len(history) == 2:
                x = x + alpha[i + 1] * phi2 * d1_0
            else:
                h1 = l[i - 1] - l[i - 2]
                r0, r1 = h0 / h, h1 / h
                d1_1 = (history[1] - history[2]) / r1
                d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)  # slope at l_i
                d2 = (d1_0 - d1_1) / (r0 + r1)  # half the second derivative
                x = x + alpha[i + 1] * (phi2 * d1 - phi3 * d2)
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
    """DPM-Solver++(3M) as predictor, an exponential Adams-Moulton corrector as corrector.

    The predictor's end point x_{i+1} must be evaluated anyway (D_{i+1} = x0_hat there,
    for the next step); the corrector reuses that evaluation to redo the step with the
    quadratic through D_{i+1}, D_i, D_{i-1}: x_{i+1} = (sigma_{i+1} / sigma_i) x_i +
    alpha_{i+1} int_{-h}^0 e^u P(u) du (the idea of UniPC, Zhao et al. 2023, here with
    exact quadrature weights). D_{i+1} is not recomputed at the corrected point, so the
    cost stays one evaluation per step; the last step has no evaluation after it, so it
    has no corrector and uses a second-order predictor (Lu et al. 2022b's lower order at
    the final step).
    """
    ts = _start(sde, x, ts, t_min, callback)
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
            r0 = (l[i] - history[1][0]) / h
            d1_0 = (history[0][1] - history[1][1]) / r0
            if order == 2:
                x_next = x_next + alpha[i + 1] * phi2 * d1_0
            else:
                r1 = (history[1][0] - history[2][0]) / h
                d1_1 = (history[1][1] - history[2][1]) / r1
                d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                x_next = x_next + alpha[i + 1] * (phi2 * d1 - phi3 * d2)
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


@torch.no_grad()
def solve_probability_flow(
    sde, score_fn, x, t_start, t_end, *, rtol=1e-5, atol=1e-5, t_eval=None
):
    """Integrate the probability-flow ODE from ``t_start`` to ``t_end`` with adaptive RK45.

    Either direction works: t_end < t_start samples (noise -> data), t_end > t_start
    encodes (data -> noise). The state is flattened to float64 for scipy's
    ``solve_ivp``; each evaluation runs the score in x's dtype on x's device. Returns (x
    at t_end, info) with info = {"nfev", "t", "xs" (states at t_eval), "message"}.
    """
    flow = sde.reverse(score_fn, probability_flow=True)
    shape, device, dtype = x.shape, x.device, x.dtype

    def velocity(t, y):  # the ODE's right-hand side on the flat state
        state = torch.from_numpy(y).to(device=device, dtype=dtype).reshape(shape)
        t_batch = torch.full((shape[0],), t, device=device, dtype=dtype)
        v, _ = flow.sde(state, t_batch)
        return v.reshape(-1).double().cpu().numpy()

    y0 = x.reshape(-1).double().cpu().numpy()
    solution = solve_ivp(
        velocity,
        (float(t_start), float(t_end)),
        y0,
        method="RK45",
        rtol=rtol,
        atol=atol,
        t_eval=t_eval,
    )
    if not solution.success:
        raise RuntimeError(f"RK45 failed: {solution.message}")
    x_end = (
        torch.from_numpy(solution.y[:, -1])
        .to(device=device, dtype=dtype)
        .reshape(shape)
    )
    xs = [
        torch.from_numpy(y).to(device=device, dtype=dtype).reshape(shape)
        for y in solution.y.T
    ]
    info = {
        "nfev": solution.nfev,
        "t": solution.t,
        "xs": xs,
        "message": solution.message,
    }
    return x_end, info


def ode_rk45(
    sde,
    score_fn,
    x,
    ts,
    *,
    t_min=None,
    callback=None,
    generator=None,
    rtol=1e-5,
    atol=1e-5,
    stats=None,
):
    """Adaptive Runge-Kutta 4(5) (Dormand-Prince, scipy) on the probability-flow ODE.

    The solver picks its own step sizes to meet rtol/atol; ``ts`` only sets the end
    points and the grid on which ``callback`` sees the trajectory. ``stats``, when a
    dict, receives ``nfev``: the number of score evaluations it used.
    """
    ts = _start(sde, x, ts, t_min, callback)
    t_eval = ts.double().cpu().numpy()
    x_end, info = solve_probability_flow(
        sde,
        score_fn,
        x,
        float(ts[0]),
        float(ts[-1]),
        rtol=rtol,
        atol=atol,
        t_eval=t_eval,
    )
    if callback is not None:
        for i in range(1, len(ts)):
            callback(i, ts[i], info["xs"][i])
    if stats is not None:
        stats["nfev"] = info["nfev"]
    return x_end


class CountingScore:
    """Wrap a score function and count its calls (number of function evaluations, NFE)."""

    def __init__(self, score_fn):
        self.score_fn, self.calls = score_fn, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.score_fn(x, t)


def evaluations_per_step(name):
    """Score evaluations one step of the fixed-step sampler ``name`` costs (Heun: 2)."""
    return 2 if name in ("ode_heun", "edm_heun") else 1


ODE_SAMPLERS = {
    "ode_euler": ode_euler,
    "ode_heun": ode_heun,
    "edm_heun": edm_heun,
    "ddim": ddim,
    "dpm_solver_2m": dpm_solver_2m,
    "dpm_solver_3m": dpm_solver_3m,
    "dpm_solver_3m_pc": dpm_solver_3m_pc,
}
"""The fixed-step deterministic samplers, by name (``ode_rk45`` picks its own steps)."""

SAMPLERS = {
    "euler_maruyama": euler_maruyama,
    "predictor_corrector": predictor_corrector,
    "ddpm_ancestral": ddpm_ancestral,
    **ODE_SAMPLERS,
    "ode_rk45": ode_rk45,
}
DETERMINISTIC = (*ODE_SAMPLERS, "ode_rk45")
