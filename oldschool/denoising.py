"""What a denoiser predicts (its parameterization) and the loss that trains it.

* ``targets``, ``eps_and_x0``, ``eps_weight``: the algebra between the five things a
  network may predict from x_t (noise, clean data, v, score, velocity).
* ``dsm_loss``: denoising score matching written as a regression on x_t = alpha_t x_0 +
  sigma_t eps, with eps-, x0-, v-, score- or velocity-prediction (notes section 3 intro:
  "MSE on noise or on v"; Ho et al. 2020, Salimans & Ho 2022, Vincent 2011, Lipman et
  al. 2023), and ``prediction_errors``, one error seen through the five losses.
* ``score_fn_from_model``: whatever the parameterization, the score the samplers need.

The five parameterizations are one linear map apart, given x_t and the path's alpha_t,
sigma_t (and, for the velocity, their time derivatives alpha', sigma'):

    eps      = (x_t - alpha x0) / sigma
    v        = (alpha eps - sigma x0) / r,   r = sqrt(alpha^2 + sigma^2)
    score    = -eps / sigma                  (the score of q(x_t | x_0))
    velocity = alpha' x0 + sigma' eps        (d x_t / dt: the flow-matching target)

v is Salimans & Ho's d x_t / d phi for the angle phi = atan(sigma / alpha), taken on the
path divided by its scale r: on a variance-preserving path r = 1 and it is their
v = alpha eps - sigma x0; on any other path (VE, sub-VP, linear) it is the same quantity
for the rescaled x_t / r, so v-prediction runs everywhere with one meaning. The velocity
is the one parameterization tied to a time variable (it changes if t is
reparameterized); it is what flow matching and rectified flow regress on (chapter 8).

Chapter 4 derives these maps and the loss weights between them with sympy
(``oldschool.symbolic``). An ``sde`` here is any ``oldschool.sde.GaussianPath``
(``alpha(t)``, ``sigma(t)``, ``d_alpha(t)``, ``d_sigma(t)``), such as ``VPSDE`` or
``LinearPath``. The doors are ``dsm_loss``, ``prediction_errors`` and
``score_fn_from_model`` (which checks the parameterization once, not its score_fn's t
at every step); the maps trust their callers.
"""

import torch

from . import checks
from .sde import append_dims  # (B,) -> (B, 1, ..., 1)

PARAMETERIZATIONS = ("eps", "x0", "v", "score", "velocity")


def _coefficients(sde, t, ndim):
    """alpha, sigma, alpha', sigma' of the path at t (B,), each shaped (B, 1, ...)."""
    coefficients = (sde.alpha, sde.sigma, sde.d_alpha, sde.d_sigma)
    return tuple(append_dims(c(t), ndim) for c in coefficients)


def _needs_derivatives(parameterization, d_alpha, d_sigma):
    if parameterization == "velocity" and (d_alpha is None or d_sigma is None):
        raise ValueError(
            "the velocity parameterization needs d_alpha and d_sigma (the path's "
            "alpha'(t) and sigma'(t))"
        )


def targets(x0, eps, alpha, sigma, d_alpha=None, d_sigma=None):
    """What each parameterization regresses on, given x_t = alpha x0 + sigma eps.

    Returns a dict: eps, x0, v = (alpha eps - sigma x0) / sqrt(alpha^2 + sigma^2)
    (Salimans & Ho 2022 on a VP path, where the root is 1), score = -eps / sigma, the
    score of q(x_t | x_0) (Vincent 2011), and, when the path's derivatives ``d_alpha``
    and ``d_sigma`` are given, velocity = alpha' x0 + sigma' eps = d x_t / dt (Lipman et
    al. 2023; Liu et al. 2023: eps - x0 on the linear path).
    """
    r = torch.sqrt(alpha**2 + sigma**2)
    out = {
        "eps": eps,
        "x0": x0,
        "v": (alpha * eps - sigma * x0) / r,
        "score": -eps / sigma,
    }
    if d_alpha is not None and d_sigma is not None:
        out["velocity"] = d_alpha * x0 + d_sigma * eps
    return out


