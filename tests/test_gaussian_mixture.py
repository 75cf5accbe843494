"""oldschool.gaussian_mixture: samples and density against scipy, the exact diffused
score against autograd and simulation, the moments, and the flow-matching velocity."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from oldschool import gaussian_mixture
from oldschool.sde import VESDE, VPSDE, DiscreteVP, LinearPath, SubVPSDE

SDES = [VPSDE(), SubVPSDE(), VESDE(), DiscreteVP.stable_diffusion()]
SDE_IDS = ["vp", "subvp", "ve", "discrete-sd"]


def test_mixture_sample_moments():
    g = gaussian_mixture.example_mixture()
    x = g.sample(
        200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    mean = g.weights @ g.means
    second = torch.einsum(
        "k,kij->ij", g.weights, g.covs + g.means[:, :, None] * g.means[:, None, :]
    )
    cov = second - torch.outer(mean, mean)
    assert (x.mean(0) - mean).abs().max() < 5 * cov.diag().max().sqrt() / math.sqrt(
        len(x)
    )
    torch.testing.assert_close(torch.cov(x.T), cov, atol=3e-3, rtol=0.02)
    labels = g.responsibilities(x[:20000]).argmax(1)
    torch.testing.assert_close(
        labels.bincount(minlength=4) / 20000.0, g.weights.float(), atol=0.015, rtol=0
    )


def test_mixture_log_prob_against_scipy_and_normalized():
    g = gaussian_mixture.example_mixture()
    gen = torch.Generator().manual_seed(
        0
    )  # points where scipy's pdf does not underflow
    x = torch.randn(50, 2, dtype=torch.float64, generator=gen)
    expected = np.log(
        sum(
            w * multivariate_normal(m, c).pdf(x.numpy())
            for w, m, c in zip(g.weights.numpy(), g.means.numpy(), g.covs.numpy())
        )
    )
    np.testing.assert_allclose(g.log_prob(x).numpy(), expected, rtol=1e-10)
    axis = torch.linspace(-2.5, 2.5, 501, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    mass = g.log_prob(grid).exp().sum() * (axis[1] - axis[0]) ** 2
    assert abs(mass.item() - 1) < 1e-3


@pytest.mark.parametrize("sde", SDES, ids=SDE_IDS)
def test_score_is_the_gradient_of_the_diffused_log_density(sde):
    g = gaussian_mixture.example_mixture()
    x = 1.5 * torch.randn(40, 2, dtype=torch.float64)
    for t in (0.0, 0.01, 0.3, 1.0):
        xg = x.clone().requires_grad_()
        (grad,) = torch.autograd.grad(g.diffused(t, sde).log_prob(xg).sum(), xg)
        torch.testing.assert_close(g.score(x, t, sde), grad, rtol=1e-9, atol=1e-9)


def test_score_takes_one_time_per_point():
    g, vp = gaussian_mixture.example_mixture(), VPSDE()
    x = torch.randn(3, 2, dtype=torch.float64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    rows = torch.cat([g.score(x[i : i + 1], float(t[i]), vp) for i in range(3)])
    torch.testing.assert_close(g.score(x, t, vp), rows)
    torch.testing.assert_close(g.score_fn(vp)(x, t), rows)
    assert g.score(x.float(), t.float(), vp).dtype == torch.float32


@pytest.mark.parametrize("sde", SDES[:3], ids=SDE_IDS[:3])
def test_diffused_mixture_matches_noised_samples(sde):
    g = gaussian_mixture.example_mixture()
    gen = torch.Generator().manual_seed(1)
    x0 = g.sample(100_000, generator=gen, dtype=torch.float64)
    t = 0.2
    x_t, _ = sde.perturb(x0, t, generator=gen)
    g_t = g.diffused(t, sde)
    mean = g_t.weights @ g_t.means
    second = torch.einsum(
        "k,kij->ij",
        g_t.weights,
        g_t.covs + g_t.means[:, :, None] * g_t.means[:, None, :],
    )
    cov = second - torch.outer(mean, mean)
    torch.testing.assert_close(torch.cov(x_t.T), cov, rtol=0.03, atol=1e-3)
    # the mean log-density of its own samples is minus the entropy: a fresh draw agrees
    fresh = g_t.sample(100_000, generator=gen, dtype=torch.float64)
    assert abs(g_t.log_prob(x_t).mean() - g_t.log_prob(fresh).mean()) < 0.03


def test_mixture_errors():
    with pytest.raises(ValueError, match="sum to 1"):
        gaussian_mixture.GaussianMixture(
            [0.5, 0.6], [[0, 0], [1, 1]], torch.eye(2).expand(2, 2, 2)
        )
    with pytest.raises(ValueError, match="positive definite"):
        gaussian_mixture.GaussianMixture([1.0], [[0, 0]], [[[1.0, 0.0], [0.0, -1.0]]])
    with pytest.raises(ValueError, match="symmetric"):
        gaussian_mixture.GaussianMixture([1.0], [[0, 0]], [[[1.0, 0.5], [0.0, 1.0]]])
    with pytest.raises(ValueError, match=r"covs must have shape"):
        gaussian_mixture.GaussianMixture([1.0], [[0, 0]], torch.eye(3)[None])
    g = gaussian_mixture.example_mixture()
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        g.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"t must lie in \[0, T"):
        g.score(torch.zeros(4, 2), 1.5, VPSDE())
    with pytest.raises(ValueError, match=r"t must lie in \[0, T=0.999\]"):
        g.velocity(torch.zeros(4, 2), 1.0, LinearPath())
    with pytest.raises(ValueError, match="batch size"):
        g.posterior_means(torch.zeros(4, 2), torch.rand(3), LinearPath())
    with pytest.raises(ValueError, match=r"t must lie in \[0, T"):
        g.diffused(-0.1, VPSDE())
    with pytest.raises(ValueError, match=r"n must lie in \[1"):
        g.sample(0)


def test_functions_for_samplers_are_the_checked_methods():
    """score_fn / velocity_fn skip the door's checks, not the math."""
    g, vp, lin = gaussian_mixture.example_mixture(), VPSDE(), LinearPath()
    x = torch.randn(6, 2, dtype=torch.float64)
    t = torch.rand(6, dtype=torch.float64) * 0.9 + 0.05
    torch.testing.assert_close(g.score_fn(vp)(x, t), g.score(x, t, vp))
    torch.testing.assert_close(g.velocity_fn(lin)(x, t), g.velocity(x, t, lin))
    torch.testing.assert_close(g.score_fn(vp)(x, t[0]), g.score(x, float(t[0]), vp))


