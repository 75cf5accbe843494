"""Samplers: time grids, and the reverse SDE (notes eq. (17)) walked on them.

Every sampler of the package has one signature,

    sampler(sde, score_fn, x, ts, *, callback=None, generator=None) -> x at t = ts[-1]

``sde`` is any ``GaussianPath`` (x_t = alpha(t) x0 + sigma(t) eps); ``x`` holds samples
at t = ts[0]; ``score_fn(x, t)`` takes t of shape (B,). ``ts`` is the time grid, a
decreasing 1-D tensor t_0 > t_1 > ... > t_N (``time_grid`` builds the usual ones); an
int N still means N uniform steps from T to ``t_min`` (default 1e-3; the score blows
up at t = 0, so Song et al. 2021 stop short of it). Grid and solver are two separate
levers (Karras et al. 2022). ``callback(i, t_i, x_i)`` is called for i = 0..N, first
with the starting point. ``start`` checks these inputs once; the steps check nothing.

Everything is written in alpha, sigma and the log-SNR lam = log(alpha^2 / sigma^2), so
the samplers run on VP, sub-VP, VE, DiscreteVP and the linear path of chapter 8 alike.
The network enters only through the score; the denoised estimate ("x0-prediction",
Tweedie) is x0_hat = (x + sigma^2 score) / alpha, and the noise estimate is eps_hat =
-sigma score.

This module holds the grids, the check at the door, the denoiser, and the samplers
that add noise: Euler-Maruyama and predictor-corrector (Song et al. 2021), ancestral
sampling (Ho et al. 2020) and DDIM (Song, Meng & Ermon 2021), which for eta = 0 is the
first-order exponential integrator. The probability-flow ODE solvers live in
``ode_solvers`` and ``dpm_solvers``.
"""

import torch

from . import checks
from .sde import append_dims

SCHEDULES = ("uniform", "edm", "logsnr")


# ------------------------------------------------------------------------------------
# Time grids
# ------------------------------------------------------------------------------------


def time_grid(
    sde, steps, *, t_min=1e-3, schedule="uniform", rho=7.0, t_max=None, like=None
):
    """The grid t_max = t_0 > ... > t_steps = t_min, shape (steps + 1,), float64.

    schedule: "uniform" in t (Song et al. 2021); "edm", the noise level sigma/alpha
    spaced uniformly in sigma^(1/rho) (Karras et al. 2022, eq. (5); rho = 7); "logsnr",
    uniform in lam (Lu et al. 2022a; k-diffusion's "exponential" grid). The noise levels
    are mapped back to t exactly through ``sde.t_of_lam`` (lam = -2 log(sigma/alpha)).
    t_max: the start, default ``sde.T`` (a path with alpha(T) = 0 needs t_max < T for
    the "edm" and "logsnr" grids, whose noise level must be finite). like: a tensor
    whose device and dtype the grid takes.
    """
    t_max = sde.T if t_max is None else float(t_max)
    checks.number(steps, "steps", low=1, integer=True)
    if not 0 < t_min < t_max <= sde.T:
        raise ValueError(
            f"need 0 < t_min < t_max <= T={sde.T}, got t_min={t_min!r}, t_max={t_max!r}"
        )
    checks.one_of(schedule, "schedule", SCHEDULES)
    checks.number(rho, "rho", low=0, low_open=True)
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
    """The EDM noise level sigma(t) / alpha(t) at each time of ``ts`` (k-diffusion's
    sigmas; Karras et al. 2022, Table 1)."""
    return sde.sigma(ts) / sde.alpha(ts)


