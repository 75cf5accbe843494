"""Small networks for diffusion on 2-D data, and the denoising loss that trains them.

* Time embeddings: ``sinusoidal_embedding`` (the DDPM / Transformer one, with the options
  diffusers' ``get_timestep_embedding`` has) and ``GaussianFourierEmbedding`` (random
  Fourier features, Song et al. 2021).
* ``ScoreMLP``: a residual MLP ``(x, t) -> output shaped like x``; what the output means
  (noise, clean data, velocity or score) is the *parameterization*, chosen by the loss.
* ``dsm_loss``: denoising score matching written as a regression on x_t = alpha_t x_0 +
  sigma_t eps, with eps-, x0-, v-, score- or velocity-prediction (notes section 3 intro:
  "MSE on noise or on v"; Ho et al. 2020, Salimans & Ho 2022, Vincent 2011, Lipman et al.
  2023).
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
is the one parameterization tied to a time variable (it changes if t is reparameterized);
it is what flow matching and rectified flow regress on (chapter 8).

Chapter 4 derives these maps and the loss weights between them with sympy
(``oldschool.symbolic``). An ``sde`` here is any ``oldschool.sde.GaussianPath``
(``alpha(t)``, ``sigma(t)``, ``d_alpha(t)``, ``d_sigma(t)``), such as ``VPSDE`` or
``LinearPath``.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .sde import append_dims  # (B,) -> (B, 1, ..., 1)

PARAMETERIZATIONS = ("eps", "x0", "v", "score", "velocity")


def _check_times(t, batch, what="t"):
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"{what} must be a tensor of shape ({batch},), got {type(t).__name__}"
        )
    if t.shape != (batch,):
        raise ValueError(
            f"{what} must have shape ({batch},) (one time per sample), got {tuple(t.shape)}"
        )


def _check_parameterization(parameterization):
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(
            f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}"
        )


# ---------------------------------------------------------------- time embeddings


def sinusoidal_embedding(
    t,
    dim,
    *,
    flip_sin_to_cos=False,
    downscale_freq_shift=1.0,
    scale=1.0,
    max_period=10000.0,
):
    """Sinusoidal embedding of times t (B,) -> (B, dim) (Vaswani et al. 2017; Ho et al. 2020).

    With half = dim // 2 the frequencies are geometric from 1 down towards 1 / max_period,
        omega_i = max_period ** (-i / (half - downscale_freq_shift)),  i = 0 .. half - 1,
    and the embedding is [sin(scale t omega), cos(scale t omega)] ([cos, sin] with
    ``flip_sin_to_cos``), zero-padded by one column when ``dim`` is odd. The options mean
    what they mean in diffusers' ``get_timestep_embedding`` (downscale_freq_shift=1 is the
    DDPM/original; SD's U-Net uses flip_sin_to_cos=True, downscale_freq_shift=0).
    ``scale`` multiplies t: continuous t in [0, 1] with scale=1000 looks like DDPM's steps.
    """
    if not isinstance(t, torch.Tensor) or t.dim() != 1:
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"t must be a 1-D tensor of times (B,), got {shape}")
    if not isinstance(dim, int) or dim < 2:
        raise ValueError(f"dim must be an int >= 2, got {dim!r}")
    half = dim // 2
    if half - downscale_freq_shift <= 0:
        raise ValueError(
            f"dim={dim} with downscale_freq_shift={downscale_freq_shift} leaves no frequency range"
        )
    dtype = t.dtype if t.is_floating_point() else torch.float32
    i = torch.arange(half, device=t.device, dtype=torch.float32)
    omega = torch.exp(
        -math.log(max_period) * i / (half - downscale_freq_shift)
    )  # (half,)
    angle = scale * (t.float()[:, None] * omega[None, :])  # (B, half)
    sin, cos = torch.sin(angle), torch.cos(angle)
    embedding = torch.cat(
        [cos, sin] if flip_sin_to_cos else [sin, cos], dim=-1
    )  # (B, 2 half)
    if dim % 2 == 1:
        embedding = F.pad(embedding, (0, 1))  # (B, dim)
    return embedding.to(dtype)


class SinusoidalEmbedding(nn.Module):
    """``sinusoidal_embedding`` as a module (no parameters), keeping its options."""

    def __init__(
        self,
        dim,
        *,
        flip_sin_to_cos=False,
        downscale_freq_shift=1.0,
        scale=1.0,
        max_period=10000.0,
    ):
        super().__init__()
        self.dim = dim
        self.options = dict(
            flip_sin_to_cos=flip_sin_to_cos,
            downscale_freq_shift=downscale_freq_shift,
            scale=scale,
            max_period=max_period,
        )

    def forward(self, t):
        return sinusoidal_embedding(t, self.dim, **self.options)


class GaussianFourierEmbedding(nn.Module):
    """Random Fourier features of t: [sin(2 pi t w), cos(2 pi t w)], w ~ N(0, scale^2), fixed.

    Song et al. 2021 (score_sde's ``GaussianFourierProjection``; Tancik et al. 2020). The
    frequencies w are a buffer, drawn once (from ``generator`` when given), never trained.
    """

    def __init__(self, dim, scale=16.0, generator=None):
        super().__init__()
        if not isinstance(dim, int) or dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even int >= 2, got {dim!r}")
        self.register_buffer(
            "w", scale * torch.randn(dim // 2, generator=generator)
        )  # (dim/2,)

    def forward(self, t):
        if not isinstance(t, torch.Tensor) or t.dim() != 1:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"t must be a 1-D tensor of times (B,), got {shape}")
        angle = (
            2 * math.pi * t[:, None].to(self.w.dtype) * self.w[None, :]
        )  # (B, dim/2)
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)  # (B, dim)


# ---------------------------------------------------------------- the network


class TimestepEmbedder(nn.Module):
    """t -> a fixed embedding -> Linear, SiLU, Linear: the learned time features (as in DiT)."""

    def __init__(self, embedding, embed_dim, hidden):
        super().__init__()
        self.embedding = embedding  # a module t (B,) -> (B, embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )

    def forward(self, t):
        return self.mlp(self.embedding(t))  # (B, hidden)


class ResidualBlock(nn.Module):
    """h + MLP(h, t): LayerNorm, SiLU, Linear; add the time features; SiLU, Linear."""

    def __init__(self, hidden):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h, t_features):
        r = self.fc1(F.silu(self.norm(h))) + t_features  # (B, hidden)
        return h + self.fc2(F.silu(r))  # (B, hidden)


class ScoreMLP(nn.Module):
    """A residual MLP ``(x, t) -> output`` with the shape of x (B, dim), for 2-D toy data.

    The output is a noise, clean-data, velocity or score prediction depending on which
    ``dsm_loss`` parameterization trains it. t is continuous (B,), embedded with a
    sinusoidal embedding of 1000 t (DDPM's step index when t is in [0, 1]) unless
    ``time_embedding`` (a module t -> (B, embed_dim), e.g. ``GaussianFourierEmbedding``)
    is given. The last layer starts at zero, so an untrained model predicts 0 (DiT's init).
    """

    def __init__(self, dim=2, hidden=128, layers=3, embed_dim=64, time_embedding=None):
        super().__init__()
        for name, value in (
            ("dim", dim),
            ("hidden", hidden),
            ("layers", layers),
            ("embed_dim", embed_dim),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.dim = dim
        if time_embedding is None:
            time_embedding = SinusoidalEmbedding(embed_dim, scale=1000.0)
        self.time = TimestepEmbedder(time_embedding, embed_dim, hidden)
        self.x_in = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(ResidualBlock(hidden) for _ in range(layers))
        self.norm_out = nn.LayerNorm(hidden)
        self.x_out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.x_out.weight)  # the untrained model outputs exactly 0
        nn.init.zeros_(self.x_out.bias)

    def forward(self, x, t):
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, {self.dim}), got {shape}")
        _check_times(t, x.shape[0])
        t_features = self.time(t)  # (B, hidden)
        h = self.x_in(x)  # (B, hidden)
        for block in self.blocks:
            h = block(h, t_features)
        return self.x_out(F.silu(self.norm_out(h)))  # (B, dim)


# ---------------------------------------------------------------- parameterizations


def _coefficients(sde, t, ndim):
    """alpha, sigma, alpha', sigma' of the path at times t (B,), each shaped (B, 1, ...)."""
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

    Returns a dict: eps, x0, v = (alpha eps - sigma x0) / sqrt(alpha^2 + sigma^2) (Salimans
    & Ho 2022 on a VP path, where the root is 1), score = -eps / sigma, the score of
    q(x_t | x_0) (Vincent 2011), and, when the path's derivatives ``d_alpha`` and ``d_sigma``
    are given, velocity = alpha' x0 + sigma' eps = d x_t / dt (Lipman et al. 2023;
    Liu et al. 2023: eps - x0 on the linear path).
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
    """The (eps, x0) predictions implied by a model ``output`` of the given parameterization.

    Inverts x_t = alpha x0 + sigma eps together with the parameterization's own target
    (``targets``): every parameterization is a linear map of (x_t, output). For v, with
    a = alpha / r, s = sigma / r: x0 = a x_t / r - s v, eps = s x_t / r + a v. For the
    velocity u = alpha' x0 + sigma' eps the 2x2 system has determinant
    alpha sigma' - sigma alpha' = -1/2 alpha sigma lam'(t) > 0 (lam falls with t).
    """
    _check_parameterization(parameterization)
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
    """Denoising loss: E_{t, x0, noise} w(t) || model(x_t, t) - target ||^2, as (loss, parts).

    t ~ U(t_min, T) (T = ``sde.T``, 1 when absent), noise ~ N(0, I), x_t = alpha_t x0 + sigma_t noise
    with alpha_t = ``sde.alpha(t)``, sigma_t = ``sde.sigma(t)``; the target is the one of
    ``targets`` for ``parameterization``. This is the ELBO of notes section 3 (intro) with
    its per-time weights replaced by ``weighting``:

    * "own": w = 1, the plain MSE of the parameterization's own target (DDPM's "simple"
      loss for "eps", Ho et al. 2020; Vincent 2011's DSM for "score").
    * "eps": w chosen so that the loss equals the eps-MSE of the implied noise prediction,
      whatever the parameterization (for "score" it is w = sigma_t^2, Song et al. 2021).

    The squared error is averaged over the data dimensions, then over the batch.
    ``t`` (B,) fixes the times instead of sampling them. ``parts`` has ``mse_eps`` and
    ``mse_x0``, the errors of the implied noise and clean-data predictions (detached),
    comparable across parameterizations.
    """
    _check_parameterization(parameterization)
    if weighting not in ("own", "eps"):
        raise ValueError(f"weighting must be 'own' or 'eps', got {weighting!r}")
    if not isinstance(x0, torch.Tensor) or x0.dim() < 2:
        shape = tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
        raise ValueError(f"x0 must be a batch of data (B, ...), got {shape}")
    T = float(sde.T)  # 1 for Song et al.'s SDEs, t_max < 1 for the linear path
    if not 0.0 <= t_min < T:
        raise ValueError(f"t_min must be in [0, T={T}), got {t_min!r}")
    batch = x0.shape[0]
    if t is None:
        u = torch.rand(batch, generator=generator, device=x0.device, dtype=x0.dtype)
        t = t_min + (T - t_min) * u  # (B,) in [t_min, T)
    else:
        _check_times(t, batch)
        if (t < 0).any() or (t > T).any():
            raise ValueError(
                f"t must lie in [0, T={T}], got values in [{float(t.min()):.3g}, {float(t.max()):.3g}]"
            )
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    alpha, sigma, d_alpha, d_sigma = _coefficients(sde, t, x0.dim())  # each (B, 1, ...)
    x_t = alpha * x0 + sigma * noise  # the fixed encoder q(x_t | x_0)

    output = model(x_t, t)
    if output.shape != x0.shape:
        raise ValueError(
            f"the model returned shape {tuple(output.shape)}, expected {tuple(x0.shape)}"
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
    """w(t) with  eps-MSE = w(t) * (MSE of ``parameterization``'s own target), elementwise.

    eps: 1; x0: SNR = alpha^2 / sigma^2; score: sigma^2; v: alpha^2 / (alpha^2 + sigma^2)
    = SNR / (1 + SNR) on every path; velocity: (alpha / (alpha sigma' - sigma alpha'))^2,
    which is (1 - t)^2 = 1 / (1 + e^(-lam/2))^2 on the linear path. Chapter 4 derives the
    first four with sympy (``symbolic``), chapter 8 the last.
    """
    _check_parameterization(parameterization)
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
    _check_parameterization(parameterization)
    _check_times(t, x0.shape[0])
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


def score_fn_from_model(model, sde, parameterization="eps"):
    """score_fn(x, t) ~ grad_x log p_t(x) from a model trained with ``dsm_loss``.

    Tweedie / DSM: the best eps-prediction is -sigma_t times the score, so the score is
    -eps_hat / sigma_t, with eps_hat the noise implied by the model's output (``eps_and_x0``).
    A velocity model gives the score the samplers need in the same way, and the
    probability-flow drift f x - 1/2 g^2 score built from it is that velocity again
    (chapter 8). ``t`` has shape (B,). The returned function has no gradient tape.
    """
    _check_parameterization(parameterization)

    @torch.no_grad()
    def score_fn(x, t):
        _check_times(t, x.shape[0])
        output = model(x, t)
        if parameterization == "score":
            return output
        alpha, sigma, d_alpha, d_sigma = _coefficients(sde, t, x.dim())
        eps_hat, _ = eps_and_x0(
            output, x, alpha, sigma, parameterization, d_alpha, d_sigma
        )
        return -eps_hat / sigma

    return score_fn
