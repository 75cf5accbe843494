"""Forward SDEs of diffusion models, their marginals, and the reverse-time processes.

notes 3.1, eqs (14)-(18); Song et al. 2021 (score-based generative modeling through
SDEs).

Every forward SDE here is linear, dx = -1/2 beta(t) x dt + g(t) dW (eq. (14)), so the
marginal given a data point x0 is a Gaussian

    x_t = alpha(t) x0 + sigma(t) eps,        eps ~ N(0, I),

a ``GaussianPath`` with ``alpha(t)`` and ``sigma(t)`` and log-SNR ``lam(t)``; the linear
path of rectified flow (``LinearPath``, chapter 8) is one more. Chapter 5
derives alpha and sigma from the moment ODEs d alpha/dt = f alpha and
d(sigma^2)/dt = 2 f sigma^2 + g^2 (``oldschool.symbolic``).

Shapes: ``x`` is (B, ...) (2-D points (B, D) or images (B, C, H, W)); ``t`` is a float
or a tensor of shape (B,). Coefficients that multiply ``x`` come back broadcast as
(B, 1, ..., 1) by ``append_dims``, so the same code serves points and images. Times lie
in [0, T]: ``marginal`` and ``perturb`` check theirs once (the door); the coefficients
(``alpha``, ``sigma``, ``lam``, ``f``, ``g2``, ...) take t (a float or a tensor) and
trust their caller, as the samplers check their time grid once at entry.
"""

import math

import torch
import torch.nn.functional as F

from . import checks


def append_dims(v, ndim):
    """Append singleton dims to ``v`` (shape (B,) or ()) until it has ``ndim`` dims."""
    if v.dim() > ndim:
        raise ValueError(f"cannot broadcast a {v.dim()}-dim tensor to {ndim} dims")
    return v.reshape(v.shape + (1,) * (ndim - v.dim()))


def _time(t):
    """A float time as a float64 tensor, a tensor as it is (no check: callers did)."""
    return (
        t
        if isinstance(t, torch.Tensor)
        else torch.tensor(float(t), dtype=torch.float64)
    )