def start(sde, x, ts, t_min=None, callback=None):
    """A sampler's inputs, checked once: returns the grid on x's device and dtype.

    x: a floating-point batch (B, ...) at t = ts[0]; ts: an int number of uniform steps
    (then ``t_min``, default 1e-3, is the end) or a strictly decreasing 1-D tensor of
    times in [0, T]. Calls ``callback(0, ts[0], x)`` for the starting point.
    """
    checks.tensor(x, "x", batch=True, floating=True)
    if isinstance(ts, int) and not isinstance(ts, bool):
        ts = time_grid(sde, ts, t_min=1e-3 if t_min is None else t_min, like=x)
    elif isinstance(ts, torch.Tensor):
        if t_min is not None:
            raise ValueError(
                "t_min is for an int number of steps; a grid ts ends where it ends"
            )
        ts = checks.times(ts, "ts", t_max=sde.T).to(device=x.device, dtype=x.dtype)
        if ts.dim() != 1 or len(ts) < 2 or not (ts[1:] < ts[:-1]).all():
            raise ValueError(
                "ts must be a strictly decreasing 1-D tensor of length >= 2"
            )
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
    """Tweedie's denoised estimate x0_hat = E[x0 | x_t = x].

    x0_hat = (x + sigma^2 score) / alpha:
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
    """Simulate the forward SDE, eq. (14), from data x0 at t = 0 to ``t_end`` (or T).

    Euler-Maruyama on a uniform grid 0 = t_0 < ... < t_steps = t_end: x <- x + f(x, t)
    dt + g(t) sqrt(dt) z. ``callback(i, t_i, x_i)`` as for the samplers.
    """
    checks.tensor(x0, "x0", floating=True)
    checks.number(steps, "steps", low=1, integer=True)
    t_end = sde.T if t_end is None else float(t_end)
    checks.number(t_end, "t_end", low=0, high=sde.T, low_open=True)
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
    checks.one_of(final, "final", FINAL_STEPS)
    ts = start(sde, x, ts, t_min, callback)
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
    checks.number(corrector_steps, "corrector_steps", low=0, integer=True)
    checks.number(snr, "snr", low=0, low_open=True)
    ts = start(sde, x, ts, t_min, callback)
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
    """Tweedie's x0_hat at t and the forward process's Gaussian q(x_s | x_t, x0_hat).

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
    """Ancestral sampling (Ho et al. 2020, Alg. 2): x_s ~ q(x_s | x_t, x0_hat).

    Any Gaussian path. With ``sde = DiscreteVP(...)``, ``ts = N`` and ``t_min = 1/N``
    it is exactly DDPM's loop over t = N..1. The last step returns the posterior mean
    (no noise), as DDPM does.
    """
    ts = start(sde, x, ts, t_min, callback)
    steps = len(ts) - 1
    for i in range(steps):
        _, _, mean, variance = _posterior_step(sde, score_fn, x, ts[i], ts[i + 1])
        x = mean + variance.sqrt() * _noise(x, generator) if i < steps - 1 else mean
        if callback is not None:
            callback(i + 1, ts[i + 1], x)
    return x


@torch.no_grad()
def ddim(sde, score_fn, x, ts, *, t_min=None, callback=None, generator=None, eta=0.0):
    """DDIM (Song, Meng & Ermon 2021, eq. (12)); for eta = 0 the exponential integrator.

    Write the ODE in the half log-SNR l = lam / 2 for x / sigma: d(x / sigma)/dl =
    e^l x0_hat. Its linear part is solved exactly; holding x0_hat fixed over a step
    (first order, Lu et al. 2022b, eq. (9)) gives, with h = l_s - l_t,

        x_s = (sigma_s / sigma_t) x_t + alpha_s (1 - e^-h) x0_hat,

    which is DDIM's x_s = alpha_s x0_hat + sigma_s eps_hat. With eta > 0, noise of std
    eta * (the DDPM posterior std) is added (eta = 1: ancestral sampling).
    """
    checks.number(eta, "eta", low=0, high=1)
    ts = start(sde, x, ts, t_min, callback)
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


class CountingScore:
    """A score function that counts its calls (number of function evaluations, NFE)."""

    def __init__(self, score_fn):
        self.score_fn, self.calls = score_fn, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.score_fn(x, t)
