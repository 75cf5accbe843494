"""Solvers of the probability-flow ODE (notes eq. (18)) in t, and the table of samplers.

Euler and Heun step the ODE dx/dt = v(x, t) in t (Song et al. 2021); ``edm_heun`` steps
its EDM form in the noise level (Karras et al. 2022); ``solve_probability_flow`` and
``ode_rk45`` hand it to scipy's adaptive Runge-Kutta 4(5), in either direction. The
fixed-step ones have the samplers' signature (``samplers`` module docstring), as do the
exponential integrators of ``dpm_solvers``; ``ODE_SAMPLERS`` and ``SAMPLERS`` name them
all for the chapters' tables and widgets.
"""

import torch
from scipy.integrate import solve_ivp

from . import dpm_solvers, samplers
from . import checks
from .samplers import denoise, noise_levels, start


@torch.no_grad()
def ode_euler(sde, score_fn, x, ts, *, t_min=None, callback=None, generator=None):
    """Euler's method in t on the probability-flow ODE, eqs. (18)-(19): x += v(x, t) dt.

    First order: the global error shrinks like the largest step. ``generator`` is
    unused.
    """
    ts = start(sde, x, ts, t_min, callback)
    flow = sde.reverse(score_fn, probability_flow=True)
    for i in range(len(ts) - 1):
        dt = ts[i + 1] - ts[i]
        velocity, _ = flow.sde(x, ts[i].expand(len(x)))  # t of shape (B,)
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
    ts = start(sde, x, ts, t_min, callback)
    flow = sde.reverse(score_fn, probability_flow=True)
    for i in range(len(ts) - 1):
        t, t_next = ts[i].expand(len(x)), ts[i + 1].expand(len(x))  # (B,) each
        dt = ts[i + 1] - ts[i]
        d_cur, _ = flow.sde(x, t)  # slope at the start
        x_euler = x + d_cur * dt  # Euler predictor
        d_next, _ = flow.sde(x_euler, t_next)  # slope at the trial end
        x = x + 0.5 * (d_cur + d_next) * dt  # trapezoidal correction
        if callback is not None:
            callback(i + 1, ts[i + 1], x)
    return x


@torch.no_grad()
def edm_heun(sde, score_fn, x, ts, *, t_min=None, callback=None, generator=None):
    """Heun's method on the EDM form of the ODE (Karras et al. 2022, Alg. 1), any path.

    In y = x / alpha and the noise level s = sigma / alpha every Gaussian path is VE,
    y = x0 + s eps, and eq. (18) becomes dy/ds = (y - D(y, s)) / s with the denoiser
    D = x0_hat: no linear drift left for the solver to track. Heun in (y, s): an Euler
    trial step, then the mean of the slopes at both ends. Two evaluations per step.
    """
    ts = start(sde, x, ts, t_min, callback)
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
def solve_probability_flow(
    sde, score_fn, x, t_start, t_end, *, rtol=1e-5, atol=1e-5, t_eval=None
):
    """The probability-flow ODE integrated from ``t_start`` to ``t_end`` by RK45.

    Either direction works: t_end < t_start samples (noise -> data), t_end > t_start
    encodes (data -> noise). The state is flattened to float64 for scipy's
    ``solve_ivp``; each evaluation runs the score in x's dtype on x's device. Returns (x
    at t_end, info) with info = {"nfev", "t", "xs" (states at t_eval), "message"}.
    """
    checks.tensor(x, "x", floating=True)
    checks.number(float(t_start), "t_start", low=0, high=sde.T)
    checks.number(float(t_end), "t_end", low=0, high=sde.T)
    return _rk45(sde, score_fn, x, t_start, t_end, rtol, atol, t_eval)


def _rk45(sde, score_fn, x, t_start, t_end, rtol, atol, t_eval):
    """``solve_probability_flow`` on inputs its callers have checked."""
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


@torch.no_grad()
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
    ts = start(sde, x, ts, t_min, callback)
    t_eval = ts.double().cpu().numpy()
    x_end, info = _rk45(sde, score_fn, x, ts[0], ts[-1], rtol, atol, t_eval)
    if callback is not None:
        for i in range(1, len(ts)):
            callback(i, ts[i], info["xs"][i])
    if stats is not None:
        stats["nfev"] = info["nfev"]
    return x_end


def evaluations_per_step(name):
    """Score evaluations one step of the fixed-step sampler ``name`` costs (Heun: 2)."""
    return 2 if name in ("ode_heun", "edm_heun") else 1


ODE_SAMPLERS = {
    "ode_euler": ode_euler,
    "ode_heun": ode_heun,
    "edm_heun": edm_heun,
    "ddim": samplers.ddim,
    "dpm_solver_2m": dpm_solvers.dpm_solver_2m,
    "dpm_solver_3m": dpm_solvers.dpm_solver_3m,
    "dpm_solver_3m_pc": dpm_solvers.dpm_solver_3m_pc,
}
"""The fixed-step deterministic samplers, by name (``ode_rk45`` picks its own steps)."""

SAMPLERS = {
    "euler_maruyama": samplers.euler_maruyama,
    "predictor_corrector": samplers.predictor_corrector,
    "ddpm_ancestral": samplers.ddpm_ancestral,
    **ODE_SAMPLERS,
    "ode_rk45": ode_rk45,
}
"""Every sampler of the package by name, the reverse-SDE ones of ``samplers`` too."""
