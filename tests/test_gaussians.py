"""oldschool.gaussians: closed forms against Monte Carlo and torch.distributions,
gradients, errors."""

import math

import pytest
import torch

from oldschool import gaussians
from oldschool.gaussians import DiagonalGaussian


def random_pair(shape, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(shape, generator=g, dtype=dtype)
    logvar = 0.8 * torch.randn(shape, generator=g, dtype=dtype)
    return mean, logvar


def repeat(q, n):
    """The same Gaussians n times over: batch B -> n * B (row i * B + b copies b)."""
    expand = lambda t: t.expand(n, *t.shape).reshape(n * t.shape[0], *t.shape[1:])
    return DiagonalGaussian(expand(q.mean), expand(q.logvar))


def monte_carlo_kl(q, p, n, seed):
    """Per-batch-row mean and standard error of log q(z) - log p(z), z ~ q (n draws)."""
    q_n = repeat(q, n)
    z = q_n.sample(generator=torch.Generator().manual_seed(seed))
    log_p = (
        repeat(p, n).log_prob(z)
        if p is not None
        else -gaussians.gaussian_nll(z, torch.zeros_like(z), 0.0)
    )
    draws = (q_n.log_prob(z) - log_p).view(n, -1)  # (n, B)
    return draws.mean(0), draws.std(0) / math.sqrt(n)


def test_kl_standard_normal_matches_monte_carlo_within_confidence_interval():
    mean, logvar = random_pair((4, 3), seed=0)
    closed = gaussians.kl_standard_normal(mean, logvar)
    estimate, stderr = monte_carlo_kl(
        DiagonalGaussian(mean, logvar), None, n=20_000, seed=1
    )
    assert torch.all((closed - estimate).abs() < 4 * stderr)


def test_kl_diagonal_matches_monte_carlo_and_torch_distributions():
    mean1, logvar1 = random_pair((5, 2, 3), seed=2)  # summed over all but the batch dim
    mean2, logvar2 = random_pair((5, 2, 3), seed=3)
    q, p = DiagonalGaussian(mean1, logvar1), DiagonalGaussian(mean2, logvar2)
    closed = q.kl(p)
    assert closed.shape == (5,)
    estimate, stderr = monte_carlo_kl(q, p, n=20_000, seed=4)
    assert torch.all((closed - estimate).abs() < 4 * stderr)
    peer = (
        torch.distributions.kl_divergence(
            torch.distributions.Normal(mean1, logvar1.mul(0.5).exp()),
            torch.distributions.Normal(mean2, logvar2.mul(0.5).exp()),
        )
        .flatten(1)
        .sum(1)
    )
    assert torch.allclose(closed, peer)


def test_kl_diagonal_to_standard_normal_is_eq9():
    mean, logvar = random_pair((6, 4), seed=5)
    q = DiagonalGaussian(mean, logvar)
    prior = DiagonalGaussian(torch.zeros_like(mean), torch.zeros_like(logvar))
    assert torch.allclose(q.kl(prior), q.kl())
    assert torch.allclose(
        gaussians.kl_standard_normal_elementwise(mean, logvar).sum(1), q.kl()
    )
    assert torch.all(q.kl() >= 0)
    assert torch.allclose(prior.kl(), torch.zeros(6, dtype=torch.float64))


def test_nll_matches_torch_distributions():
    mean, logvar = random_pair((3, 1, 4, 4), seed=6)
    x = torch.randn(
        3, 1, 4, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64
    )
    ours = DiagonalGaussian(mean, logvar).nll(x)
    peer = (
        -torch.distributions.Normal(mean, logvar.mul(0.5).exp())
        .log_prob(x)
        .flatten(1)
        .sum(1)
    )
    assert torch.allclose(ours, peer)


def test_sample_has_the_right_moments_and_mode_is_the_mean():
    mean = torch.tensor([[1.5, -2.0]], dtype=torch.float64).expand(50_000, 2)
    logvar = torch.tensor(
        [[math.log(0.25), math.log(4.0)]], dtype=torch.float64
    ).expand(50_000, 2)
    q = DiagonalGaussian(mean, logvar)
    z = q.sample(generator=torch.Generator().manual_seed(8))
    assert z.dtype == torch.float64 and z.shape == (50_000, 2)
    se_mean = q.std[0] / math.sqrt(50_000)
    assert torch.all((z.mean(0) - mean[0]).abs() < 4 * se_mean)
    assert torch.allclose(z.var(0), q.var[0], rtol=0.03)
    assert q.mode() is mean


def test_sample_is_reparameterized_gradient_flows_to_mean_and_logvar():
    # d/dmu E[z^2] = 2 mu and d/dlogvar E[z^2] = sigma^2 (E[z^2] = mu^2 + exp(logvar)).
    n = 40_000
    mean = torch.full((n, 1), 0.7, dtype=torch.float64, requires_grad=True)
    logvar = torch.full((n, 1), math.log(0.3), dtype=torch.float64, requires_grad=True)
    z = DiagonalGaussian(mean, logvar).sample(
        generator=torch.Generator().manual_seed(9)
    )
    (z**2).sum().backward()
    for grad, exact in [(mean.grad, 2 * 0.7), (logvar.grad, 0.3)]:
        assert abs(grad.mean().item() - exact) < 4 * grad.std().item() / math.sqrt(n)


def test_same_generator_seed_gives_same_sample():
    mean, logvar = random_pair((2, 3), seed=10)
    q = DiagonalGaussian(mean, logvar)
    a = q.sample(generator=torch.Generator().manual_seed(11))
    b = q.sample(generator=torch.Generator().manual_seed(11))
    assert torch.equal(a, b)


def test_kl_multivariate_matches_torch_and_reduces_to_diagonal():
    g = torch.Generator().manual_seed(12)
    a = torch.randn(4, 3, 3, generator=g, dtype=torch.float64)
    cov1 = a @ a.transpose(-2, -1) + 0.1 * torch.eye(3, dtype=torch.float64)
    b = torch.randn(3, 3, generator=g, dtype=torch.float64)
    cov2 = b @ b.T + 0.1 * torch.eye(
        3, dtype=torch.float64
    )  # broadcast against a batch of 4
    mean1 = torch.randn(4, 3, generator=g, dtype=torch.float64)
    mean2 = torch.randn(3, generator=g, dtype=torch.float64)
    ours = gaussians.kl_multivariate(mean1, cov1, mean2, cov2)
    peer = torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(mean1, cov1),
        torch.distributions.MultivariateNormal(mean2, cov2),
    )
    assert ours.shape == (4,) and torch.allclose(ours, peer)

    mean, logvar = random_pair((4, 3), seed=13)
    full = gaussians.kl_multivariate(
        mean,
        torch.diag_embed(logvar.exp()),
        torch.zeros(3, dtype=torch.float64),
        torch.eye(3, dtype=torch.float64),
    )
    assert torch.allclose(full, gaussians.kl_standard_normal(mean, logvar))


