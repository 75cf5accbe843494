"""oldschool.autoencoders: the three models, their losses, and chapter 2's measurements
(ELBO, importance-sampled and grid log p(x), fitted posteriors, latent usage)."""

import functools
import math

import pytest
import torch

from oldschool import autoencoders, data, gaussians, seeds


@pytest.mark.parametrize(
    "cls", [autoencoders.AE, autoencoders.StochasticAE, autoencoders.VAE]
)
def test_shapes_and_range(cls):
    model = cls((1, 8, 8), latent_dim=3, hidden=32)
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    out = model(x)
    x_hat = out[0] if isinstance(out, tuple) else out
    assert x_hat.shape == x.shape and x_hat.abs().max() <= 1


def test_stochastic_encoder_is_a_reparameterized_gaussian():
    model = autoencoders.StochasticAE((1, 8, 8), latent_dim=2, hidden=16)
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    q = model.encode(x)
    assert isinstance(q, gaussians.DiagonalGaussian) and q.mean.shape == (4, 2)
    x_hat, _ = model(x, generator=torch.Generator().manual_seed(0))
    x_hat.sum().backward()
    # gradients reach the encoder's last layer through z = mu + sigma * eps (eq. (6))
    assert model.encoder[-1].weight.grad.abs().sum() > 0


def test_reconstruction_loss_is_the_gaussian_nll():
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    x_hat = torch.rand(6, 1, 8, 8) * 2 - 1
    sigma = 0.4
    loss, parts = autoencoders.reconstruction_loss(x, x_hat, sigma=sigma)
    mse = (x - x_hat).pow(2).flatten(1).sum(1)
    expected = mse / (2 * sigma**2) + 64 * math.log(sigma) + 32 * math.log(2 * math.pi)
    assert torch.allclose(loss, expected.mean()) and torch.allclose(
        parts["mse"], mse.mean()
    )


def test_negative_elbo_adds_beta_times_kl():
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    x_hat = torch.rand(6, 1, 8, 8) * 2 - 1
    q = gaussians.DiagonalGaussian(torch.randn(6, 2), torch.randn(6, 2))
    loss1, parts = autoencoders.negative_elbo(x, x_hat, q, beta=1.0)
    loss3, _ = autoencoders.negative_elbo(x, x_hat, q, beta=3.0)
    assert torch.allclose(loss3 - loss1, 2 * parts["kl"])
    assert torch.allclose(
        parts["kl"], gaussians.kl_standard_normal(q.mean, q.logvar).mean()
    )


def test_losses_in_the_training_loops_signature():
    """ae_loss, stochastic_ae_loss, vae_loss(model, x) are the tensor losses of the
    model's own output, so train.train takes them as they are."""
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    ae = autoencoders.AE((1, 8, 8), latent_dim=2, hidden=16)
    loss, parts = autoencoders.ae_loss(ae, x, sigma=0.3)
    expected, _ = autoencoders.reconstruction_loss(x, ae(x), sigma=0.3)
    assert torch.equal(loss, expected) and set(parts) == {"nll", "mse"}

    vae = autoencoders.VAE((1, 8, 8), latent_dim=2, hidden=16)
    for name, loss_fn, beta in [
        ("stochastic", autoencoders.stochastic_ae_loss, 0.0),
        ("vae", functools.partial(autoencoders.vae_loss, beta=2.5), 2.5),
    ]:
        torch.manual_seed(0)
        loss, parts = loss_fn(vae, x)
        torch.manual_seed(0)  # the same z ~ q(z|x)
        x_hat, q = vae(x)
        expected, _ = autoencoders.negative_elbo(x, x_hat, q, beta=beta)
        assert torch.allclose(loss, expected), name
        assert torch.allclose(parts["encoder_sigma"], q.std.mean()), name
    assert torch.allclose(parts["kl"], q.kl().mean())


def test_training_loop_takes_the_losses_as_they_are(one_thread):
    from oldschool import train

    x = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for model_class, loss_fn in [
        (autoencoders.AE, autoencoders.ae_loss),
        (autoencoders.StochasticAE, autoencoders.stochastic_ae_loss),
        (autoencoders.VAE, functools.partial(autoencoders.vae_loss, beta=0.5)),
    ]:
        torch.manual_seed(0)
        model = model_class((1, 4, 4), latent_dim=2, hidden=32)
        history = train.train(
            model, loss_fn, x, steps=150, batch_size=32, lr=3e-3, progress=False
        )
        assert history.final("loss", 20) < history["loss"][0], model_class.__name__


def test_state_dict_keys_are_unchanged_by_the_decoders_name():
    """MLPDecoder was Decoder: the keys a saved AE/VAE holds mean what they meant."""
    keys = set(autoencoders.VAE((1, 8, 8), latent_dim=2, hidden=16).state_dict())
    assert keys == {
        f"{part}.{i}.{p}"
        for part, layers in (("encoder", (0, 2, 4)), ("decoder.net", (0, 2, 4)))
        for i in layers
        for p in ("weight", "bias")
    }


