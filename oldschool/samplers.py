"""Samplers: integrate the reverse SDE (eq. (17)) or the probability-flow ODE (eq. (18)) from T to t_min.

Every sampler has one signature,

    sampler(sde, score_fn, x, steps, *, t_min=1e-3, callback=None, generator=None) -> x at t = t_min

where ``x`` is a prior sample at t = T (``sde.prior_sample``), ``score_fn(x, t)`` takes t of
shape (B,), and the time grid is t_0 = T > t_1 > ... > t_steps = t_min (uniform in t, stopping
at a small t_min as Song et al. 2021 do, because the score blows up at t = 0).
``callback(i, t_i, x_i)`` is called for i = 0..steps, first with the starting point, so a
notebook can record a whole trajectory. Device and dtype come from ``x``; coefficients are
broadcast with ``append_dims``, so the samplers run on 2-D points and on images alike.

Models: Song et al. 2021 (Euler-Maruyama, predictor-corrector, the probability-flow ODE),
Karras et al. 2022 (Heun), Ho et al. 2020 (ancestral sampling), Song, Meng & Ermon 2021 (DDIM).
"""

import torch
from scipy.integrate import solve_ivp

from .sde import append_dims


def time_grid(sde, steps, t_min=1e-3, like=None):
    """The grid T = t_0 > ... > t_steps = t_min, shape (steps + 1,), on ``like``'s device and dtype."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not 0 < t_min < sde.T:
        raise ValueError(f"t_min must lie in (0, T={sde.T}), got {t_min!r}")
    device, dtype = (like.device, like.dtype) if like is not None else (None, torch.float64)
    return torch.linspace(sde.T, t_min, steps + 1, device=device, dtype=dtype)


def _start(sde, x, steps, t_min, callback):
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise ValueError("x must be a floating-point tensor of shape (B, ...) holding prior samples")
    ts = time_grid(sde, steps, t_min, like=x)
    if callback is not None:
        callback(0, ts[0], x)
    return ts


def _noise(x, generator):
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _batch_time(t, x):
    return t.expand(x.shape[0])  # score_fn and the SDE take t of shape (B,)


@torch.no_grad()
def forward_euler_maruyama(sde, x0, steps, *, t_end=None, callback=None, generator=None):
    """Simulate the forward SDE, eq. (14), from data x0 at t = 0 to ``t_end`` (default T).

    Euler-Maruyama on a uniform grid 0 = t_0 < ... < t_steps = t_end:
    x <- x + f(x, t) dt + g(t) sqrt(dt) z. ``callback(i, t_i, x_i)`` as for the samplers.
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


@torch.no_grad()
def euler_maruyama(sde, score_fn, x, steps, *, t_min=1e-3, callback=None, generator=None):
    """Euler-Maruyama on the reverse SDE, eq. (17): x <- x + drift dt + g sqrt(|dt|) z.

    The last step adds no noise (it returns the mean), as score_sde does.
    """
    ts = _start(sde, x, steps, t_min, callback)
    reverse = sde.reverse(score_fn)
    for i in range(steps):
        t, dt = ts[i], ts[i + 1] - ts[i]  # dt < 0: time runs backwards
        drift, diffusion = reverse.sde(x, _batch_time(t, x))
        x = x + drift * dt
        if i < steps - 1:
            x = x + diffusion * (-dt).sqrt() * _noise(x, generator)
        if callback is not None:
            callback(i + 1, ts[i + 1], x)
    return x


@torch.no_grad()
def predictor_corrector(sde, score_fn, x, steps, *, t_min=1e-3, callback=None, generator=None,
                        snr=0.16, corrector_steps=1):
    """Predictor-corrector sampling (Song et al. 2021, Alg. 1-2).

    At each t_i: ``corrector_steps`` Langevin MCMC steps that target p_{t_i},
        x <- x + delta score + sqrt(2 delta) z,  delta = 2 (snr ||z|| / ||score||)^2,
    with the norms averaged over the batch (a per-sample ratio explodes where the score
    vanishes, at the modes), then one reverse-diffusion (Euler-Maruyama) predictor step
    to t_{i+1}.
    snr: the corrector's signal-to-noise ratio (0.16 is Song et al.'s value for VE on CIFAR-10).
    """
    if not isinstance(corrector_steps, int) or corrector_steps < 0:
        raise ValueError(f"corrector_steps must be an int >= 0, got {corrector_steps!r}")
    if snr <= 0:
        raise ValueError(f"snr must be positive, got {snr!r}")
    ts = _start(sde, x, steps, t_min, callback)
    reverse = sde.reverse(score_fn)
    for i in range(steps):
        t, dt = _batch_time(ts[i], x), ts[i + 1] - ts[i]
        for _ in range(corrector_steps):  # corrector: Langevin dynamics at fixed t
            score, z = score_fn(x, t), _noise(x, generator)
            ratio = z.flatten(1).norm(dim=1).mean() / score.flatten(1).norm(dim=1).mean().clamp_min(1e-12)
            delta = 2 * (snr * ratio) ** 2  # the Langevin step size, one per batch
            x = x + delta * score + (2 * delta).sqrt() * z
        drift, diffusion = reverse.sde(x, t)  # predictor: one reverse-diffusion step
        x = x + drift * dt
        if i < steps - 1:
            x = x + diffusion * (-dt).sqrt() * _noise(x, generator)
        if callback is not None:
            callback(i + 1, ts[i + 1], x)
    return x


