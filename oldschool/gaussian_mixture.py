"""Gaussian mixtures: the one data distribution whose diffused marginals are exact.

``GaussianMixture`` holds p(x) = sum_k w_k N(x | mu_k, Sigma_k) and everything the
chapters ask of it in closed form: samples, log density, the diffused mixture p_t and
its score (chapters 5 and 6), its moments, classes and the tilted density of guidance
(chapter 6), and the flow-matching velocity (chapter 8). ``example_mixture`` is the
2-D mixture of chapters 5, 6 and 8.

The doors are the public methods a chapter calls (``score``, ``posterior_means``,
``velocity``, ``log_prob``, ...), which check x and t once; the functions handed to a
sampler (``score_fn``, ``velocity_fn``, ``guided_score_fn``) run per step and trust the
sampler, which checked its time grid at entry.
"""

import math

import torch

from . import checks
from .gaussians import LOG_2PI


def _per_sample(t, x):
    """t (a float, () or (B,)) as a (B,) tensor on x's device and dtype."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.expand(x.shape[0]) if t.dim() == 0 else t


class GaussianMixture:
    """p(x) = sum_k w_k N(x | mu_k, Sigma_k), with its exact diffused score.

    weights: (K,) positive, summing to 1. means: (K, D). covs: (K, D, D) symmetric
    positive definite. Stored in float64; methods compute in the dtype and on the device
    of ``x``.

    Under a linear forward SDE (``oldschool.sde``) a data point becomes m(t) x0 + s(t)
    eps, so the mixture at time t is again a mixture, of N(m mu_k, m^2 Sigma_k + s^2 I)
    with the same weights (notes eq. (14); Song et al. 2021). ``score`` returns its
    gradient of log density exactly: ground truth against which samplers are judged with
    no score error. With Sigma_k = U_k diag(lambda_k) U_k^T, the diffused covariance is
    U_k diag(m^2 lambda_k + s^2) U_k^T: one eigendecomposition serves every t.
    """

    def __init__(self, weights, means, covs):
        weights, means, covs = (
            torch.as_tensor(v, dtype=torch.float64) for v in (weights, means, covs)
        )
        if weights.dim() != 1:
            raise ValueError(
                f"weights must have shape (K,), got {tuple(weights.shape)}"
            )
        k = weights.shape[0]
        if means.dim() != 2 or means.shape[0] != k:
            raise ValueError(
                f"means must have shape (K={k}, D), got {tuple(means.shape)}"
            )
        d = means.shape[1]
        if covs.shape != (k, d, d):
            raise ValueError(
                f"covs must have shape (K={k}, D={d}, D={d}), got {tuple(covs.shape)}"
            )
        if (weights <= 0).any() or abs(weights.sum().item() - 1.0) > 1e-6:
            raise ValueError(
                f"weights must be positive and sum to 1, got {weights.tolist()}"
            )
        if not torch.allclose(covs, covs.transpose(1, 2), atol=1e-10):
            raise ValueError("every covariance must be symmetric")
        eigvals, eigvecs = torch.linalg.eigh(
            covs
        )  # (K, D), (K, D, D); Sigma_k = U diag(lambda) U^T
        if (eigvals <= 0).any():
            raise ValueError(
                "every covariance must be positive definite; "
                f"smallest eigenvalue {eigvals.min().item():.3g}"
            )
        self.weights, self.means, self.covs = weights, means, covs
        self.eigvals, self.eigvecs = eigvals, eigvecs

    @property
    def num_components(self):
        return self.weights.shape[0]

    @property
    def dim(self):
        return self.means.shape[1]

    def __repr__(self):
        return f"GaussianMixture(K={self.num_components}, D={self.dim})"

    def sample(self, n, generator=None, dtype=torch.float32):
        """``n`` samples, shape (n, D): pick k ~ w, then mu_k + U_k sqrt(lambda_k) z."""
        checks.number(n, "n", low=1, integer=True)
        k = torch.multinomial(
            self.weights, n, replacement=True, generator=generator
        )  # (n,)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)  # (n, D)
        x = self.means[k] + torch.einsum(
            "nde,ne->nd", self.eigvecs[k], self.eigvals[k].sqrt() * z
        )
        return x.to(dtype)

    def _check_points(self, x):
        checks.tensor(x, "x", shape=("B", self.dim))

    def _components(self, x, m, s2):
        """log w_k N(x | m mu_k, m^2 Sigma_k + s2 I) and precision (x - mean), per k.

        x: (B, D); m, s2: (B,). Returns (log_joint (B, K), precision_diff (B, K, D)).
        """
        w, mu, lam, u = (
            v.to(device=x.device, dtype=x.dtype)
            for v in (self.weights, self.means, self.eigvals, self.eigvecs)
        )
        diff = x[:, None, :] - m[:, None, None] * mu  # (B, K, D)
        var = (
            m[:, None, None] ** 2 * lam + s2[:, None, None]
        )  # (B, K, D), eigenvalues of the covariance
        proj = torch.einsum(
            "kde,bkd->bke", u, diff
        )  # (B, K, D), diff in each eigenbasis
        maha = (proj**2 / var).sum(-1)  # (B, K)
        log_normal = -0.5 * (maha + var.log().sum(-1) + self.dim * LOG_2PI)  # (B, K)
        precision_diff = torch.einsum("kde,bke->bkd", u, proj / var)  # (B, K, D)
        return w.log() + log_normal, precision_diff

    def log_prob(self, x):
        """log p(x), shape (B,)."""
        self._check_points(x)
        ones = x.new_ones(x.shape[0])
        log_joint, _ = self._components(x, ones, 0 * ones)
        return torch.logsumexp(log_joint, dim=1)

    def responsibilities(self, x):
        """p(k | x), shape (B, K): which component each point most likely came from."""
        self._check_points(x)
        ones = x.new_ones(x.shape[0])
        log_joint, _ = self._components(x, ones, 0 * ones)
        return torch.softmax(log_joint, dim=1)

    def diffused(self, t, sde):
        """The mixture p_t at one time t: means m mu_k, covs m^2 Sigma_k + s^2 I."""
        t = checks.times(t, t_max=sde.T)
        m, s = float(sde.alpha(t)), float(sde.sigma(t))
        eye = torch.eye(self.dim, dtype=torch.float64)
        return GaussianMixture(
            self.weights, m * self.means, m**2 * self.covs + s**2 * eye
        )

    def coordinate(self, j):
        """1-D marginal of coordinate ``j``: w_k, means mu_kj, variances Sigma_kjj."""
        if not 0 <= j < self.dim:
            raise ValueError(f"coordinate must lie in [0, {self.dim}), got {j!r}")
        return GaussianMixture(
            self.weights, self.means[:, j : j + 1], self.covs[:, j : j + 1, j : j + 1]
        )

    def score(self, x, t, sde):
        """The exact score grad_x log p_t(x) of the mixture diffused by ``sde`` to t.

        x: (B, D); t: a float or a tensor (B,). grad log sum_k w_k N_k = -sum_k r_k
        C_k^{-1} (x - m mu_k) with responsibilities r_k = p_t(k | x).
        """
        self._check_points(x)
        return self._score(x, checks.times(t, t_max=sde.T, like=x), sde)

    def _score(self, x, t, sde):
        t = _per_sample(t, x)  # (B,)
        m, s = sde.alpha(t), sde.sigma(t)  # (B,), (B,)
        log_joint, precision_diff = self._components(x, m, s**2)
        r = torch.softmax(log_joint, dim=1)  # (B, K)
        return -(r[:, :, None] * precision_diff).sum(1)  # (B, D)

    def score_fn(self, sde):
        """``score_fn(x, t)`` for a sampler: the exact score under ``sde``."""
        return lambda x, t: self._score(x, t, sde)

    # -- moments and conditioning (chapters 5 and 6) ----------------------------------

    def moments(self):
        """Mean (D,) and covariance (D, D): sum_k w_k mu_k and
        sum_k w_k (Sigma_k + mu_k mu_k^T) - mean mean^T (the law of total variance)."""
        mean = self.weights @ self.means
        outer = self.means[:, :, None] * self.means[:, None, :]  # (K, D, D)
        second = torch.einsum("k,kij->ij", self.weights, self.covs + outer)
        return mean, second - torch.outer(mean, mean)

    def conditional(self, components):
        """p(x | c) for a class c made of the given components, weights renormalized."""
        idx = torch.as_tensor(components, dtype=torch.long).reshape(-1)
        if len(idx) == 0 or idx.min() < 0 or idx.max() >= self.num_components:
            raise ValueError(
                f"components must be indices in [0, {self.num_components}), "
                f"got {components!r}"
            )
        w = self.weights[idx]
        return GaussianMixture(w / w.sum(), self.means[idx], self.covs[idx])

    def guided_score_fn(self, sde, components, scale):
        """Classifier-free guidance with exact scores (Ho & Salimans 2022):
        s_w = s(x) + w (s(x | c) - s(x)) = grad log [p_t(x) p_t(c | x)^w], at every
        t."""
        cond = self.conditional(components)
        return lambda x, t: (
            self._score(x, t, sde)
            + scale * (cond._score(x, t, sde) - self._score(x, t, sde))
        )

    def class_log_posterior(self, x, components):
        """log p(c | x) at t = 0: summed responsibilities of the class's components."""
        self._check_points(x)
        ones = x.new_ones(x.shape[0])
        log_joint, _ = self._components(x, ones, 0 * ones)  # (B, K)
        idx = torch.as_tensor(components, dtype=torch.long).reshape(-1).to(x.device)
        return torch.logsumexp(log_joint[:, idx], 1) - torch.logsumexp(log_joint, 1)

    def assigned_weights(self, x):
        """The fraction of points (B, D) whose likeliest component is k, shape (K,)."""
        labels = self.responsibilities(x).argmax(1)
        return labels.bincount(minlength=self.num_components).to(x.dtype) / len(x)

    def short_axis_widths(self, x):
        """Per component, the std of its assigned points along their narrowest direction
        (the smallest eigenvalue of their covariance, square-rooted), shape (K,); the
        truth is ``eigvals.min(1).sqrt()``."""
        labels = self.responsibilities(x).argmax(1)
        return torch.stack(
            [
                torch.linalg.eigvalsh(torch.cov(x[labels == k].T.double())).min().sqrt()
                for k in range(self.num_components)
            ]
        )

    def sample_tilted(self, n, components, scale, generator=None, oversample=50):
        """``n`` draws of the tilted density p(x) p(c | x)^w / Z by sampling-importance-
        resampling: ``oversample * n`` draws of p, resampled with weights p(c | x)^w."""
        pool = self.sample(oversample * n, generator=generator, dtype=torch.float64)
        log_w = scale * self.class_log_posterior(pool, components)
        pick = torch.multinomial(
            torch.softmax(log_w, 0), n, replacement=True, generator=generator
        )
        return pool[pick]

    # ------------------------------------------- chapter 8: the flow-matching velocity

    def posterior_means(self, x, t, path):
        """E[x0 | x_t = x] and E[eps | x_t = x] under ``path``, exactly: two (B, D).

        Given component k, (x0, x_t) is jointly Gaussian, so with C_k = alpha^2 Sigma_k
        + sigma^2 I and P_k = C_k^{-1} (x - alpha mu_k) (Bishop 2006, eq. (2.116)):
            E[x0 | x, k] = mu_k + alpha Sigma_k P_k,      E[eps | x, k] = sigma P_k,
        and the mixture averages them with the responsibilities r_k = p_t(k | x).
        """
        self._check_points(x)
        return self._posterior_means(x, checks.times(t, t_max=path.T, like=x), path)

    def _posterior_means(self, x, t, path):
        t = _per_sample(t, x)  # (B,)
        alpha, sigma = path.alpha(t), path.sigma(t)  # (B,), (B,)
        log_joint, precision_diff = self._components(
            x, alpha, sigma**2
        )  # (B, K), (B, K, D)
        r = torch.softmax(log_joint, dim=1)[:, :, None]  # (B, K, 1)
        covs, mu = (
            v.to(device=x.device, dtype=x.dtype) for v in (self.covs, self.means)
        )
        cov_p = torch.einsum(
            "kde,bke->bkd", covs, precision_diff
        )  # (B, K, D): Sigma_k P_k
        x0_mean = (r * (mu + alpha[:, None, None] * cov_p)).sum(1)  # (B, D)
        eps_mean = (r * sigma[:, None, None] * precision_diff).sum(1)  # (B, D)
        return x0_mean, eps_mean

    def velocity(self, x, t, path):
        """The exact marginal velocity u_t(x) = E[alpha' x0 + sigma' eps | x_t = x].

        The field whose ODE dx/dt = u_t(x) carries p_0 to p_t along ``path``: the
        minimizer of the flow-matching loss (Lipman et al. 2023; Liu et al. 2023). It
        equals the probability-flow drift f x - 1/2 g^2 score of eq. (18) (chapter 8
        derives it).
        """
        self._check_points(x)
        return self._velocity(x, checks.times(t, t_max=path.T, like=x), path)

    def _velocity(self, x, t, path):
        x0_mean, eps_mean = self._posterior_means(x, t, path)
        t = _per_sample(t, x)
        d_alpha, d_sigma = path.d_alpha(t)[:, None], path.d_sigma(t)[:, None]  # (B, 1)
        return d_alpha * x0_mean + d_sigma * eps_mean

    def velocity_fn(self, path):
        """``velocity_fn(x, t)``: the exact flow-matching velocity on ``path``."""
        return lambda x, t: self._velocity(x, t, path)


def example_mixture():
    """The 2-D mixture of chapters 5, 6 and 8: four tilted ellipses, unequal weights."""

    def tilted(std_long, std_short, angle):
        c, s = math.cos(angle), math.sin(angle)
        rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
        return (
            rot
            @ torch.diag(torch.tensor([std_long**2, std_short**2], dtype=torch.float64))
            @ rot.T
        )

    weights = [0.4, 0.3, 0.2, 0.1]
    means = [[-0.55, -0.35], [0.55, -0.35], [0.0, 0.6], [0.6, 0.55]]
    covs = torch.stack(
        [
            tilted(0.18, 0.05, math.pi / 4),
            tilted(0.15, 0.06, -math.pi / 4),
            tilted(0.20, 0.05, 0.0),
            tilted(0.05, 0.05, 0.0),
        ]
    )
    return GaussianMixture(weights, means, covs)
