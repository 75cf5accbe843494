"""Solver accuracy on the exact score: error against NFE, solvers x grids, and a peer.

Chapter 6 and ``benchmarks/sampler_accuracy.py`` measure each deterministic sampler the
same way: start from one cloud of prior noise, integrate the probability-flow ODE (eq.
(18)) with an exact score (``gaussian_mixture.GaussianMixture.score``) to ``t_min``, and compare with
the exact solution of the ODE from the same noise (adaptive RK45 at a tight tolerance),
by the mean per-particle distance. With no score error, the only error left is the
solver's.

The peer is k-diffusion (Crowson's reference implementation of Karras et al. 2022 and of
DPM-Solver++), driven by the same exact score as a denoiser D(y, s) in the VE form y = x
/ alpha(t), s = sigma(t) / alpha(t) (``k_denoiser``). k-diffusion is a book/test-only
dependency, installed without its training dependencies (see
``requirements-peers.txt``); ``k_diffusion_sampling`` imports its ``sampling`` module
alone, without the package's ``__init__``, which pulls in those training dependencies.
"""

import importlib.util
import math
import sys
import types

import torch

from . import ode_solvers, samplers


def exact_solution(sde, score_fn, x, t_min=1e-3, tol=1e-10):
    """The probability-flow ODE solved from x at T to ``t_min`` by RK45 at tol."""
    x_end, _ = ode_solvers.solve_probability_flow(
        sde, score_fn, x, sde.T, t_min, rtol=tol, atol=tol
    )
    return x_end


def mean_error(x, reference):
    """Mean over particles of the distance to the reference: (B, ...) -> float."""
    return float((x - reference).flatten(1).norm(dim=1).mean())