def test_fit_gaussian_recovers_mean_and_covariance():
    g = torch.Generator().manual_seed(14)
    chol = torch.tensor([[1.0, 0.0], [0.8, 0.5]], dtype=torch.float64)
    z = (
        torch.tensor([2.0, -1.0], dtype=torch.float64)
        + torch.randn(100_000, 2, generator=g, dtype=torch.float64) @ chol.T
    )
    mean, cov = gaussians.fit_gaussian(z)
    assert torch.allclose(
        mean, torch.tensor([2.0, -1.0], dtype=torch.float64), atol=0.02
    )
    assert torch.allclose(cov, chol @ chol.T, atol=0.02)
    standard = torch.randn(100_000, 2, generator=g, dtype=torch.float64)
    fitted_kl = gaussians.kl_multivariate(
        *gaussians.fit_gaussian(standard),
        torch.zeros(2, dtype=torch.float64),
        torch.eye(2, dtype=torch.float64),
    )
    assert 0 <= fitted_kl < 1e-3


def test_bad_inputs_give_clear_errors():
    mean, logvar = random_pair((2, 3), seed=15)
    with pytest.raises(
        ValueError, match=r"logvar must have shape \(2, 3\), got \(2, 2\)"
    ):
        DiagonalGaussian(mean, logvar[:, :2])
    with pytest.raises(ValueError, match="non-finite"):
        DiagonalGaussian(mean, torch.full_like(logvar, float("inf")))
    with pytest.raises(ValueError, match="non-finite"):
        gaussians.kl_standard_normal(mean, torch.full_like(logvar, float("nan")))
    with pytest.raises(TypeError, match="mean must be a tensor, got list"):
        DiagonalGaussian(mean.tolist(), logvar)
    with pytest.raises(TypeError, match="DiagonalGaussian or None"):
        DiagonalGaussian(mean, logvar).kl("standard normal")
    with pytest.raises(ValueError, match="two Gaussians have shapes"):
        gaussians.kl_diagonal(mean, logvar, mean[:1], logvar[:1])
    with pytest.raises(ValueError, match="x has shape"):
        DiagonalGaussian(mean, logvar).nll(mean[:, :2])
    eye = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"cov1 must be \(\.\.\., D, D\)"):
        gaussians.kl_multivariate(mean, eye[:2], mean, eye)
    with pytest.raises(ValueError, match="not positive definite"):
        gaussians.kl_multivariate(mean, -eye, mean, eye)
    with pytest.raises(ValueError, match="more points than dimensions"):
        gaussians.fit_gaussian(mean)
