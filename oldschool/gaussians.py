"""Diagonal Gaussians: the encoder's q(z|x), the decoder's p(x|z), and their KLs.

Everything here is written per element and then summed over every dimension but
the batch dimension, so the same code serves 2-D latents of an MLP (B, D) and the
(B, C, H, W) latents of the Stable Diffusion autoencoders.
"""

import math

import torch

LOG_2PI = math.log(2 * math.pi)


def _sum_but_batch(x):
    return x.flatten(1).sum(1) if x.dim() > 1 else x


def _check_pair(mean, logvar, what="mean/logvar"):
    if not isinstance(mean, torch.Tensor) or not isinstance(logvar, torch.Tensor):
        raise TypeError(f"{what} must be tensors, got {type(mean).__name__} and {type(logvar).__name__}")
    if mean.shape != logvar.shape:
        raise ValueError(f"{what} shapes differ: {tuple(mean.shape)} vs {tuple(logvar.shape)}")
    if not torch.isfinite(logvar).all():
        raise ValueError("logvar has non-finite entries (inf or nan); clamp it before building the Gaussian")


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
        raise ValueError(f"x has shape {tuple(x.shape)} but the Gaussian's mean has {tuple(mean.shape)}")
    nll = 0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar))
    return _sum_but_batch(nll)


def kl_standard_normal(mean, logvar):
    """KL( N(mean, exp(logvar)) || N(0, I) ) summed over all but the batch dim.

    notes eq. (9); Kingma & Welling 2014, App. B:
    1/2 sum_i (mu_i^2 + sigma_i^2 - log sigma_i^2 - 1).
    """
    _check_pair(mean, logvar)
    return _sum_but_batch(0.5 * (mean**2 + torch.exp(logvar) - logvar - 1.0))


def kl_diagonal(mean1, logvar1, mean2, logvar2):
    """KL( N(mean1, exp(logvar1)) || N(mean2, exp(logvar2)) ), diagonal, summed over all but batch.

    1/2 sum_i [ log(s2^2 / s1^2) + (s1^2 + (mu1 - mu2)^2) / s2^2 - 1 ]; with mean2 = 0 and
    logvar2 = 0 it is eq. (9). Used by the diffusion chapters for per-step KLs.
    """
    _check_pair(mean1, logvar1, "mean1/logvar1")
    _check_pair(mean2, logvar2, "mean2/logvar2")
    if mean1.shape != mean2.shape:
        raise ValueError(f"the two Gaussians have shapes {tuple(mean1.shape)} and {tuple(mean2.shape)}")
    kl = 0.5 * (logvar2 - logvar1 + (torch.exp(logvar1) + (mean1 - mean2) ** 2) * torch.exp(-logvar2) - 1.0)
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
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self):
        """The most likely z: the mean (what a deterministic encoder would output)."""
        return self.mean

    def kl(self, other=None):
        """KL(self || other), or KL(self || N(0, I)) when ``other`` is None; summed over all but batch."""
        if other is None:
            return kl_standard_normal(self.mean, self.logvar)
        if not isinstance(other, DiagonalGaussian):
            raise TypeError(f"other must be a DiagonalGaussian or None, got {type(other).__name__}")
        return kl_diagonal(self.mean, self.logvar, other.mean, other.logvar)

    def nll(self, x):
        """-log N(x | mean, var), summed over all but batch."""
        return gaussian_nll(x, self.mean, self.logvar)

    def log_prob(self, x):
        return -self.nll(x)

    def __repr__(self):
        return f"DiagonalGaussian(shape={tuple(self.mean.shape)}, dtype={self.mean.dtype}, device={self.mean.device})"