def eps_and_x0(output, x_t, alpha, sigma, parameterization, d_alpha=None, d_sigma=None):
    """The (eps, x0) predictions implied by a model ``output`` of a parameterization.

    Inverts x_t = alpha x0 + sigma eps together with the parameterization's own target
    (``targets``): every parameterization is a linear map of (x_t, output). For v, with
    a = alpha / r, s = sigma / r: x0 = a x_t / r - s v, eps = s x_t / r + a v. For the
    velocity u = alpha' x0 + sigma' eps the 2x2 system has determinant
    alpha sigma' - sigma alpha' = -1/2 alpha sigma lam'(t) > 0 (lam falls with t).
    """
    _needs_derivatives(parameterization, d_alpha, d_sigma)
    if parameterization == "eps":
        eps = output
        x0 = (x_t - sigma * eps) / alpha
    elif parameterization == "x0":
        x0 = output
        eps = (x_t - alpha * x0) / sigma
    elif parameterization == "v":
        r = torch.sqrt(alpha**2 + sigma**2)
        a, s = alpha / r, sigma / r  # the point on the unit circle: cos phi, sin phi
        x0 = a * x_t / r - s * output
        eps = s * x_t / r + a * output
    elif parameterization == "velocity":
        det = alpha * d_sigma - sigma * d_alpha
        x0 = (d_sigma * x_t - sigma * output) / det
        eps = (alpha * output - d_alpha * x_t) / det
    else:  # score
        eps = -sigma * output
        x0 = (x_t - sigma * eps) / alpha
    return eps, x0


def dsm_loss(
    model,
    x0,
    sde,
    parameterization="eps",
    t_min=1e-3,
    generator=None,
    *,
    t=None,
    weighting="own",
):
    """Denoising loss E_{t, x0, noise} w(t) ||model(x_t, t) - target||^2: (loss, parts).

    t ~ U(t_min, T) (T = ``sde.T``, 1 when absent), noise ~ N(0, I), x_t = alpha_t x0 +
    sigma_t noise with alpha_t = ``sde.alpha(t)``, sigma_t = ``sde.sigma(t)``; the
    target is the one of ``targets`` for ``parameterization``. This is the ELBO of notes
    section 3 (intro) with its per-time weights replaced by ``weighting``:

    * "own": w = 1, the plain MSE of the parameterization's own target (DDPM's "simple"
      loss for "eps", Ho et al. 2020; Vincent 2011's DSM for "score").
    * "eps": w chosen so that the loss equals the eps-MSE of the implied noise
      prediction, whatever the parameterization (for "score" it is w = sigma_t^2, Song
      et al. 2021).

    The squared error is averaged over the data dimensions, then over the batch.
    ``t`` (B,) fixes the times instead of sampling them. ``parts`` has ``mse_eps`` and
    ``mse_x0``, the errors of the implied noise and clean-data predictions (detached),
    comparable across parameterizations.
    """
    checks.one_of(parameterization, "parameterization", PARAMETERIZATIONS)
    checks.one_of(weighting, "weighting", ("own", "eps"))
    checks.tensor(x0, "x0", batch=True)
    T = float(sde.T)  # 1 for Song et al.'s SDEs, t_max < 1 for the linear path
    if not 0.0 <= t_min < T:
        raise ValueError(f"t_min must be in [0, T={T}), got {t_min!r}")
    batch = x0.shape[0]
    if t is None:
        u = torch.rand(batch, generator=generator, device=x0.device, dtype=x0.dtype)
        t = t_min + (T - t_min) * u  # (B,) in [t_min, T)
    else:
        checks.tensor(t, "t", shape=(batch,))
        checks.times(t, t_max=T)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    alpha, sigma, d_alpha, d_sigma = _coefficients(sde, t, x0.dim())  # each (B, 1, ...)
    x_t = alpha * x0 + sigma * noise  # the fixed encoder q(x_t | x_0)

    output = model(x_t, t)
    if output.shape != x0.shape:
        raise ValueError(
            f"the model returned shape {tuple(output.shape)}, "
            f"expected {tuple(x0.shape)}"
        )
    target = targets(x0, noise, alpha, sigma, d_alpha, d_sigma)[parameterization]
    per_sample = (output - target).pow(2).flatten(1).mean(1)  # (B,)
    if weighting == "eps":
        per_sample = per_sample * eps_weight(
            alpha.flatten(),
            sigma.flatten(),
            parameterization,
            d_alpha.flatten(),
            d_sigma.flatten(),
        )
    loss = per_sample.mean()

    with torch.no_grad():
        eps_hat, x0_hat = eps_and_x0(
            output.detach(), x_t, alpha, sigma, parameterization, d_alpha, d_sigma
        )
        parts = {
            "mse_eps": (eps_hat - noise).pow(2).mean(),
            "mse_x0": (x0_hat - x0).pow(2).mean(),
        }
    return loss, parts


