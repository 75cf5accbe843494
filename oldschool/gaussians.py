"""Diagonal Gaussians: the encoder's q(z|x), the decoder's p(x|z), and their KLs.

Everything here is written per element and then summed over every dimension but
the batch dimension, so the same code serves 2-D latents of an MLP (B, D) and the
(B, C, H, W) latents of the Stable Diffusion autoencoders. Two full-covariance helpers
close the module (``kl_multivariate``, ``fit_gaussian``): the exact posterior of chapter 2's
linear model and a Gaussian fit to a cloud of latents are not diagonal.
"""

import math

import torch

LOG_2PI = math.log(2 * math.pi)


def _sum_but_batch(x):
    return x.flatten(1).sum(1) if x.dim() > 1 else x


def _check_pair(mean, logvar, what="mean/logvar"):
    if not isinstance(mean, torch.Tensor) or not isinstance(logvar, torch.Tensor):
        raise TypeError(
            f"{what} must be tensors, got {type(mean).__name__} and {type(logvar).__name__}"
        )
    if mean.shape != logvar.shape:
        raise ValueError(
            f"{what} shapes differ: {tuple(mean.shape)} vs {tuple(logvar.shape)}"
        )
    if not torch.isfinite(logvar).all():
        raise ValueError(
            "logvar has non-finite entries (inf or nan); clamp it before building the Gaussian"
        )


def gaussian_nll(x, mean, logvar):
    """-log N(x | mean, exp(logvar)) summed over all but the batch dim.

    notes eq. (4)-(5): with a fixed logvar = log sigma^2 this is
    ||x - mean||^2 / (2 sigma^2) + (D/2) log(2 pi sigma^2): squared error plus a constant.
    ``logvar`` may be a tensor shaped like ``x`` or a float (one sigma for every pixel).
    """
    if not isinstance(logvar, torch.Tensor):
        logvar = torch.full_like(mean, float(logvar))
    elif logvar.dim() == 0:
        logvar = logvar.expand_as(mean)
    _check_pair(mean, logvar)
    if x.shape != mean.shape:
        raise ValueError(
            f"x has shape {tuple(x.shape)} but the Gaussian's mean has {tuple(mean.shape)}"
        )
    nll = 0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar))
    return _sum_but_batch(nll)


def kl_standard_normal(mean, logvar):
    """KL( N(mean, exp(logvar)) || N(0, I) ) summed over all but the batch dim.

    notes eq. (9); Kingma & Welling 2014, App. B:
    1/2 sum_i (mu_i^2 + sigma_i^2 - log sigma_i^2 - 1).
    """
    return _sum_but_batch(kl_standard_normal_elementwise(mean, logvar))


def kl_standard_normal_elementwise(mean, logvar):
    """The terms of eq. (9) before the sum: 1/2 (mu^2 + sigma^2 - log sigma^2 - 1), shaped like ``mean``.

    Averaged over a data set, they are the KL each latent coordinate carries: a coordinate
    whose average is ~0 encodes nothing (posterior collapse; Bowman et al. 2016).
    """
    _check_pair(mean, logvar)
    return 0.5 * (mean**2 + torch.exp(logvar) - logvar - 1.0)


def kl_diagonal(mean1, logvar1, mean2, logvar2):
    """KL( N(mean1, exp(logvar1)) || N(mean2, exp(logvar2)) ), diagonal, summed over all but batch.

    1/2 sum_i [ log(s2^2 / s1^2) + (s1^2 + (mu1 - mu2)^2) / s2^2 - 1 ]; with mean2 = 0 and
    logvar2 = 0 it is eq. (9). Used by the diffusion chapters for per-step KLs.
    """
    _check_pair(mean1, logvar1, "mean1/logvar1")
    _check_pair(mean2, logvar2, "mean2/logvar2")
    if mean1.shape != mean2.shape:
        raise ValueError(
            f"the two Gaussians have shapes {tuple(mean1.shape)} and {tuple(mean2.shape)}"
        )
    kl = 0.5 * (
        logvar2
        - logvar1
        + (torch.exp(logvar1) + (mean1 - mean2) ** 2) * torch.exp(-logvar2)
        - 1.0
    )
    return _sum_but_batch(kl)


