"""Flow matching and rectified flow: regress a velocity, sample with chapter 6's ODE.

notes 3.1 ("the road to flow matching"); Lipman et al. 2023 (flow matching), Liu et al.
2023 (rectified flow, reflow), Esser et al. 2024 (SD3: logit-normal t, timestep shift),
Black Forest Labs 2024 (FLUX: the shift chosen from the image size).

On a Gaussian path x_t = alpha(t) x0 + sigma(t) eps (``oldschool.sde``), a data point
moves with the *conditional* velocity d x_t / dt = alpha' x0 + sigma' eps. Flow
matching regresses a network on it,

    L(theta) = E_{t, x0, eps} || u_theta(x_t, t) - (alpha' x0 + sigma' eps) ||^2,

and since a squared loss is minimized by a conditional mean, its minimizer is the
*marginal* velocity u_t(x) = E[alpha' x0 + sigma' eps | x_t = x]
(``gaussian_mixture.GaussianMixture.velocity``), which is the probability-flow drift
f x - 1/2 g^2 score of chapter 6. So the loss is ``denoising.dsm_loss`` with the "velocity"
parameterization, and the samplers of chapter 6 run on it through
``denoising.score_fn_from_model(model, path, "velocity")``. On the linear path
(``sde.LinearPath``) the target is eps - x0.

Sampling goes through ``integrate``: the one place this module calls the samplers.
"""

import math

import torch

from . import checks, denoising, samplers
from .sde import append_dims


# ---------------------------------------------------------------- where t is drawn


def logit_normal_times(
    n, *, mean=0.0, std=1.0, generator=None, device=None, dtype=torch.float32
):
    """n times t = sigmoid(mean + std z), z ~ N(0, 1): SD3's "lognorm(m, s)" (Esser et
    al. 2024, sec. 3.1; their best setting is m = 0, s = 1). More samples mid-path."""
    z = torch.randn(n, generator=generator, device=device, dtype=dtype)
    return torch.sigmoid(mean + std * z)


def logit_normal_density(t, mean=0.0, std=1.0):
    """pi(t) = exp(-(logit t - m)^2 / (2 s^2)) / (s sqrt(2 pi) t (1 - t)) on (0, 1)."""
    logit = torch.log(t) - torch.log1p(-t)
    normal = torch.exp(-0.5 * ((logit - mean) / std) ** 2)
    normal = normal / (std * math.sqrt(2 * math.pi))
    return normal / (t * (1 - t))  # times |d logit / dt|


def shift_time(t, shift):
    """The timestep shift t -> s t / (1 + (s - 1) t) of SD3 (Esser et al. 2024, sec.
    5.3.2, with s = sqrt(m / n) for m pixels against a base of n) and FLUX; diffusers'
    ``FlowMatchEulerDiscreteScheduler`` applies it to its sigmas with s = ``shift``.

    On the linear path it moves every log-SNR by the same amount: lam -> lam - 2 log s.
    """
    if not shift > 0:
        raise ValueError(f"shift must be positive, got {shift!r}")
    return shift * t / (1 + (shift - 1) * t)


def shifted_density(t, shift, density):
    """The density of shift_time(t0, shift) when t0 has ``density`` (a function of t).

    The inverse map is t0 = t / (s - (s - 1) t), with d t0 / dt = s / (s - (s - 1) t)^2.
    """
    denominator = shift - (shift - 1) * t
    return density(t / denominator) * shift / denominator**2


def resolution_shift(num_pixels, base_pixels=256 * 256):
    """SD3's shift for a resolution: s = sqrt(m / n), m pixels against a base of n
    (Esser et al. 2024, sec. 5.3.2; from a 256^2 base they use s = 3 at 1024^2, where
    the formula gives 4)."""
    return math.sqrt(num_pixels / base_pixels)


def flux_shift(
    image_seq_len, base_seq_len=256, max_seq_len=4096, base_shift=0.5, max_shift=1.15
):
    """FLUX's shift: s = exp(mu) with mu linear in the number of latent tokens, from
    ``base_shift`` at ``base_seq_len`` to ``max_shift`` at ``max_seq_len`` (the defaults
    of diffusers' FLUX pipeline, ``calculate_shift``; a 1024^2 image is 4096 tokens)."""
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return math.exp(base_shift + slope * (image_seq_len - base_seq_len))