def test_bad_inputs_are_named():
    model = autoencoders.AE((1, 8, 8), latent_dim=2, hidden=16)
    with pytest.raises(
        ValueError, match=r"x must have shape \(B, 1, 8, 8\), got \(3, 64\)"
    ):
        model(torch.zeros(3, 64))
    with pytest.raises(ValueError, match=r"z must have shape \(B, 2\), got \(3, 5\)"):
        model.decode(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="image_shape must be"):
        autoencoders.AE((8, 8))
    with pytest.raises(ValueError, match=r"sigma must lie in \(0, inf\], got 0.0"):
        autoencoders.reconstruction_loss(
            torch.zeros(2, 1), torch.zeros(2, 1), sigma=0.0
        )
    with pytest.raises(
        ValueError, match=r"x_hat must have shape \(2, 1\), got \(2, 2\)"
    ):
        autoencoders.reconstruction_loss(torch.zeros(2, 1), torch.zeros(2, 2))
    with pytest.raises(
        TypeError, match="posterior must be a DiagonalGaussian, got tuple"
    ):
        autoencoders.negative_elbo(
            torch.zeros(2, 1), torch.zeros(2, 1), (torch.zeros(2), torch.zeros(2))
        )


# chapter 2's measurements on a trained VAE -----------------------------------------


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
        loss, parts = autoencoders.negative_elbo(x[:1], x_hat, q, sigma=0.5)
    assert torch.allclose(one, -loss.unsqueeze(0))


def test_importance_estimate_is_the_elbo_for_one_sample_on_average(tiny_vae):
    model, x = tiny_vae
    g = torch.Generator().manual_seed(5)
    n = 20_000  # each copy of x gets its own single sample
    draws = autoencoders.importance_log_likelihood(
        model, x.repeat(n, 1, 1, 1), sigma=0.5, n_samples=1, generator=g
    )
    draws = draws.view(n, len(x))
    # K = 1 importance weights against one-sample ELBOs: two independent estimates of
    # the same mean
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
    with pytest.raises(ValueError, match=r"sigma must lie in \(0, inf\], got -1.0"):
        autoencoders.importance_log_likelihood(model, x, sigma=-1.0)
    with pytest.raises(ValueError, match=r"n_samples must lie in \[1, inf\], got 0"):
        autoencoders.importance_log_likelihood(model, x, n_samples=0)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 2, 2\)"):
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


# The chapters' checks, shown failing on broken input (see book/checks.md) ---------


def test_ch1_training_check_fails_on_an_untrained_model():
    images = data.digits()
    baseline = (images - images.mean(0)).pow(2).flatten(1).sum(1).mean().item()
    torch.manual_seed(0)
    untrained = autoencoders.AE(tuple(images.shape[1:]), latent_dim=2, hidden=64)
    with torch.no_grad():
        mse = (images - untrained(images)).pow(2).flatten(1).sum(1).mean().item()
    assert (
        not mse < 0.5 * baseline
    )  # the chapter asserts every trained seed passes this


def test_ch2_bound_check_fails_with_a_dropped_factor(tiny_vae):
    """ELBO <= log p(x) (quadrature) holds; it breaks with the 1/(2 sigma^2) dropped
    (eq. (10)'s way)."""
    model, x = tiny_vae
    sigma = 0.2
    log_px = autoencoders.grid_log_likelihood(model, x, sigma, half_width=7.0, n=301)
    g = torch.Generator().manual_seed(2)
    elbo = autoencoders.elbo_per_image(
        model, x, sigma=sigma, n_samples=2000, generator=g
    )
    with torch.no_grad():
        q = model.encode(x)
        squared = torch.stack(
            [
                (x - model.decode(q.sample(generator=g))).pow(2).flatten(1).sum(1)
                for _ in range(2000)
            ]
        ).mean(0)  # E_q ||x - x_hat||^2, (B,)
    dropped = (
        elbo + squared / (2 * sigma**2) - squared
    )  # the squared error not divided by 2 sigma^2
    assert torch.all(elbo < log_px)
    assert not torch.all(dropped < log_px)


def test_ch2_amortization_claim_fails_without_fitting(tiny_vae):
    model, x = tiny_vae
    g = torch.Generator().manual_seed(3)
    fitted = autoencoders.fit_posterior(
        model, x, sigma=0.5, steps=300, n_samples=16, generator=g
    )
    elbo_enc = autoencoders.elbo_per_image(
        model, x, sigma=0.5, n_samples=4000, generator=g
    )
    elbo_fit = autoencoders.elbo_per_image(
        model, x, sigma=0.5, n_samples=4000, generator=g, posterior=fitted
    )
    assert seeds.compare(elbo_fit.tolist(), elbo_enc.tolist()).holds
    unfitted = autoencoders.fit_posterior(
        model, x, sigma=0.5, steps=0, generator=g
    )  # = the encoder
    elbo_unfit = autoencoders.elbo_per_image(
        model, x, sigma=0.5, n_samples=4000, generator=g, posterior=unfitted
    )
    assert not seeds.compare(elbo_unfit.tolist(), elbo_enc.tolist()).holds