class DiagonalGaussian:
    """N(mean, diag(exp(logvar))), the encoder's q_phi(z|x) of notes eq. (3).

    ``sample`` uses the reparameterization trick of eq. (6): z = mu + sigma * eps with
    eps ~ N(0, I), so gradients flow to ``mean`` and ``logvar``.
    """

    def __init__(self, mean, logvar):
        _check_pair(mean, logvar)
        self.mean = mean
        self.logvar = logvar

    @property
    def std(self):
        return torch.exp(0.5 * self.logvar)

    @property
    def var(self):
        return torch.exp(self.logvar)

    def sample(self, generator=None):
        """z = mu + sigma * eps, eps ~ N(0, I) (eq. (6)); differentiable in mean and logvar."""
        eps = torch.randn(
            self.mean.shape,
            generator=generator,
            device=self.mean.device,
            dtype=self.mean.dtype,
        )
        return self.mean + self.std * eps

    def mode(self):
        """The most likely z: the mean (what a deterministic encoder would output)."""
        return self.mean

    def kl(self, other=None):
        """KL(self || other), or KL(self || N(0, I)) when ``other`` is None; summed over all but batch."""
        if other is None:
            return kl_standard_normal(self.mean, self.logvar)
        if not isinstance(other, DiagonalGaussian):
            raise TypeError(
                f"other must be a DiagonalGaussian or None, got {type(other).__name__}"
            )
        return kl_diagonal(self.mean, self.logvar, other.mean, other.logvar)

    def nll(self, x):
        """-log N(x | mean, var), summed over all but batch."""
        return gaussian_nll(x, self.mean, self.logvar)

    def log_prob(self, x):
        return -self.nll(x)

    def __repr__(self):
        return f"DiagonalGaussian(shape={tuple(self.mean.shape)}, dtype={self.mean.dtype}, device={self.mean.device})"


# Full-covariance Gaussians: the exact posterior of a linear-Gaussian model (chapter 2) and
# Gaussian fits to a cloud of latents are not diagonal.


def _check_full(mean, cov, what):
    if not isinstance(mean, torch.Tensor) or not isinstance(cov, torch.Tensor):
        raise TypeError(
            f"{what}: mean and cov must be tensors, got {type(mean).__name__} and {type(cov).__name__}"
        )
    if mean.dim() < 1 or cov.shape[-2:] != (mean.shape[-1], mean.shape[-1]):
        raise ValueError(
            f"{what}: cov must be (..., D, D) for a mean of shape (..., D); got {tuple(mean.shape)} and {tuple(cov.shape)}"
        )
    if not (torch.isfinite(mean).all() and torch.isfinite(cov).all()):
        raise ValueError(f"{what}: mean or cov has non-finite entries")


def _cholesky(cov, what):
    chol, info = torch.linalg.cholesky_ex(cov)
    if (info != 0).any():
        raise ValueError(f"{what}: the covariance is not positive definite")
    return chol


def kl_multivariate(mean1, cov1, mean2, cov2):
    """KL( N(mean1, cov1) || N(mean2, cov2) ) for full covariances; means (..., D), covs (..., D, D).

    1/2 [ tr(cov2^-1 cov1) + (mu2 - mu1)^T cov2^-1 (mu2 - mu1) - D + log det cov2 - log det cov1 ].
    With diagonal covariances it is ``kl_diagonal``; with N(0, I) as the second Gaussian, eq. (9).
    Batch dimensions broadcast. Use float64 when the two are close: the result is then a small
    difference of large terms.
    """
    _check_full(mean1, cov1, "first Gaussian")
    _check_full(mean2, cov2, "second Gaussian")
    if mean1.shape[-1] != mean2.shape[-1]:
        raise ValueError(
            f"the two Gaussians have dimensions {mean1.shape[-1]} and {mean2.shape[-1]}"
        )
    dim = mean1.shape[-1]
    batch = torch.broadcast_shapes(
        mean1.shape[:-1], cov1.shape[:-2], mean2.shape[:-1], cov2.shape[:-2]
    )
    chol1 = _cholesky(cov1, "first Gaussian").expand(*batch, dim, dim)  # L1 L1^T = cov1
    chol2 = _cholesky(cov2, "second Gaussian").expand(
        *batch, dim, dim
    )  # L2 L2^T = cov2
    diff = (mean2 - mean1).expand(*batch, dim).unsqueeze(-1)  # (..., D, 1)
    trace = (
        torch.linalg.solve_triangular(chol2, chol1, upper=False).pow(2).sum((-2, -1))
    )  # ||L2^-1 L1||_F^2
    maha = (
        torch.linalg.solve_triangular(chol2, diff, upper=False).pow(2).sum((-2, -1))
    )  # ||L2^-1 diff||^2
    logdet1 = 2 * chol1.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    logdet2 = 2 * chol2.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (trace + maha - dim + logdet2 - logdet1)


def fit_gaussian(z):
    """The maximum-likelihood Gaussian of a cloud of points z (N, D): (mean (D,), cov (D, D)).

    Chapter 2 measures how far an encoder's aggregate posterior is from N(0, I) by the KL of this
    fit (``kl_multivariate``); it sees only the first two moments, so it is a lower bound on what a
    sample test would find, and zero for any cloud with mean 0 and covariance I.
    """
    if not isinstance(z, torch.Tensor) or z.dim() != 2:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"fit_gaussian takes points of shape (N, D), got {shape}")
    if z.shape[0] <= z.shape[1]:
        raise ValueError(
            f"need more points than dimensions to fit a covariance, got {tuple(z.shape)}"
        )
    mean = z.mean(0)  # (D,)
    centred = z - mean  # (N, D)
    return mean, centred.T @ centred / z.shape[0]  # (D,), (D, D)