class GaussianPath:
    """A Gaussian path x_t = alpha(t) x0 + sigma(t) eps, eps ~ N(0, I), on t in [0, T].

    Every forward process in this book is one (VP, sub-VP, VE here; the linear path of
    rectified flow in chapter 8). A subclass gives ``alpha(t)``, ``sigma(t)`` and the
    equivalent linear SDE dx = f(t) x dt + g(t) dW (notes eq. (14)) through ``f(t)`` and
    ``g2(t)`` = g(t)^2; the rest follows:

        f = d log alpha / dt,          g^2 = d sigma^2 / dt - 2 f sigma^2,
        alpha' = f alpha,              sigma' = (g^2 + 2 f sigma^2) / (2 sigma),
        lam = log(alpha^2 / sigma^2)   (the log-SNR; Kingma et al. 2021).

    The first line is the moment ODE of chapter 5 read backwards: the SDE whose marginal
    given x0 has mean alpha x0 and variance sigma^2 (``oldschool.symbolic``).
    """

    T = 1.0  # every path here runs on t in [0, 1], as in Song et al. 2021
    prior_std = 1.0

    # alpha(t), sigma(t), f(t) and g2(t) come from the subclass.

    def g(self, t):
        """The diffusion coefficient g(t) of the equivalent SDE."""
        return torch.sqrt(self.g2(t))

    def d_alpha(self, t):
        """d alpha / dt = f alpha."""
        return self.f(t) * self.alpha(t)

    def d_sigma(self, t):
        """d sigma / dt = (g^2 + 2 f sigma^2) / (2 sigma)."""
        sigma = self.sigma(t)
        return (self.g2(t) + 2 * self.f(t) * sigma**2) / (2 * sigma)

    def lam(self, t):
        """The log-SNR lambda(t) = log(alpha^2 / sigma^2), falling; +inf at t = 0."""
        return 2 * (torch.log(self.alpha(t)) - torch.log(self.sigma(t)))

    def snr(self, t):
        """Signal-to-noise ratio alpha(t)^2 / sigma(t)^2 (infinite at t = 0)."""
        return self.alpha(t) ** 2 / self.sigma(t) ** 2

    def sde(self, x, t):
        """Drift f(t) x and diffusion g(t) of the forward SDE, eq. (14).

        Returns (drift shaped like x, diffusion shaped (B, 1, ..., 1) or ()).
        """
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)  # no check: per step
        drift = append_dims(self.f(t), x.dim()) * x  # (B, ...)
        return drift, append_dims(self.g(t), x.dim())

    def marginal(self, x0, t):
        """Mean alpha(t) x0 and std sigma(t) of p_t(x | x0); std shaped (B, 1, ..., 1).

        ``t``: a float or a tensor () or (B,) in [0, T], checked here (the door).
        """
        t = checks.times(t, t_max=self.T, like=x0)
        mean = append_dims(self.alpha(t), x0.dim()) * x0
        return mean, append_dims(self.sigma(t), x0.dim())

    def perturb(self, x0, t, generator=None):
        """A draw x_t = alpha(t) x0 + sigma(t) eps of the marginal: (x_t, eps)."""
        mean, sigma = self.marginal(x0, t)
        eps = torch.randn(
            x0.shape, generator=generator, device=x0.device, dtype=x0.dtype
        )
        return mean + sigma * eps, eps

    def prior_sample(self, shape, generator=None, device=None, dtype=torch.float32):
        """Samples of the prior p_T = N(0, prior_std^2 I), where a sampler starts."""
        return self.prior_std * torch.randn(
            shape, generator=generator, device=device, dtype=dtype
        )

    def prior_log_prob(self, z):
        """log N(z | 0, prior_std^2 I), summed over all but the batch dim."""
        d = z[0].numel()
        sq = (z / self.prior_std).flatten(1).pow(2).sum(1)
        return (
            -0.5 * sq - d * math.log(self.prior_std) - 0.5 * d * math.log(2 * math.pi)
        )

    def reverse(self, score_fn, probability_flow=False):
        """Reverse SDE (eq. (17)); with ``probability_flow``, the ODE (eq. (18))."""
        return ReverseSDE(self, score_fn, probability_flow)


def _t_of_log_alpha(log_alpha, beta_min, beta_max):
    """Invert log alpha = -t beta_min / 2 - t^2 (beta_max - beta_min) / 4 for t >= 0."""
    a, b = 0.25 * (beta_max - beta_min), 0.5 * beta_min  # a t^2 + b t + log_alpha = 0
    if a == 0:
        return -log_alpha / b
    return 2 * -log_alpha / (b + torch.sqrt(b * b - 4 * a * log_alpha))  # stable root


class VPSDE(GaussianPath):
    """Variance preserving SDE, eq. (15): dx = -1/2 beta(t) x dt + sqrt(beta(t)) dW.

    beta(t) = beta_min + t (beta_max - beta_min) on t in [0, 1] (Song et al. 2021; the
    continuous limit of DDPM's linear schedule). alpha(t) = exp(-1/2 int_0^t beta),
    sigma(t)^2 = 1 - alpha(t)^2, so a unit-variance x0 keeps unit variance.
    """

    def __init__(self, beta_min=0.1, beta_max=20.0):
        if not 0 <= beta_min < beta_max:
            raise ValueError(
                f"need 0 <= beta_min < beta_max, got {beta_min}, {beta_max}"
            )
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, t):
        return self.beta_min + _time(t) * (self.beta_max - self.beta_min)

    def f(self, t):
        return -0.5 * self.beta(t)

    def g2(self, t):
        return self.beta(t)

    def log_alpha(self, t):
        """log alpha(t) = -1/2 int_0^t beta
        = -t beta_min / 2 - t^2 (beta_max - beta_min) / 4."""
        t = _time(t)
        return -0.5 * t * self.beta_min - 0.25 * t**2 * (self.beta_max - self.beta_min)

    def alpha(self, t):
        return torch.exp(self.log_alpha(t))

    def sigma(self, t):
        return torch.sqrt(
            -torch.expm1(2 * self.log_alpha(t))
        )  # sqrt(1 - alpha^2), exact near 0

    def lam(self, t):
        log_alpha = self.log_alpha(t)
        return 2 * log_alpha - torch.log(-torch.expm1(2 * log_alpha))

    def t_of_lam(self, lam):
        """The time of log-SNR ``lam``: alpha^2 = sigmoid(lam); invert log alpha."""
        return _t_of_log_alpha(0.5 * F.logsigmoid(lam), self.beta_min, self.beta_max)


