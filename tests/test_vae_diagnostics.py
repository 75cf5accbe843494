"""oldschool.autoencoders, chapter 2's measurements: ELBO, importance-sampled log p(x), latent usage."""

import math

import pytest
import torch

from oldschool import autoencoders, gaussians


def grid_log_likelihood(model, x, sigma, half_width=7.0, n=401):
    """log int p(x|z) N(z; 0, I) dz by a Riemann sum on a fine 2-D grid (a peer)."""
    axis = torch.linspace(-half_width, half_width, n, dtype=torch.float64)
    z = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).view(
        -1, 2
    )  # (n*n, 2)
    cell = math.log((axis[1] - axis[0]).item() ** 2)
    with torch.no_grad():
        x_hat = model.decode(z)  # (n*n, 1, 2, 2)
    log_prior = -gaussians.gaussian_nll(z, torch.zeros_like(z), 0.0)
    out = []
    for xi in x:
        log_lik = -gaussians.gaussian_nll(
            xi.expand_as(x_hat), x_hat, 2 * math.log(sigma)
        )
        out.append(torch.logsumexp(log_lik + log_prior, 0) + cell)
    return torch.stack(out)


def test_importance_sampling_matches_grid_integration(tiny_vae):
    model, x = tiny_vae
    exact = grid_log_likelihood(model, x, sigma=0.5)
    estimate = autoencoders.importance_log_likelihood(
        model,
        x,
        sigma=0.5,
        n_samples=20_000,
        generator=torch.Generator().manual_seed(2),
    )
    assert estimate.shape == (3,)
    assert torch.allclose(estimate, exact, atol=0.02)


def test_elbo_is_below_log_likelihood_and_matches_vae_loss(tiny_vae):
    model, x = tiny_vae
    exact = grid_log_likelihood(model, x, sigma=0.5)
    elbo = autoencoders.elbo_per_image(
        model, x, sigma=0.5, n_samples=4000, generator=torch.Generator().manual_seed(3)
    )
    assert torch.all(elbo < exact)
    # one sample of elbo_per_image is minus the per-image vae_loss with the same sample
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    one = autoencoders.elbo_per_image(model, x[:1], sigma=0.5, generator=g1)
    with torch.no_grad():
        x_hat, q = model(x[:1], generator=g2)
        loss, parts = autoencoders.vae_loss(x[:1], x_hat, q, sigma=0.5)
    assert torch.allclose(one, -loss.unsqueeze(0))


def test_importance_estimate_is_the_elbo_for_one_sample_on_average(tiny_vae):
    model, x = tiny_vae
    g = torch.Generator().manual_seed(5)
    n = 20_000  # each copy of x gets its own single sample
    draws = autoencoders.importance_log_likelihood(
        model, x.repeat(n, 1, 1, 1), sigma=0.5, n_samples=1, generator=g
    )
    draws = draws.view(n, len(x))
    # K = 1 importance weights against one-sample ELBOs: two independent estimates of the same mean
    elbo = autoencoders.elbo_per_image(
        model, x.repeat(n, 1, 1, 1), sigma=0.5, generator=g
    ).view(n, len(x))
    stderr = (draws.var(0) / n + elbo.var(0) / n).sqrt()
    assert torch.all((draws.mean(0) - elbo.mean(0)).abs() < 4 * stderr)


def test_latent_usage_sees_a_collapsed_coordinate():
    torch.manual_seed(6)
    model = autoencoders.VAE(image_shape=(1, 4, 4), latent_dim=3, hidden=16)
    last = model.encoder[-1]  # outputs (mean_1..3, logvar_1..3)
    with (
        torch.no_grad()
    ):  # coordinate 2: mean 0 and logvar 0 for every x, i.e. q(z_2|x) = N(0, 1)
        for row in (1, 4):
            last.weight[row] = 0.0
            last.bias[row] = 0.0
        last.weight[0] *= 10.0  # coordinate 1 clearly in use
    x = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(7)) * 2 - 1
    usage = autoencoders.latent_usage(model, x)
    assert usage["kl_per_dim"].shape == (3,) and usage["activity"].shape == (3,)
    assert usage["kl_per_dim"][1].abs() < 1e-7 and usage["activity"][1] < 1e-12
    assert (
        usage["activity"][0] > 0.01 and usage["kl_per_dim"][0] > usage["kl_per_dim"][1]
    )
    q = model.encode(x)
    assert torch.allclose(usage["kl_per_dim"].sum(), q.kl().mean(), atol=1e-6)