def sample_times(
    n,
    path,
    *,
    sampling="uniform",
    shift=1.0,
    generator=None,
    device=None,
    dtype=torch.float32,
):
    """n training times in [0, path.T]: "uniform" or "logit_normal" (m = 0, s = 1),
    then shifted by ``shift`` (``shift_time``).

    Draws above T (the linear path ends at T = 0.999) are clipped to T.
    """
    checks.one_of(sampling, "sampling", ("uniform", "logit_normal"))
    if sampling == "uniform":
        t = torch.rand(n, generator=generator, device=device, dtype=dtype)
    else:
        t = logit_normal_times(n, generator=generator, device=device, dtype=dtype)
    return shift_time(t, shift).clamp(max=path.T)


# ---------------------------------------------------------------- the loss


def velocity_regression(model, x0, eps, t, path):
    """|| model(x_t, t) - (alpha' x0 + sigma' eps) ||^2 for given (x0, eps) and times t.

    Averaged over the data dimensions, then the batch; returns (loss, parts) with the
    errors of the implied noise and clean-data predictions (``denoising.eps_and_x0``), as
    ``denoising.dsm_loss`` does.
    """
    coefficients = (path.alpha, path.sigma, path.d_alpha, path.d_sigma)
    alpha, sigma, d_alpha, d_sigma = (append_dims(c(t), x0.dim()) for c in coefficients)
    x_t = alpha * x0 + sigma * eps  # a point on the path from x0 to eps
    target = d_alpha * x0 + d_sigma * eps  # its velocity: eps - x0 on the linear path
    output = model(x_t, t)
    loss = (output - target).pow(2).flatten(1).mean(1).mean()
    with torch.no_grad():
        eps_hat, x0_hat = denoising.eps_and_x0(
            output.detach(), x_t, alpha, sigma, "velocity", d_alpha, d_sigma
        )
        parts = {
            "mse_eps": (eps_hat - eps).pow(2).mean(),
            "mse_x0": (x0_hat - x0).pow(2).mean(),
        }
    return loss, parts


def cfm_loss(model, x0, path, *, sampling="uniform", shift=1.0, generator=None):
    """Conditional flow matching (Lipman et al. 2023, sec. 3.2; Liu et al. 2023).

    eps ~ N(0, I) independent of x0, t from ``sample_times``; the loss is
    ``velocity_regression``; train with
    ``train.train(model, lambda m, x: cfm_loss(m, x, path), ...)``.
    With uniform t it is ``denoising.dsm_loss(model, x0, path, "velocity")``.
    """
    checks.tensor(x0, "x0", batch=True, floating=True)
    t = sample_times(
        x0.shape[0],
        path,
        sampling=sampling,
        shift=shift,
        generator=generator,
        device=x0.device,
        dtype=x0.dtype,
    )
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    return velocity_regression(model, x0, eps, t, path)


def reflow_loss(model, pair, path, *, generator=None):
    """Flow matching on *coupled* pairs (x0, eps) = (ODE sample, its noise): the reflow
    of Liu et al. 2023 (their objective, (X0, X1) from the previous flow), t uniform."""
    x0, eps = pair
    checks.tensor(x0, "x0", floating=True)
    checks.tensor(eps, "eps (the pair must have one shape)", shape=tuple(x0.shape))
    t = sample_times(
        x0.shape[0], path, generator=generator, device=x0.device, dtype=x0.dtype
    )
    return velocity_regression(model, x0, eps, t, path)


# ---------------------------------------------------------------- sampling and reflow


def integrate(
    sampler, path, score_fn, x, steps, *, t_min=1e-3, callback=None, **options
):
    """Run an ODE sampler of ``oldschool.ode_solvers`` (``ode_euler``, ``ode_heun``,
    ``ode_rk45`` with its ``options``) from T to t_min: the one call site of the
    samplers in this module and chapter 8 (recordings use ``trajectories.record``)."""
    return sampler(path, score_fn, x, steps, t_min=t_min, callback=callback, **options)


def error_vs_nfe(sampler, path, score_fn, x, step_counts, reference, *, t_min=1e-3):
    """Per step count: (number of field evaluations, mean distance to ``reference``).

    The solver study of chapter 6 on any path: the reference is the same noise ``x``
    integrated accurately (e.g. ``ode_solvers.ode_rk45`` at a tight tolerance).
    """
    nfes, errors = [], []
    for steps in step_counts:
        counted = samplers.CountingScore(score_fn)
        out = integrate(sampler, path, counted, x, steps, t_min=t_min)
        nfes.append(counted.calls)
        errors.append(float((out - reference).flatten(1).norm(dim=1).mean()))
    return nfes, errors