class SubVPSDE(VPSDE):
    """Sub-VP SDE (Song et al. 2021, eq. (29)): VP drift, g = sqrt(beta (1 - alpha^4)).

    Its sigma(t) = 1 - alpha(t)^2 lies below the VP's sqrt(1 - alpha^2) at every t
    (hence "sub").
    """

    def g2(self, t):
        return self.beta(t) * -torch.expm1(4 * self.log_alpha(t))  # beta (1 - alpha^4)

    def sigma(self, t):
        return -torch.expm1(2 * self.log_alpha(t))  # 1 - alpha^2

    def lam(self, t):
        return 2 * (self.log_alpha(t) - torch.log(self.sigma(t)))

    def t_of_lam(self, lam):
        """alpha / (1 - alpha^2) = exp(lam / 2) =: r, so
        alpha = 2 r / (1 + sqrt(1 + 4 r^2)).
        """
        r = torch.exp(0.5 * lam)
        alpha = 2 * r / (1 + torch.sqrt(1 + 4 * r * r))
        return _t_of_log_alpha(torch.log(alpha), self.beta_min, self.beta_max)


class VESDE(GaussianPath):
    """Variance exploding SDE, eq. (16): dx = sqrt(d s^2 / dt) dW, no drift.

    The noise scale s(t) = sigma_min (sigma_max / sigma_min)^t (Song et al. 2021's
    sigma(t); ``noise_scale`` here), so g(t)^2 = 2 s(t)^2 log(sigma_max / sigma_min).
    Started at a data point at t = 0, the variance grows by int_0^t g^2 = s(t)^2 -
    sigma_min^2: that is sigma(t)^2. (score_sde uses s(t) itself, i.e. it treats the
    data as already blurred by sigma_min; the difference is sigma_min^2 = 1e-4.) The
    prior is N(0, sigma_max^2 I).
    """

    def __init__(self, sigma_min=0.01, sigma_max=50.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(
                f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}"
            )
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.prior_std = self.sigma_max

    def noise_scale(self, t):
        """The noise scale s(t) = sigma_min (sigma_max / sigma_min)^t of eq. (16)."""
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** _time(t)

    def f(self, t):
        return torch.zeros_like(_time(t))  # no drift

    def g2(self, t):
        return self.noise_scale(t) ** 2 * (
            2 * math.log(self.sigma_max / self.sigma_min)
        )

    def alpha(self, t):
        return torch.ones_like(_time(t))

    def sigma(self, t):
        return torch.sqrt(self.noise_scale(t) ** 2 - self.sigma_min**2)

    def t_of_lam(self, lam):
        """sigma^2 = exp(-lam), so s = sqrt(exp(-lam) + sigma_min^2); invert s(t)."""
        s = torch.sqrt(torch.exp(-lam) + self.sigma_min**2)
        return torch.log(s / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)