def test_aggregate_posterior_for_ae_and_vae():
    torch.manual_seed(8)
    x = torch.rand(10, 1, 4, 4) * 2 - 1
    ae = autoencoders.AE(image_shape=(1, 4, 4), latent_dim=2, hidden=8)
    vae = autoencoders.VAE(image_shape=(1, 4, 4), latent_dim=2, hidden=8)
    assert torch.equal(
        autoencoders.aggregate_posterior(ae, x), ae.encode(x)
    )  # an AE's code is deterministic
    z1 = autoencoders.aggregate_posterior(
        vae, x, generator=torch.Generator().manual_seed(9)
    )
    z2 = autoencoders.aggregate_posterior(
        vae, x, generator=torch.Generator().manual_seed(10)
    )
    assert z1.shape == (10, 2) and not torch.equal(
        z1, z2
    )  # a VAE's is a sample of q(z|x)


def test_bad_inputs_give_clear_errors(tiny_vae):
    model, x = tiny_vae
    ae = autoencoders.AE(image_shape=(1, 2, 2), latent_dim=2, hidden=8)
    with pytest.raises(TypeError, match="Gaussian encoder"):
        autoencoders.elbo_per_image(ae, x)
    with pytest.raises(ValueError, match="positive finite"):
        autoencoders.importance_log_likelihood(model, x, sigma=-1.0)
    with pytest.raises(ValueError, match="n_samples must be a positive int"):
        autoencoders.importance_log_likelihood(model, x, n_samples=0)
    with pytest.raises(ValueError, match="expected images of shape"):
        autoencoders.latent_usage(model, x[:, :, :1])


def test_grid_log_likelihood_matches_the_peer(tiny_vae):
    model, x = tiny_vae
    exact = grid_log_likelihood(model, x, sigma=0.5)
    ours = autoencoders.grid_log_likelihood(
        model, x, 0.5, half_width=7.0, n=401, chunk=2
    )
    assert torch.allclose(ours, exact, atol=1e-8)


def test_fitted_posterior_closes_the_amortization_gap(tiny_vae):
    model, x = tiny_vae
    exact = grid_log_likelihood(model, x, sigma=0.5)
    g = torch.Generator().manual_seed(11)
    fitted = autoencoders.fit_posterior(
        model, x, sigma=0.5, steps=300, lr=0.05, n_samples=16, generator=g
    )
    assert all(
        p.requires_grad for p in model.parameters()
    )  # the model is left as it was
    elbo_enc = autoencoders.elbo_per_image(
        model, x, sigma=0.5, n_samples=4000, generator=g
    )
    elbo_fit = autoencoders.elbo_per_image(
        model, x, sigma=0.5, n_samples=4000, generator=g, posterior=fitted
    )
    assert torch.all(
        elbo_fit > elbo_enc + 0.01
    )  # a random encoder leaves a gap; fitting closes it
    assert torch.all(elbo_fit < exact)  # still a bound
    # importance sampling with the fitted q as proposal estimates the same log p(x)
    is_fit = autoencoders.importance_log_likelihood(
        model, x, sigma=0.5, n_samples=20_000, generator=g, proposal=fitted
    )
    assert torch.allclose(is_fit, exact, atol=0.02)


def test_a_broken_importance_weight_is_caught_by_the_grid(tiny_vae, monkeypatch):
    """The chapter's check (IS against quadrature) fails when the weight drops log q."""
    model, x = tiny_vae
    exact = grid_log_likelihood(model, x, sigma=0.5)
    monkeypatch.setattr(
        gaussians.DiagonalGaussian,
        "nll",
        lambda self, z: torch.zeros(z.shape[0], dtype=z.dtype),
    )
    broken = autoencoders.importance_log_likelihood(
        model, x, sigma=0.5, n_samples=5000, generator=torch.Generator().manual_seed(12)
    )
    assert not torch.allclose(broken, exact, atol=0.02)