def run(name, sde, score_fn, x, nfe, schedule, *, t_min=1e-3, rho=7.0):
    """Run ``ode_solvers.ODE_SAMPLERS[name]`` with ``nfe`` score evaluations on a grid.

    Returns (x at t_min, the NFE actually used). Two-evaluation methods get nfe // 2
    steps.
    """
    steps = max(1, nfe // ode_solvers.evaluations_per_step(name))
    ts = samplers.time_grid(sde, steps, t_min=t_min, schedule=schedule, rho=rho, like=x)
    counted = samplers.CountingScore(score_fn)
    out = ode_solvers.ODE_SAMPLERS[name](sde, counted, x, ts)
    return out, counted.calls


def sweep(names, schedules, sde, score_fn, x, reference, nfes, *, t_min=1e-3):
    """Errors of each sampler on each grid and NFE: {(name, schedule): [(nfe, err)]}."""
    table = {}
    for name in names:
        for schedule in schedules:
            rows = []
            for nfe in nfes:
                out, used = run(name, sde, score_fn, x, nfe, schedule, t_min=t_min)
                rows.append((used, mean_error(out, reference)))
            table[name, schedule] = rows
    return table


def observed_order(rows):
    """Order of convergence of the last two (nfe, error) rows: -dlog err / dlog nfe."""
    (n1, e1), (n2, e2) = rows[-2], rows[-1]
    return -math.log(e2 / e1) / math.log(n2 / n1)


# ------------------------------------------------------------------------------------
# The peer: k-diffusion
# ------------------------------------------------------------------------------------


def k_diffusion_sampling():
    """``k_diffusion.sampling`` imported alone (None without k-diffusion installed)."""
    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None:
        return None
    package = types.ModuleType("k_diffusion")  # a bare package: skip its heavy __init__
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules.setdefault("k_diffusion", package)
    return importlib.import_module("k_diffusion.sampling")


def k_denoiser(sde, score_fn):
    """D(y, s) for k-diffusion: the denoiser of the VE form y = x / alpha.

    s (shape (B,)) maps to t through the log-SNR lam = -2 log s; then x = alpha(t) y and
    D = x0_hat(x, t) = (x + sigma^2 score) / alpha (Karras et al. 2022, Table 1).
    """

    def model(y, s):
        t = sde.t_of_lam(-2 * torch.log(s)).clamp(
            0, sde.T
        )  # (B,); clamp: rounding at T
        alpha, sigma = sde.alpha(t)[:, None], sde.sigma(t)[:, None]
        x = alpha * y
        return (x + sigma**2 * score_fn(x, t)) / alpha

    return model


K_SAMPLERS = (
    "euler",
    "heun",
    "dpm_2",
    "lms",
    "dpmpp_2m",
    "dpmpp_2m_sde",
    "dpmpp_3m_sde",
    "dpm_fast",
)
"""k-diffusion's fixed-NFE deterministic samplers (``sample_<name>``); the two ``_sde``
ones run with eta = 0, which makes them deterministic (3M is then DPM-Solver++(3M))."""
K_GRIDS = {"karras": "edm", "exponential": "logsnr"}
"""k-diffusion's grids and ours: the same noise levels (built here in float64 by
``samplers.time_grid``; k-diffusion's ``get_sigmas_*`` build them in float32)."""


def k_run(k_sampling, name, sde, score_fn, x, nfe, grid, *, t_min=1e-3):
    """Run k-diffusion's ``sample_<name>`` from x at T to t_min with ``nfe`` evaluations

    grid: "karras" (rho = 7) or "exponential", the noise levels of our "edm" and
    "logsnr" grids (k-diffusion's own ``get_sigmas_*`` give the same in float32 and
    append a final 0, which would stop at t = 0 instead of t_min). Returns (x, nfe
    used).
    """
    ends = torch.tensor([sde.T, t_min], dtype=torch.float64)
    s_max, s_min = (float(v) for v in samplers.noise_levels(sde, ends))
    counted = samplers.CountingScore(score_fn)
    model = k_denoiser(sde, counted)
    alpha_t, alpha_0 = (float(v) for v in sde.alpha(ends))
    y = x / alpha_t
    if name == "dpm_fast":
        y = k_sampling.sample_dpm_fast(model, y, s_min, s_max, nfe, disable=True)
    else:
        steps = max(1, nfe // (2 if name in ("heun", "dpm_2") else 1))
        ts = samplers.time_grid(sde, steps, t_min=t_min, schedule=K_GRIDS[grid], like=x)
        sigmas = samplers.noise_levels(sde, ts)
        extra = {"eta": 0.0} if name.endswith("_sde") else {}  # deterministic
        y = getattr(k_sampling, f"sample_{name}")(
            model, y, sigmas, disable=True, **extra
        )
    return alpha_0 * y, counted.calls


def peer_table(sde, score_fn, x, reference, nfes, k_sampling):
    """{nfe: {label: error}} for both sides at each NFE.

    Every oldschool ODE sampler on every grid ('ours:<name>/<grid>'), every k-diffusion
    sampler of ``K_SAMPLERS`` on its grids ('k:<name>/<grid>'; ``dpm_fast`` picks its
    own), all from the same x to the same t_min.
    """
    table = {}
    for nfe in nfes:
        row = {}
        for name in ode_solvers.ODE_SAMPLERS:
            for schedule in samplers.SCHEDULES:
                out, used = run(name, sde, score_fn, x, nfe, schedule)
                row[f"ours:{name}/{schedule}"] = mean_error(out, reference)
        for name in K_SAMPLERS if k_sampling is not None else ():
            for grid in ("own",) if name == "dpm_fast" else K_GRIDS:
                out, used = k_run(k_sampling, name, sde, score_fn, x, nfe, grid)
                row[f"k:{name}/{grid}"] = mean_error(out, reference)
        table[nfe] = row
    return table


def best_of_each_side(row):
    """(our best error, its label, k-diffusion's best, its label) of one table row."""
    ours = min((e, k[5:]) for k, e in row.items() if k.startswith("ours:"))
    theirs = min(
        ((e, k[2:]) for k, e in row.items() if k.startswith("k:")),
        default=(float("nan"), "-"),
    )
    return (*ours, *theirs)
