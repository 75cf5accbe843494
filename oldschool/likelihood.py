"""Log-likelihood through the probability-flow ODE: instantaneous change of variables.

Along a solution of dx/dt = v(x, t) (eq. (18)) the log-density changes by
d log p_t(x_t) / dt = -div v(x_t, t) (Chen et al. 2018; Song et al. 2021, App. D.2), so

    log p_{t_min}(x) = log p_T(x_T) + int_{t_min}^{T} div v(x_t, t) dt,

with x_T the ODE's image of x ("encode" forwards in time). In 2-D the divergence is the
trace of the 2 x 2 Jacobian, exact with two backward passes; in high dimension one uses
Hutchinson's estimator E_z[z^T (dv/dx) z] = div v for z with E[z z^T] = I (Rademacher
here; one z per point, fixed along the path as in FFJORD, Grathwohl et al. 2019), one
vector-Jacobian product per evaluation. For a ``gaussian_mixture.GaussianMixture`` the answer
log p_{t_min} is known exactly (``mixture.diffused(t_min, sde).log_prob``).
"""

import torch
from scipy.integrate import solve_ivp

from . import checks

DIVERGENCES = ("exact", "hutchinson")


def _velocity_and_divergence(flow, x, t, divergence, probes):
    """v(x, t) and its divergence (exact trace, or z^T J z with the given probes)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        v, _ = flow.sde(x, t)
        if divergence == "exact":
            div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            for i in range(x.shape[1]):  # d v_i / d x_i, one backward pass each
                (grad,) = torch.autograd.grad(v[:, i].sum(), x, retain_graph=True)
                div = div + grad[:, i]
        else:
            (vjp,) = torch.autograd.grad((v * probes).sum(), x)  # z^T J, one pass
            div = (vjp * probes).sum(1)
    return v.detach(), div.detach()


def log_likelihood(
    sde,
    score_fn,
    x,
    *,
    t_min=1e-3,
    divergence="exact",
    rtol=1e-6,
    atol=1e-6,
    generator=None,
    prior_log_prob=None,
):
    """log p_{t_min}(x) by integrating eq. (18) and its divergence from t_min to T.

    x: (B, D) points at t = t_min. divergence: "exact" or "hutchinson" (Rademacher
    probes drawn once with ``generator``). prior_log_prob: log p_T as a function of x_T
    (default ``sde.prior_log_prob``, the N(0, prior_std^2 I) the samplers start from).
    Returns (log p (B,), info) with info = {"nfev", "prior" (log p_T(x_T)), "integral"
    (int div v dt), "x_T"}. Runs in x's dtype.
    """
    checks.one_of(divergence, "divergence", DIVERGENCES)
    checks.tensor(x, "x", shape=("B", "D"), floating=True)
    if not 0 < t_min < sde.T:
        raise ValueError(f"t_min must lie in (0, T={sde.T}), got {t_min!r}")
    flow = sde.reverse(score_fn, probability_flow=True)
    n, d = x.shape
    probes = None
    if divergence == "hutchinson":
        probes = torch.randint(
            0, 2, x.shape, generator=generator, device=x.device, dtype=x.dtype
        )
        probes = 2 * probes - 1  # Rademacher: +-1 with equal odds

    def rhs(t, y):  # the state is [x (n*d), integral of div v (n)]
        state = torch.from_numpy(y[: n * d]).to(x).reshape(n, d)
        t_batch = torch.full((n,), t, dtype=x.dtype, device=x.device)
        v, div = _velocity_and_divergence(flow, state, t_batch, divergence, probes)
        return torch.cat([v.reshape(-1), div]).double().cpu().numpy()

    y0 = torch.cat([x.reshape(-1), x.new_zeros(n)]).double().cpu().numpy()
    solution = solve_ivp(rhs, (t_min, sde.T), y0, method="RK45", rtol=rtol, atol=atol)
    if not solution.success:
        raise RuntimeError(f"RK45 failed: {solution.message}")
    end = torch.from_numpy(solution.y[:, -1]).to(x)
    x_T, integral = end[: n * d].reshape(n, d), end[n * d :]
    prior = (sde.prior_log_prob if prior_log_prob is None else prior_log_prob)(x_T)
    info = {"nfev": solution.nfev, "prior": prior, "integral": integral, "x_T": x_T}
    return prior + integral, info
