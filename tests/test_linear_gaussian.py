"""oldschool.linear_gaussian: the ELBO's identities on a model where all is exact."""

import pytest
import torch

from oldschool import gaussians
from oldschool.linear_gaussian import LinearGaussian


@pytest.fixture
def model_and_data():
    g = torch.Generator().manual_seed(0)
    model = LinearGaussian.random(data_dim=5, latent_dim=3, s=0.7, generator=g)
    x, _ = model.sample(6, generator=g)
    return model, x


def random_q(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(n, k, generator=g, dtype=torch.float64)
    a = torch.randn(n, k, k, generator=g, dtype=torch.float64)
    return mean, a @ a.transpose(-2, -1) + 0.05 * torch.eye(k, dtype=torch.float64)


def test_log_evidence_matches_torch_multivariate_normal(model_and_data):
    model, x = model_and_data
    mean, cov = model.marginal()
    peer = torch.distributions.MultivariateNormal(mean, cov).log_prob(x)
    assert torch.allclose(model.log_evidence(x), peer)


def test_log_evidence_is_the_prior_expectation_of_the_likelihood(model_and_data):
    # eq. (2): p(x) = E_{z ~ N(0, I)} p(x|z), estimated by brute force
    model, x = model_and_data
    z = torch.randn(
        400_000,
        model.latent_dim,
        generator=torch.Generator().manual_seed(1),
        dtype=torch.float64,
    )
    log_lik = torch.stack(
        [model.log_likelihood(xi.expand(len(z), -1), z) for xi in x[:2]]
    )  # (2, S)
    estimate = torch.logsumexp(log_lik, dim=1) - torch.log(
        torch.tensor(len(z), dtype=torch.float64)
    )
    assert torch.allclose(estimate, model.log_evidence(x[:2]), atol=0.05)


def test_posterior_is_gaussian_conditioning_of_the_joint(model_and_data):
    # joint of (z, x): [[I, W^T], [W, W W^T + s^2 I]]; condition on x by the Schur
    # complement
    model, x = model_and_data
    _, cov_x = model.marginal()
    gain = model.W.T @ torch.linalg.inv(cov_x)  # (k, D)
    mean_peer = (gain @ (x - model.b).T).T
    cov_peer = torch.eye(model.latent_dim, dtype=torch.float64) - gain @ model.W
    mean, cov = model.posterior(x)
    assert torch.allclose(mean, mean_peer) and torch.allclose(cov, cov_peer)


def test_bayes_rule_holds_pointwise(model_and_data):
    # log p(z|x) = log p(x|z) + log p(z) - log p(x) at any z
    model, x = model_and_data
    mean, cov = model.posterior(x)
    z = torch.randn(
        len(x),
        model.latent_dim,
        generator=torch.Generator().manual_seed(2),
        dtype=torch.float64,
    )
    log_post = torch.distributions.MultivariateNormal(mean, cov).log_prob(z)
    log_prior = torch.distributions.MultivariateNormal(
        torch.zeros(model.latent_dim, dtype=torch.float64),
        torch.eye(model.latent_dim, dtype=torch.float64),
    ).log_prob(z)
    assert torch.allclose(
        log_post, model.log_likelihood(x, z) + log_prior - model.log_evidence(x)
    )


def test_elbo_closed_form_matches_monte_carlo(model_and_data):
    model, x = model_and_data
    q_mean, q_cov = random_q(len(x), model.latent_dim, seed=3)
    estimate, stderr = model.elbo_monte_carlo(
        x, q_mean, q_cov, n_samples=50_000, generator=torch.Generator().manual_seed(4)
    )
    assert torch.all((model.elbo(x, q_mean, q_cov) - estimate).abs() < 4 * stderr)


def test_log_evidence_is_elbo_plus_kl_to_posterior(model_and_data):
    model, x = model_and_data
    post_mean, post_cov = model.posterior(x)
    for seed in range(3):
        q_mean, q_cov = random_q(len(x), model.latent_dim, seed=10 + seed)
        elbo = model.elbo(x, q_mean, q_cov)
        gap = gaussians.kl_multivariate(q_mean, q_cov, post_mean, post_cov)
        assert torch.all(elbo < model.log_evidence(x))
        assert torch.allclose(elbo + gap, model.log_evidence(x))
    assert torch.allclose(
        model.elbo(x, post_mean, post_cov), model.log_evidence(x)
    )  # tight at the posterior


def test_mean_field_posterior_is_the_best_diagonal_q_and_leaves_a_gap(model_and_data):
    model, x = model_and_data
    mf_mean, mf_cov = model.mean_field_posterior(x)
    assert torch.equal(mf_cov, torch.diag(mf_cov.diagonal()))
    best = model.elbo(x, mf_mean, mf_cov)
    assert torch.all(
        best < model.log_evidence(x) - 1e-6
    )  # random W: correlated posterior, a gap remains
    g = torch.Generator().manual_seed(5)
    for _ in range(5):  # any other diagonal q does worse
        mean = mf_mean + 0.1 * torch.randn(
            mf_mean.shape, generator=g, dtype=torch.float64
        )
        cov = torch.diag(
            mf_cov.diagonal()
            * torch.exp(
                0.3 * torch.randn(model.latent_dim, generator=g, dtype=torch.float64)
            )
        )
        assert torch.all(model.elbo(x, mean, cov) < best)
    # gradient ascent over diagonal q reaches it; over full q, the posterior
    trace, _, _ = model.fit_q(x, diagonal=True, steps=250, lr=0.05)
    assert torch.allclose(trace[-1], best, atol=1e-3)
    trace, _, fitted_cov = model.fit_q(x, diagonal=False, steps=250, lr=0.05)
    assert torch.allclose(trace[-1], model.log_evidence(x), atol=1e-3)
    assert torch.allclose(
        fitted_cov, model.posterior(x)[1].expand_as(fitted_cov), atol=1e-2
    )


def test_orthogonal_loadings_give_a_diagonal_posterior():
    W = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    model = LinearGaussian(W, torch.zeros(3, dtype=torch.float64), 0.5)
    x, _ = model.sample(4, generator=torch.Generator().manual_seed(6))
    assert torch.allclose(
        model.elbo(x, *model.mean_field_posterior(x)), model.log_evidence(x)
    )


def test_bad_inputs_give_clear_errors(model_and_data):
    model, x = model_and_data
    W = model.W
    with pytest.raises(ValueError, match=r"W must have shape \(D, k\)"):
        LinearGaussian(W[0], model.b, 0.5)
    with pytest.raises(ValueError, match="b must have shape"):
        LinearGaussian(W, model.b[:2], 0.5)
    with pytest.raises(
        ValueError,
        match=r"s \(the decoder's standard deviation\) must lie in \(0, inf\]",
    ):
        LinearGaussian(W, model.b, 0.0)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 5\)"):
        model.log_evidence(x[:, :3])
    mean, cov = model.posterior(x)
    with pytest.raises(ValueError, match="q_mean must have shape"):
        model.elbo(x, mean[:2], cov)
    with pytest.raises(ValueError, match="q_cov must have shape"):
        model.elbo(x, mean, cov[:2, :2])
