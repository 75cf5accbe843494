"""Diagonal Gaussians: the encoder's q(z|x), the decoder's p(x|z), and their KLs.

Everything here is written per element and then summed over every dimension but
the batch dimension, so the same code serves 2-D latents of an MLP (B, D) and the
(B, C, H, W) latents of the Stable Diffusion autoencoders. Two full-covariance helpers
close the module (``kl_multivariate``, ``fit_gaussian``): the exact posterior of
chapter 2's linear model and a Gaussian fit to a cloud of latents are not diagonal.

The functions a chapter calls check their input once (``checks``); a log-variance must
be finite, so clamp it before building a Gaussian.
"""

import math

import torch

from . import checks

LOG_2PI = math.log(2 * math.pi)


def _sum_but_batch(x):
    return x.flatten(1).sum(1) if x.dim() > 1 else x


def gaussian_nll(x, mean, logvar):
    """-log N(x | mean, exp(logvar)) summed over all but the batch dim.

    notes eq. (4)-(5): with a fixed logvar = log sigma^2 this is
    ||x - mean||^2 / (2 sigma^2) + (D/2) log(2 pi sigma^2): squared error plus a
    constant.
    ``logvar`` may be a tensor shaped like ``x`` or a float (one sigma for every pixel).
    """
    if not isinstance(logvar, torch.Tensor):
        logvar = torch.full_like(mean, float(logvar))
    elif logvar.dim() == 0:
        logvar = logvar.expand_as(mean)
    checks.tensor(logvar, "logvar", shape=tuple(mean.shape))
    if x.shape != mean.shape:
        raise ValueError(
            f"x has shape {tuple(x.shape)} but the Gaussian's mean has "
            f"{tuple(mean.shape)}"
        )
    nll = 0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar))
    return _sum_but_batch(nll)


def kl_standard_normal(mean, logvar):
    """KL( N(mean, exp(logvar)) || N(0, I) ) summed over all but the batch dim.

    notes eq. (9); Kingma & Welling 2014, App. B:
    1/2 sum_i (mu_i^2 + sigma_i^2 - log sigma_i^2 - 1).
    """
    checks.tensor(mean, "mean")
    checks.tensor(logvar, "logvar", shape=tuple(mean.shape), finite=True)
    return _sum_but_batch(kl_standard_normal_elementwise(mean, logvar))


def kl_standard_normal_elementwise(mean, logvar):
    """The terms of eq. (9) before the sum, shaped like ``mean``:
    1/2 (mu^2 + sigma^2 - log sigma^2 - 1).

    Averaged over a data set, they are the KL each latent coordinate carries: a
    coordinate whose average is ~0 encodes nothing (posterior collapse; Bowman et al.
    2016).
    """
    return 0.5 * (mean**2 + torch.exp(logvar) - logvar - 1.0)


def kl_diagonal(mean1, logvar1, mean2, logvar2):
    """KL( N(mean1, exp(logvar1)) || N(mean2, exp(logvar2)) ) of diagonal Gaussians,
    summed over all but the batch dim.

    1/2 sum_i [ log(s2^2 / s1^2) + (s1^2 + (mu1 - mu2)^2) / s2^2 - 1 ]; with mean2 = 0
    and logvar2 = 0 it is eq. (9). Used by the diffusion chapters for per-step KLs.
    """
    shape = tuple(checks.tensor(mean1, "mean1").shape)
    if tuple(checks.tensor(mean2, "mean2").shape) != shape:
        raise ValueError(
            f"the two Gaussians have shapes {shape} and {tuple(mean2.shape)}"
        )
    checks.tensor(logvar1, "logvar1", shape=shape, finite=True)
    checks.tensor(logvar2, "logvar2", shape=shape, finite=True)
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
        checks.tensor(mean, "mean")
        checks.tensor(logvar, "logvar", shape=tuple(mean.shape), finite=True)
        self.mean = mean
        self.logvar = logvar

    @property
    def std(self):
        return torch.exp(0.5 * self.logvar)

    @property
    def var(self):
        return torch.exp(self.logvar)

    def sample(self, generator=None):
        """z = mu + sigma * eps, eps ~ N(0, I) (eq. (6)); differentiable in both."""
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
        """KL(self || other), or KL(self || N(0, I)) when ``other`` is None.

        Summed over all but the batch dim; both Gaussians were checked when built.
        """
        if other is None:
            return _sum_but_batch(
                kl_standard_normal_elementwise(self.mean, self.logvar)
            )
        checks.instance(other, "other", DiagonalGaussian, "a DiagonalGaussian or None")
        return kl_diagonal(self.mean, self.logvar, other.mean, other.logvar)

    def nll(self, x):
        """-log N(x | mean, var), summed over all but batch."""
        return gaussian_nll(x, self.mean, self.logvar)

    def log_prob(self, x):
        return -self.nll(x)

    def __repr__(self):
        mean = self.mean
        return (
            f"DiagonalGaussian(shape={tuple(mean.shape)}, dtype={mean.dtype}, "
            f"device={mean.device})"
        )