class LinearPath(GaussianPath):
    """The linear path of rectified flow and flow matching: alpha = 1 - t, sigma = t.

    x_t = (1 - t) x0 + t eps walks on a straight line from a data point (t = 0) to a
    noise vector (t = 1) at constant velocity eps - x0 (Liu et al. 2023; Lipman et al.
    2023's "conditional OT" path with sigma_min = 0; the path SD3 and FLUX train, Esser
    et al. 2024). Its equivalent linear SDE (chapter 5's moment ODEs read backwards) is

        f(t) = alpha'/alpha = -1 / (1 - t),   g(t)^2 = 2 t / (1 - t),

    and both blow up at t = 1, where alpha = 0. The book therefore ends the path at T =
    ``t_max`` (default 0.999) as it ends sampling at t_min near 0: the sampler starts
    from N(0, I) in place of x_T = 0.001 x0 + 0.999 eps, a smaller mismatch than the VP
    SDE's alpha(1) = 0.0066. ``d_alpha`` and ``d_sigma`` are the exact -1 and 1.
    """

    def __init__(self, t_max=0.999):
        if not 0.5 < t_max < 1.0:
            raise ValueError(
                f"t_max must lie in (0.5, 1) (f = -1/(1 - t) is infinite at 1), "
                f"got {t_max!r}"
            )
        self.T = float(t_max)

    def alpha(self, t):
        return 1.0 - _time(t)

    def sigma(self, t):
        return _time(t).clone()

    def d_alpha(self, t):
        return -torch.ones_like(_time(t))

    def d_sigma(self, t):
        return torch.ones_like(_time(t))

    def f(self, t):
        return -1.0 / (1.0 - _time(t))

    def g2(self, t):
        t = _time(t)
        return 2.0 * t / (1.0 - t)

    def lam(self, t):
        t = _time(t)
        return 2 * (torch.log1p(-t) - torch.log(t))

    def t_of_lam(self, lam):
        """alpha / sigma = (1 - t) / t = exp(lam / 2), so t = sigmoid(-lam / 2)."""
        return torch.sigmoid(-0.5 * lam)