def test_moments_are_the_law_of_total_variance():
    g = gaussian_mixture.example_mixture()
    mean, cov = g.moments()
    x = g.sample(
        400_000, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    se = (x.var(0) / len(x)).sqrt()
    assert ((x.mean(0) - mean).abs() < 4 * se).all()
    assert (torch.cov(x.T) - cov).abs().max() < 0.01


# ----------------------------------------------------- chapter 8: the exact velocity

PATHS = SDES + [LinearPath()]
PATH_IDS = SDE_IDS + ["linear"]


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_velocity_is_the_probability_flow_drift_of_the_autograd_score(path):
    """u_t = f x - 1/2 g^2 grad log p_t, the gradient by autograd of diffused p_t."""
    g = gaussian_mixture.example_mixture()
    x = 1.5 * torch.randn(40, 2, dtype=torch.float64)
    for t in (0.01, 0.3, 0.7, 0.99):
        xg = x.clone().requires_grad_()
        (grad,) = torch.autograd.grad(g.diffused(t, path).log_prob(xg).sum(), xg)
        tt = torch.full((40,), t, dtype=torch.float64)
        drift = path.f(tt)[:, None] * x - 0.5 * path.g2(tt)[:, None] * grad
        torch.testing.assert_close(g.velocity(x, t, path), drift, rtol=1e-8, atol=1e-8)


def test_velocity_is_the_conditional_mean_of_the_path_velocity():
    """Monte Carlo: alpha' x0 + sigma' eps regressed on x_t near a point is u_t(x)."""
    g, lin = gaussian_mixture.example_mixture(), LinearPath()
    gen = torch.Generator().manual_seed(0)
    x0 = g.sample(400_000, generator=gen, dtype=torch.float64)
    x_t, eps = lin.perturb(x0, 0.5, generator=gen)
    for point in ([0.0, 0.0], [-0.3, -0.2], [0.3, 0.3]):
        near = (x_t - torch.tensor(point, dtype=torch.float64)).norm(dim=1) < 0.02
        conditional = (eps - x0)[near]  # the linear path's conditional velocity
        se = conditional.std(0) / math.sqrt(len(conditional))
        exact = g.velocity(torch.tensor([point], dtype=torch.float64), 0.5, lin)[0]
        assert ((conditional.mean(0) - exact).abs() < 4 * se + 0.02).all(), (
            point,
            len(conditional),
        )


def test_velocity_at_the_data_end_of_the_linear_path():
    """At t = 0, x_t = x0 and eps is independent of it: u_0(x) = E[eps] - x = -x."""
    g, lin = gaussian_mixture.example_mixture(), LinearPath()
    x = torch.randn(10, 2, dtype=torch.float64)
    torch.testing.assert_close(g.velocity(x, 0.0, lin), -x)
    torch.testing.assert_close(
        g.velocity_fn(lin)(x, torch.zeros(10, dtype=torch.float64)), -x
    )


def test_mixture_moments_conditional_and_tilt():
    MIXTURE = gaussian_mixture.example_mixture()
    gen = torch.Generator().manual_seed(5)
    mean, cov = MIXTURE.moments()
    x = MIXTURE.sample(200_000, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(mean, x.mean(0), rtol=0, atol=5e-3)
    torch.testing.assert_close(cov, torch.cov(x.T), rtol=0, atol=5e-3)
    # p(c | x) over all classes sums to one
    logs = torch.stack([MIXTURE.class_log_posterior(x[:100], [k]) for k in range(4)])
    torch.testing.assert_close(logs.exp().sum(0), torch.ones(100, dtype=torch.float64))
    # w = 0 tilt is p itself; w = 1 tilt is p(x | c) (Bayes): its mean is the class mean
    tilted = MIXTURE.sample_tilted(20000, [2], 1.0, generator=gen)
    torch.testing.assert_close(tilted.mean(0), MIXTURE.means[2], rtol=0, atol=0.02)
    # at scale 1, CFG's score is the conditional score exactly, at every t
    sde = VPSDE()
    t = torch.full((100,), 0.4, dtype=torch.float64)
    guided = MIXTURE.guided_score_fn(sde, [2], 1.0)(x[:100], t)
    torch.testing.assert_close(guided, MIXTURE.conditional([2]).score(x[:100], t, sde))