# Full-covariance Gaussians: the exact posterior of a linear-Gaussian model (chapter 2)
# and Gaussian fits to a cloud of latents are not diagonal.


def _cholesky(cov, what):
    chol, info = torch.linalg.cholesky_ex(cov)
    if (info != 0).any():
        raise ValueError(f"{what}: the covariance is not positive definite")
    return chol


def kl_multivariate(mean1, cov1, mean2, cov2):
    """KL( N(mean1, cov1) || N(mean2, cov2) ) for full covariances.

    Means (..., D), covariances (..., D, D); batch dimensions broadcast.
    1/2 [ tr(cov2^-1 cov1) + (mu2 - mu1)^T cov2^-1 (mu2 - mu1) - D
          + log det cov2 - log det cov1 ].
    With diagonal covariances it is ``kl_diagonal``; with N(0, I) as the second
    Gaussian, eq. (9). Use float64 when the two are close: the result is then a small
    difference of large terms.
    """
    for n, mean, cov in (("1", mean1, cov1), ("2", mean2, cov2)):
        checks.tensor(mean, f"mean{n}", finite=True)
        checks.tensor(cov, f"cov{n}", finite=True)
        dim = mean.shape[-1] if mean.dim() else 0
        if mean.dim() < 1 or cov.shape[-2:] != (dim, dim):
            raise ValueError(
                f"cov{n} must be (..., D, D) for mean{n} of shape (..., D); got "
                f"{tuple(mean.shape)} and {tuple(cov.shape)}"
            )
    if mean1.shape[-1] != mean2.shape[-1]:
        raise ValueError(
            f"the two Gaussians have dimensions {mean1.shape[-1]} and {mean2.shape[-1]}"
        )
    dim = mean1.shape[-1]
    batch = torch.broadcast_shapes(
        mean1.shape[:-1], cov1.shape[:-2], mean2.shape[:-1], cov2.shape[:-2]
    )
    chol1 = _cholesky(cov1, "cov1").expand(*batch, dim, dim)  # L1 L1^T = cov1
    chol2 = _cholesky(cov2, "cov2").expand(*batch, dim, dim)  # L2 L2^T = cov2
    diff = (mean2 - mean1).expand(*batch, dim).unsqueeze(-1)  # (..., D, 1)
    solve = torch.linalg.solve_triangular
    trace = solve(chol2, chol1, upper=False).pow(2).sum((-2, -1))  # ||L2^-1 L1||_F^2
    maha = solve(chol2, diff, upper=False).pow(2).sum((-2, -1))  # ||L2^-1 diff||^2
    logdet1 = 2 * chol1.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    logdet2 = 2 * chol2.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (trace + maha - dim + logdet2 - logdet1)


def fit_gaussian(z):
    """The maximum-likelihood Gaussian of points z (N, D): (mean (D,), cov (D, D)).

    Chapter 2 measures how far an encoder's aggregate posterior is from N(0, I) by the
    KL of this fit (``kl_multivariate``); it sees only the first two moments, so it is a
    lower bound on what a sample test would find, and zero for any cloud with mean 0
    and covariance I.
    """
    checks.tensor(z, "z", shape=("N", "D"))
    if z.shape[0] <= z.shape[1]:
        raise ValueError(
            "need more points than dimensions to fit a covariance, got "
            f"{tuple(z.shape)}"
        )
    mean = z.mean(0)  # (D,)
    centred = z - mean  # (N, D)
    return mean, centred.T @ centred / z.shape[0]  # (D,), (D, D)
