"""A linear-Gaussian latent model (probabilistic PCA): every term of the ELBO is exact.

    z ~ N(0, I_k),    x | z ~ N(W z + b, s^2 I_D)        (Tipping & Bishop 1999)

This is the model of notes eq. (2) with a linear decoder, and everything chapter 2
checks has a closed form (Bishop 2006, sec. 12.2):

* the evidence of eq. (2):  p(x) = N(x; b, W W^T + s^2 I_D);
* the true posterior:       p(z|x) = N(M^-1 W^T (x - b), s^2 M^-1),
                            M = W^T W + s^2 I_k;
* the ELBO of any Gaussian q(z|x) = N(m, C), which is minus the loss of eq. (8):
      ELBO(q) = E_q[log p(x|z)] - KL(q || N(0, I)),
      E_q[log p(x|z)] = -D/2 log(2 pi s^2)
                        - (||x - W m - b||^2 + tr(W C W^T)) / (2 s^2).

So log p(x) = ELBO(q) + KL(q || p(z|x)) can be checked to rounding error. Everything is
batched over data points x of shape (N, D); work in float64.
"""

import math

import torch

from . import checks
from .gaussians import LOG_2PI, kl_multivariate


class LinearGaussian:
    """z ~ N(0, I_k), x | z ~ N(W z + b, s^2 I_D): probabilistic PCA.

    Tipping & Bishop 1999. W: (D, k) loading matrix; b: (D,) offset; s: the decoder's
    standard deviation (a float).
    """

    def __init__(self, W, b, s):
        checks.tensor(W, "W", shape=("D", "k"))
        checks.tensor(b, "b", shape=(W.shape[0],))
        checks.number(s, "s (the decoder's standard deviation)", low=0, low_open=True)
        self.W, self.b, self.s = W, b, float(s)

    @classmethod
    def random(cls, data_dim, latent_dim, s, generator=None, dtype=torch.float64):
        """A model with standard normal W and b (float64 by default)."""
        W = torch.randn(data_dim, latent_dim, generator=generator, dtype=dtype)
        b = torch.randn(data_dim, generator=generator, dtype=dtype)
        return cls(W, b, s)

    @property
    def data_dim(self):
        return self.W.shape[0]

    @property
    def latent_dim(self):
        return self.W.shape[1]

    def __repr__(self):
        return (
            f"LinearGaussian(data_dim={self.data_dim}, latent_dim={self.latent_dim}, "
            f"s={self.s})"
        )

    # -- the model ------------------------------------------------------------------

    def sample(self, n, generator=None):
        """n draws (x, z) from the joint: z ~ N(0, I), then x ~ N(W z + b, s^2 I)."""
        z = torch.randn(
            n,
            self.latent_dim,
            generator=generator,
            dtype=self.W.dtype,
            device=self.W.device,
        )
        noise = torch.randn(
            n,
            self.data_dim,
            generator=generator,
            dtype=self.W.dtype,
            device=self.W.device,
        )
        return z @ self.W.T + self.b + self.s * noise, z  # (n, D), (n, k)

    def log_likelihood(self, x, z):
        """log p(x|z) = log N(x; W z + b, s^2 I), notes eq. (4) made linear: (N,)."""
        checks.tensor(x, "x", shape=("N", self.data_dim))
        residual = x - z @ self.W.T - self.b  # (N, D)
        return -0.5 * (
            self.data_dim * (LOG_2PI + 2 * math.log(self.s))
            + residual.pow(2).sum(-1) / self.s**2
        )

    def marginal(self):
        """p(x) = N(b, W W^T + s^2 I): the integral of eq. (2), done in closed form."""
        eye = torch.eye(self.data_dim, dtype=self.W.dtype, device=self.W.device)
        return self.b, self.W @ self.W.T + self.s**2 * eye  # (D,), (D, D)

    def log_evidence(self, x):
        """log p(x), the exact log-likelihood of eq. (2); shape (N,)."""
        checks.tensor(x, "x", shape=("N", self.data_dim))
        mean, cov = self.marginal()
        chol = torch.linalg.cholesky(cov)  # (D, D)
        maha = (
            torch.linalg.solve_triangular(chol, (x - mean).T, upper=False).pow(2).sum(0)
        )  # (N,)
        logdet = 2 * chol.diagonal().log().sum()
        return -0.5 * (self.data_dim * LOG_2PI + logdet + maha)

    def posterior(self, x):
        """The true posterior p(z|x) = N(M^-1 W^T (x - b), s^2 M^-1).

        Returns (mean (N, k), cov (k, k)).
        """
        checks.tensor(x, "x", shape=("N", self.data_dim))
        eye = torch.eye(self.latent_dim, dtype=self.W.dtype, device=self.W.device)
        M = self.W.T @ self.W + self.s**2 * eye  # (k, k)
        mean = torch.linalg.solve(M, self.W.T @ (x - self.b).T).T  # (N, k)
        return mean, self.s**2 * torch.linalg.inv(M)

    # -- the ELBO -------------------------------------------------------------------

    def elbo(self, x, q_mean, q_cov):
        """ELBO(q) = E_q[log p(x|z)] - KL(q || N(0, I)) for q = N(q_mean, q_cov): (N,).

        In closed form: minus the loss of notes eq. (8) with the expectation done
        exactly, for a linear decoder
        E_q ||x - W z - b||^2 = ||x - W m - b||^2 + tr(W C W^T).
        """
        checks.tensor(x, "x", shape=("N", self.data_dim))
        n, k = x.shape[0], self.latent_dim
        checks.tensor(q_mean, "q_mean", shape=(n, k))
        cov_shape = (n, k, k) if getattr(q_cov, "ndim", 2) == 3 else (k, k)
        checks.tensor(q_cov, "q_cov", shape=cov_shape)
        return self._elbo(x, q_mean, q_cov)

    def _elbo(self, x, q_mean, q_cov):
        """``elbo`` past its door (``fit_q`` calls it once per step)."""
        residual = x - q_mean @ self.W.T - self.b  # (N, D)
        spread = (
            (self.W @ q_cov @ self.W.T).diagonal(dim1=-2, dim2=-1).sum(-1)
        )  # tr(W C W^T): () or (N,)
        expected_ll = -0.5 * (
            self.data_dim * (LOG_2PI + 2 * math.log(self.s))
            + (residual.pow(2).sum(-1) + spread) / self.s**2
        )
        zeros = torch.zeros_like(q_mean[0])
        eye = torch.eye(self.latent_dim, dtype=q_mean.dtype, device=q_mean.device)
        return expected_ll - kl_multivariate(q_mean, q_cov, zeros, eye)

    def elbo_monte_carlo(self, x, q_mean, q_cov, n_samples, generator=None):
        """Monte Carlo estimate of E_q[log p(x|z) + log p(z) - log q(z)].

        Returns (mean (N,), standard error (N,)). An estimate that knows nothing of the
        closed form in ``elbo``: z = m + L eps, L L^T = C.
        """
        checks.tensor(x, "x", shape=("N", self.data_dim))
        n, k = x.shape[0], self.latent_dim
        checks.tensor(q_mean, "q_mean", shape=(n, k))
        cov_shape = (n, k, k) if getattr(q_cov, "ndim", 2) == 3 else (k, k)
        checks.tensor(q_cov, "q_cov", shape=cov_shape)
        chol = torch.linalg.cholesky(q_cov)  # (k, k) or (N, k, k)
        eps = torch.randn(
            n_samples,
            n,
            k,
            generator=generator,
            dtype=q_mean.dtype,
            device=q_mean.device,
        )
        z = q_mean + (chol @ eps.unsqueeze(-1)).squeeze(-1)  # (S, N, k)
        log_lik = self.log_likelihood(
            x.expand(n_samples, -1, -1).reshape(-1, self.data_dim), z.reshape(-1, k)
        )
        log_prior = -0.5 * (k * LOG_2PI + z.pow(2).sum(-1))  # (S, N)
        logdet = 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # () or (N,)
        log_q = -0.5 * (
            k * LOG_2PI + logdet + eps.pow(2).sum(-1)
        )  # (S, N): (z - m)^T C^-1 (z - m) = ||eps||^2
        w = log_lik.view(n_samples, n) + log_prior - log_q  # (S, N)
        return w.mean(0), w.std(0) / math.sqrt(n_samples)

    def mean_field_posterior(self, x):
        """The best *diagonal* Gaussian q(z|x), the most a VAE's encoder can reach.

        Returns (mean, cov). For a Gaussian posterior with precision Lambda = M / s^2,
        the diagonal q minimizing KL(q || p(z|x)) has the posterior's mean and variances
        1 / Lambda_ii (Bishop 2006, sec. 10.1.2). The gap it leaves is
        1/2 (sum_i log Lambda_ii - log det Lambda) >= 0, zero only when Lambda is
        diagonal.
        """
        mean, cov = self.posterior(x)
        precision = torch.linalg.inv(cov)  # Lambda, (k, k)
        return mean, torch.diag(1.0 / precision.diagonal())

    def fit_q(self, x, diagonal, steps=300, lr=0.05):
        """Maximize the ELBO over a Gaussian q for each x by gradient ascent.

        As an encoder would, but per data point. diagonal: restrict q to diagonal
        covariances (the VAE family of eq. (3)) or allow a full one. Starts from
        q = N(0, I). Returns (elbo per step (steps, N), q_mean (N, k), q_cov (N, k, k)).
        """
        checks.tensor(x, "x", shape=("N", self.data_dim))
        n, k = x.shape[0], self.latent_dim
        mean = torch.zeros(n, k, dtype=x.dtype, device=x.device, requires_grad=True)
        log_diag = torch.zeros(
            n, k, dtype=x.dtype, device=x.device, requires_grad=True
        )  # log of L's diagonal
        lower = torch.zeros(
            n, k, k, dtype=x.dtype, device=x.device, requires_grad=not diagonal
        )  # L below it

        def covariance():
            chol = torch.diag_embed(log_diag.exp())  # (N, k, k)
            if not diagonal:
                chol = chol + torch.tril(lower, diagonal=-1)
            return chol @ chol.transpose(-2, -1)  # C = L L^T

        params = [mean, log_diag] + ([] if diagonal else [lower])
        optimizer = torch.optim.Adam(params, lr=lr)
        trace = []
        for _ in range(steps):
            elbo = self._elbo(x, mean, covariance())  # (N,)
            optimizer.zero_grad()
            (-elbo.sum()).backward()
            optimizer.step()
            trace.append(elbo.detach())
        return torch.stack(trace), mean.detach(), covariance().detach()