def eps_weight(alpha, sigma, parameterization, d_alpha=None, d_sigma=None):
    """w(t) with eps-MSE = w(t) * (MSE of the parameterization's own target).

    eps: 1; x0: SNR = alpha^2 / sigma^2; score: sigma^2; v: alpha^2 / (alpha^2 +
    sigma^2) = SNR / (1 + SNR) on every path; velocity: (alpha / (alpha sigma' - sigma
    alpha'))^2, which is (1 - t)^2 = 1 / (1 + e^(-lam/2))^2 on the linear path. Chapter
    4 derives the first four with sympy (``symbolic``), chapter 8 the last.
    """
    _needs_derivatives(parameterization, d_alpha, d_sigma)
    if parameterization == "velocity":
        return (alpha / (alpha * d_sigma - sigma * d_alpha)) ** 2
    return {
        "eps": torch.ones_like(alpha),
        "x0": alpha**2 / sigma**2,
        "v": alpha**2 / (alpha**2 + sigma**2),
        "score": sigma**2,
    }[parameterization]


@torch.no_grad()
def prediction_errors(model, x0, sde, t, parameterization="eps", generator=None):
    """The squared error of each of the five predictions implied by one model output.

    Encodes x0 (B, ...) at times t (B,) with fresh noise, runs the model once, maps its
    output to eps, x0, v, score and velocity predictions (``eps_and_x0``, ``targets``)
    and returns {q: mean squared error of the q-prediction}: one error seen through the
    five losses.
    """
    checks.one_of(parameterization, "parameterization", PARAMETERIZATIONS)
    checks.tensor(t, "t", shape=(x0.shape[0],))
    coefficients = _coefficients(sde, t, x0.dim())  # alpha, sigma, d_alpha, d_sigma
    alpha, sigma = coefficients[:2]
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = alpha * x0 + sigma * noise
    output = model(x_t, t)
    eps_hat, x0_hat = eps_and_x0(
        output, x_t, alpha, sigma, parameterization, *coefficients[2:]
    )
    predicted, truth = (
        targets(x0_hat, eps_hat, *coefficients),
        targets(x0, noise, *coefficients),
    )
    return {q: (predicted[q] - truth[q]).pow(2).mean() for q in PARAMETERIZATIONS}


def _device_of(model):
    """The device of a module's weights; None for a plain function (it follows x)."""
    if not isinstance(model, torch.nn.Module):
        return None
    weight = next(model.parameters(), None)
    return None if weight is None else weight.device


def score_fn_from_model(model, sde, parameterization="eps"):
    """score_fn(x, t) ~ grad_x log p_t(x) from a model trained with ``dsm_loss``.

    Tweedie / DSM: the best eps-prediction is -sigma_t times the score, so the score is
    -eps_hat / sigma_t, with eps_hat the noise implied by the model's output
    (``eps_and_x0``). A velocity model gives the score the samplers need in the same
    way, and the probability-flow drift f x - 1/2 g^2 score built from it is that
    velocity again (chapter 8). ``t`` has shape (B,). The returned function has no
    gradient tape.

    A network answers where its weights are: a model trained on the GPU serves a
    sampler whose points live on the CPU (x and t go to the weights' device, the score
    comes back to x's), so a chapter need not move its model off the GPU to sample.
    """
    checks.one_of(parameterization, "parameterization", PARAMETERIZATIONS)
    device = _device_of(model)

    @torch.no_grad()
    def score_fn(x, t):  # per sampler step: the sampler checked its grid
        if device is None or device == x.device:
            output = model(x, t)
        else:
            output = model(x.to(device), t.to(device)).to(x.device)
        if parameterization == "score":
            return output
        alpha, sigma, d_alpha, d_sigma = _coefficients(sde, t, x.dim())
        eps_hat, _ = eps_and_x0(
            output, x, alpha, sigma, parameterization, d_alpha, d_sigma
        )
        return -eps_hat / sigma

    return score_fn