def nfe_to_reach(nfes, errors, tolerance):
    """The smallest NFE whose error is below ``tolerance`` (inf when none is)."""
    return min((n for n, e in zip(nfes, errors) if e < tolerance), default=math.inf)


@torch.no_grad()
def reflow_pairs(sampler, path, score_fn, eps, steps, *, t_min=1e-3):
    """Couple each noise vector with the sample the current flow maps it to (Liu et al.
    2023, Alg. 1): returns (x0, eps), ready for ``reflow_loss``."""
    x0 = integrate(sampler, path, score_fn, eps, steps, t_min=t_min)  # checks eps
    return x0, eps


def straightness(ts, xs):
    """Liu et al. 2023's straightness, per unit time: with the chord's velocity
    c = (x_end - x_start) / (t_end - t_start) and dx/dt that of each recorded step,

        S = int || c - dx/dt ||^2 dt / |t_end - t_start|,  averaged over the paths.

    ts: (steps + 1,) times; xs: (steps + 1, B, ...) states (``trajectories.record``).
    S = 0 exactly when every path is a straight line run at constant speed.
    """
    dt = (ts[1:] - ts[:-1]).to(xs.dtype)  # (steps,)
    step_velocity = (xs[1:] - xs[:-1]) / append_dims(dt, xs.dim())  # (steps, B, ...)
    chord_velocity = (xs[-1] - xs[0]) / (ts[-1] - ts[0]).to(xs.dtype)  # (B, ...)
    gap = (step_velocity - chord_velocity).pow(2).flatten(2).sum(-1).mean(-1)
    return float((gap * dt.abs()).sum() / dt.abs().sum())


def length_ratio(xs):
    """Total path length over total chord length of a batch of paths: 1 for straight
    paths, whatever their speed (unlike ``straightness``, it does not depend on how
    time is parameterized). A ratio of sums, so paths with tiny chords do not dominate.

    xs: (steps + 1, B, ...) recorded states.
    """
    length = (xs[1:] - xs[:-1]).flatten(2).norm(dim=-1).sum()
    chord = (xs[-1] - xs[0]).flatten(1).norm(dim=-1).sum()
    return float(length / chord)


def transfer_score(score_fn, source, target):
    """A score function of ``source``'s path turned into one for ``target``'s path.

    Two paths at the same log-SNR lam differ by a scale: x_target(t) = c x_source(t_s),
    t_s = source.t_of_lam(target.lam(t)), c = target.sigma(t) / source.sigma(t_s)
    (= the ratio of the alphas: at equal lam the marginals differ only by this scale,
    the observation behind Kingma et al. 2021's invariance of the loss to the noise
    schedule). So score_target(x, t) = score_source(x / c, t_s) / c. Times t_s beyond
    the source's range (the linear path reaches lam = -13.8, the VP SDE only -10.0) are
    clipped to [0, source.T]; there both marginals are nearly N(0, sigma^2 I), and the
    ratio of the sigmas keeps the noise scale right.
    """

    def transferred(x, t):
        t_s = source.t_of_lam(target.lam(t)).clamp(0, source.T)
        c = append_dims(target.sigma(t) / source.sigma(t_s), x.dim())
        return score_fn(x / c, t_s) / c

    return transferred


def lam_weighting(path, lam, parameterization="velocity", density=None):
    """The weight the loss puts on the eps-MSE per unit of log-SNR (Kingma & Gao 2023).

    A loss E_t[MSE_q(t)] with t ~ ``density`` (uniform on [0, 1] when None) equals
    int w(lam) MSE_eps(lam) dlam with w = density(t) |dt/dlam| / eps_weight_q(t), where
    eps_weight_q converts q's error to the eps error (``denoising.eps_weight``) and
    dlam/dt = 2 (alpha'/alpha - sigma'/sigma). Returns w on the grid ``lam``.
    """
    t = path.t_of_lam(lam)
    coefficients = (path.alpha, path.sigma, path.d_alpha, path.d_sigma)
    alpha, sigma, d_alpha, d_sigma = (c(t) for c in coefficients)
    dlam_dt = 2 * (d_alpha / alpha - d_sigma / sigma)
    p_t = torch.ones_like(t) if density is None else density(t)
    w_q = denoising.eps_weight(alpha, sigma, parameterization, d_alpha, d_sigma)
    return p_t / dlam_dt.abs() / w_q
