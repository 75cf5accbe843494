import math

import pytest
import torch

from oldschool import autoencoders, gaussians


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


def test_ae_loss_is_the_gaussian_nll():
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    x_hat = torch.rand(6, 1, 8, 8) * 2 - 1
    sigma = 0.4
    loss, parts = autoencoders.ae_loss(x, x_hat, sigma=sigma)
    mse = (x - x_hat).pow(2).flatten(1).sum(1)
    expected = mse / (2 * sigma**2) + 64 * math.log(sigma) + 32 * math.log(2 * math.pi)
    assert torch.allclose(loss, expected.mean()) and torch.allclose(
        parts["mse"], mse.mean()
    )


def test_vae_loss_adds_beta_times_kl():
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    x_hat = torch.rand(6, 1, 8, 8) * 2 - 1
    q = gaussians.DiagonalGaussian(torch.randn(6, 2), torch.randn(6, 2))
    loss1, parts = autoencoders.vae_loss(x, x_hat, q, beta=1.0)
    loss3, _ = autoencoders.vae_loss(x, x_hat, q, beta=3.0)
    assert torch.allclose(loss3 - loss1, 2 * parts["kl"])
    assert torch.allclose(
        parts["kl"], gaussians.kl_standard_normal(q.mean, q.logvar).mean()
    )


def test_bad_inputs_are_named():
    model = autoencoders.AE((1, 8, 8), latent_dim=2, hidden=16)
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 1, 8, 8\)"):
        model(torch.zeros(3, 64))
    with pytest.raises(ValueError, match=r"expected latents of shape \(B, 2\)"):
        model.decode(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="image_shape must be"):
        autoencoders.AE((8, 8))
    with pytest.raises(ValueError, match="sigma must be positive"):
        autoencoders.ae_loss(torch.zeros(2, 1), torch.zeros(2, 1), sigma=0.0)
    with pytest.raises(ValueError, match="shapes differ"):
        autoencoders.ae_loss(torch.zeros(2, 1), torch.zeros(2, 2))
    with pytest.raises(TypeError, match="DiagonalGaussian"):
        autoencoders.vae_loss(
            torch.zeros(2, 1), torch.zeros(2, 1), (torch.zeros(2), torch.zeros(2))
        )