@torch.no_grad()
def ode_euler(sde, score_fn, x, steps, *, t_min=1e-3, callback=None, generator=None):
    """Euler's method on the probability-flow ODE, eq. (18)-(19): x <- x + v(x, t) dt.

    First order: the global error shrinks like 1/steps. ``generator`` is unused (deterministic).
    """
    ts = _start(sde, x, steps, t_min, callback)
    flow = sde.reverse(score_fn, probability_flow=True)
    for i in range(steps):
        dt = ts[i + 1] - ts[i]
        velocity, _ = flow.sde(x, _batch_time(ts[i], x))
        x = x + velocity * dt
        if callback is not None:
            callback(i + 1, ts[i + 1], x)
    return x


@torch.no_grad()
def ode_heun(sde, score_fn, x, steps, *, t_min=1e-3, callback=None, generator=None):
    """Heun's method (explicit trapezoid) on the probability-flow ODE (Karras et al. 2022, Alg. 1).

    An Euler step gives a trial point; the step is redone with the mean of the slopes at
    both ends. Second order, two score evaluations per step.
    """
    ts = _start(sde, x, steps, t_min, callback)
    flow = sde.reverse(score_fn, probability_flow=True)
    for i in range(steps):
        t, t_next = ts[i], ts[i + 1]
        dt = t_next - t
        d_cur, _ = flow.sde(x, _batch_time(t, x))  # slope at the start
        x_euler = x + d_cur * dt  # Euler predictor
        d_next, _ = flow.sde(x_euler, _batch_time(t_next, x))  # slope at the trial end point
        x = x + 0.5 * (d_cur + d_next) * dt  # trapezoidal correction
        if callback is not None:
            callback(i + 1, t_next, x)
    return x


@torch.no_grad()
def solve_probability_flow(sde, score_fn, x, t_start, t_end, *, rtol=1e-5, atol=1e-5, t_eval=None):
    """Integrate the probability-flow ODE from ``t_start`` to ``t_end`` with adaptive RK45.

    Either direction works: t_end < t_start samples (noise -> data), t_end > t_start encodes
    (data -> noise). The state is flattened to float64 for scipy's ``solve_ivp``; each
    evaluation runs the score in x's dtype on x's device.
    Returns (x at t_end, info) with info = {"nfev", "t", "xs" (states at t_eval), "message"}.
    """
    flow = sde.reverse(score_fn, probability_flow=True)
    shape, device, dtype = x.shape, x.device, x.dtype

    def velocity(t, y):  # the ODE's right-hand side on the flat state
        state = torch.from_numpy(y).to(device=device, dtype=dtype).reshape(shape)
        t_batch = torch.full((shape[0],), t, device=device, dtype=dtype)
        v, _ = flow.sde(state, t_batch)
        return v.reshape(-1).double().cpu().numpy()

    y0 = x.reshape(-1).double().cpu().numpy()
    solution = solve_ivp(velocity, (float(t_start), float(t_end)), y0, method="RK45",
                         rtol=rtol, atol=atol, t_eval=t_eval)
    if not solution.success:
        raise RuntimeError(f"RK45 failed: {solution.message}")
    x_end = torch.from_numpy(solution.y[:, -1]).to(device=device, dtype=dtype).reshape(shape)
    xs = [torch.from_numpy(y).to(device=device, dtype=dtype).reshape(shape) for y in solution.y.T]
    info = {"nfev": solution.nfev, "t": solution.t, "xs": xs, "message": solution.message}
    return x_end, info