def ddpm_betas(
    beta_start=0.00085, beta_end=0.012, num_steps=1000, kind="scaled_linear"
):
    """The discrete betas of a DDPM schedule, float64, shape (num_steps,).

    "linear": DDPM's linspace(beta_start, beta_end) (Ho et al. 2020 used 1e-4 to 0.02).
    "scaled_linear": linspace(sqrt(beta_start), sqrt(beta_end))^2, the schedule of
    Stable Diffusion 1.x and SDXL with their defaults 0.00085 and 0.012.
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(
            f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}"
        )
    if kind == "linear":
        return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    if kind == "scaled_linear":
        return (
            torch.linspace(
                beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64
            )
            ** 2
        )
    raise ValueError(f"unknown schedule kind {kind!r}; use 'linear' or 'scaled_linear'")


class DiscreteVP(GaussianPath):
    """A discrete DDPM schedule seen as a VP SDE on t in [0, 1].

    Step n = 1..N sits at t_n = n / N and has alpha_bar_n = prod_{k<=n} (1 - beta_k)
    (diffusers' ``alphas_cumprod[n - 1]``; timestep index n - 1). Between grid points
    log alpha_bar is linear in t, which makes beta(t) = -d log alpha_bar / dt piecewise
    constant, = -N log(1 - beta_n) ~ N beta_n: a VP SDE whose marginals hit the discrete
    ones exactly at every t_n. So every sampler in ``oldschool.samplers`` runs on it.
    """

    def __init__(self, betas):
        if not isinstance(betas, torch.Tensor) or betas.dim() != 1 or len(betas) < 1:
            raise ValueError("betas must be a 1-D tensor of length >= 1")
        if not ((betas > 0) & (betas < 1)).all():
            raise ValueError("every beta must lie in (0, 1)")
        self.betas = betas.to(torch.float64)
        self.num_steps = len(betas)
        self.alpha_bar = torch.cumprod(1 - self.betas, 0)  # (N,)
        zero = self.betas.new_zeros(1)
        self._log_alpha_bar = torch.cat(
            [zero, torch.log(self.alpha_bar)]
        )  # (N + 1,) at t = 0, 1/N, ..., 1

    @classmethod
    def stable_diffusion(cls):
        """The SD 1.x / SDXL schedule: scaled_linear, 0.00085 to 0.012, 1000 steps."""
        return cls(ddpm_betas(0.00085, 0.012, 1000, "scaled_linear"))

    def t_of_index(self, n):
        """Time t_n = n / N of step n (1-based as DDPM; diffusers' timestep n - 1)."""
        return n / self.num_steps

    def _segment(self, t):
        t = _time(t)
        u = t.double() * self.num_steps
        n = u.floor().clamp(max=self.num_steps - 1).long()  # segment [t_n, t_{n+1}]
        return t, n, u - n

    def log_alpha(self, t):
        t, n, frac = self._segment(t)
        table = self._log_alpha_bar.to(t.device)
        log_alpha_bar = table[n] + frac * (table[n + 1] - table[n])
        return (0.5 * log_alpha_bar).to(t.dtype)

    def beta(self, t):
        t, n, _ = self._segment(t)
        table = self._log_alpha_bar.to(t.device)
        return (-(table[n + 1] - table[n]) * self.num_steps).to(t.dtype)

    def f(self, t):
        return -0.5 * self.beta(t)

    def g2(self, t):
        return self.beta(t)

    def alpha(self, t):
        return torch.exp(self.log_alpha(t))

    def sigma(self, t):
        return torch.sqrt(-torch.expm1(2 * self.log_alpha(t)))

    def lam(self, t):
        log_alpha = self.log_alpha(t)
        return 2 * log_alpha - torch.log(-torch.expm1(2 * log_alpha))

    def t_of_lam(self, lam):
        """Invert the piecewise-linear log alpha_bar = log sigmoid(lam)."""
        target = F.logsigmoid(lam.double())  # log alpha_bar, decreasing in t
        table = self._log_alpha_bar.to(lam.device)  # (N + 1,), decreasing
        n = torch.searchsorted(-table, -target).clamp(
            1, self.num_steps
        )  # table[n-1] >= target > table[n]
        frac = (target - table[n - 1]) / (table[n] - table[n - 1])
        return ((n - 1 + frac) / self.num_steps).to(lam.dtype)


class ReverseSDE:
    """The reverse-time process of a forward SDE given a score (eqs. (17), (18)).

    dx = [f(x, t) - g(t)^2 score(x, t)] dt + g(t) dW_bar    (eq. (17); t runs T -> 0)
    dx = [f(x, t) - 1/2 g(t)^2 score(x, t)] dt               (eq. (18), the ODE)

    ``score_fn(x, t)`` takes t of shape (B,) and returns a tensor shaped like x.
    """

    def __init__(self, forward, score_fn, probability_flow=False):
        if not callable(score_fn):
            raise TypeError("score_fn must be callable as score_fn(x, t)")
        self.forward, self.score_fn, self.probability_flow = (
            forward,
            score_fn,
            probability_flow,
        )
        self.T = forward.T

    def sde(self, x, t):
        """(drift, diffusion) of the reverse at (x, t); 0 diffusion for the ODE."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)  # no check: per step
        t = t.expand(x.shape[0]) if t.dim() == 0 else t  # score_fn gets t of shape (B,)
        drift, diffusion = self.forward.sde(x, t)
        score = self.score_fn(x, t)
        if score.shape != x.shape:
            raise ValueError(
                f"score_fn returned shape {tuple(score.shape)} "
                f"for x of shape {tuple(x.shape)}"
            )
        weight = 0.5 if self.probability_flow else 1.0
        drift = drift - weight * diffusion**2 * score
        return drift, torch.zeros_like(
            diffusion
        ) if self.probability_flow else diffusion