def ode_rk45(sde, score_fn, x, steps, *, t_min=1e-3, callback=None, generator=None, rtol=1e-5, atol=1e-5,
             stats=None):
    """Adaptive Runge-Kutta 4(5) (Dormand-Prince, scipy) on the probability-flow ODE.

    The solver picks its own step sizes to meet rtol/atol; ``steps`` only sets the grid on
    which ``callback`` sees the trajectory. ``stats``, when a dict, receives ``nfev``: the
    number of score evaluations it used.
    """
    ts = _start(sde, x, steps, t_min, callback)
    t_eval = ts.double().cpu().numpy()
    x_end, info = solve_probability_flow(sde, score_fn, x, sde.T, t_min, rtol=rtol, atol=atol, t_eval=t_eval)
    if callback is not None:
        for i in range(1, steps + 1):
            callback(i, ts[i], info["xs"][i])
    if stats is not None:
        stats["nfev"] = info["nfev"]
    return x_end


def _posterior_step(sde, score_fn, x, t, s):
    """Tweedie's denoised x0_hat at t and the Gaussian q(x_s | x_t, x0_hat) of the forward SDE.

    Every SDE here is linear, so x_t | x_s ~ N(a x_s, v) with a = m_t / m_s and
    v = s_t^2 - a^2 s_s^2. Returns (x0_hat, eps_hat, posterior mean, posterior variance).
    """
    t_b, s_b = _batch_time(t, x), _batch_time(s, x)
    m_t, s_t = (append_dims(v, x.dim()) for v in (sde.alpha(t_b), sde.sigma(t_b)))
    m_s, s_s = (append_dims(v, x.dim()) for v in (sde.alpha(s_b), sde.sigma(s_b)))
    score = score_fn(x, t_b)
    eps_hat = -s_t * score  # the noise the score implies: score = -eps / s_t
    x0_hat = (x - s_t * eps_hat) / m_t  # Tweedie: E[x0 | x_t] = (x_t + s_t^2 score) / m_t
    a = m_t / m_s
    v = s_t**2 - a**2 * s_s**2  # variance of the forward transition s -> t
    mean = (s_s**2 * a * x + v * m_s * x0_hat) / s_t**2  # DDPM's posterior mean (Ho et al. eq. (7))
    variance = s_s**2 * v / s_t**2  # and its variance, beta_tilde
    return x0_hat, eps_hat, mean, variance


@torch.no_grad()
def ddpm_ancestral(sde, score_fn, x, steps, *, t_min=1e-3, callback=None, generator=None):
    """Ancestral sampling (Ho et al. 2020, Alg. 2), for any SDE here: draw x_s ~ q(x_s | x_t, x0_hat).

    With ``sde = DiscreteVP(...)``, ``steps = N`` and ``t_min = 1/N`` it is exactly DDPM's loop
    over t = N..1. The last step returns the posterior mean (no noise), as DDPM does.
    """
    ts = _start(sde, x, steps, t_min, callback)
    for i in range(steps):
        _, _, mean, variance = _posterior_step(sde, score_fn, x, ts[i], ts[i + 1])
        x = mean + variance.sqrt() * _noise(x, generator) if i < steps - 1 else mean
        if callback is not None:
            callback(i + 1, ts[i + 1], x)
    return x


@torch.no_grad()
def ddim(sde, score_fn, x, steps, *, t_min=1e-3, callback=None, generator=None, eta=0.0):
    """DDIM (Song, Meng & Ermon 2021, eq. (12)): x_s = m_s x0_hat + sqrt(s_s^2 - sigma^2) eps_hat + sigma z.

    sigma = eta * (the DDPM posterior std): eta = 0 is deterministic (a first-order solver
    of the probability-flow ODE in the variable x / m), eta = 1 is ancestral sampling.
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta!r}")
    ts = _start(sde, x, steps, t_min, callback)
    for i in range(steps):
        s = ts[i + 1]
        x0_hat, eps_hat, _, variance = _posterior_step(sde, score_fn, x, ts[i], s)
        m_s, s_s = (append_dims(v, x.dim()) for v in (sde.alpha(_batch_time(s, x)), sde.sigma(_batch_time(s, x))))
        sigma = eta * variance.sqrt()
        x = m_s * x0_hat + (s_s**2 - sigma**2).clamp_min(0).sqrt() * eps_hat
        if eta > 0 and i < steps - 1:
            x = x + sigma * _noise(x, generator)
        if callback is not None:
            callback(i + 1, s, x)
    return x


class CountingScore:
    """Wrap a score function and count its calls (number of function evaluations, NFE)."""

    def __init__(self, score_fn):
        self.score_fn, self.calls = score_fn, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.score_fn(x, t)


SAMPLERS = {
    "euler_maruyama": euler_maruyama,
    "predictor_corrector": predictor_corrector,
    "ddpm_ancestral": ddpm_ancestral,
    "ode_euler": ode_euler,
    "ode_heun": ode_heun,
    "ode_rk45": ode_rk45,
    "ddim": ddim,
}
DETERMINISTIC = ("ode_euler", "ode_heun", "ode_rk45", "ddim")
