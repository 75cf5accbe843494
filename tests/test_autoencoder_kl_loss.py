"""oldschool.autoencoder_kl_loss: notes eq. (11) as latent diffusion computes it."""

import math

import pytest
import torch

from conftest import random_images
from oldschool import autoencoder_kl, autoencoder_kl_loss
from oldschool.gaussians import DiagonalGaussian


def test_kl_autoencoder_loss_matches_its_formula(random_lpips):
    x = random_images(seed=0)
    x_hat = 0.9 * x
    g = torch.Generator().manual_seed(5)
    q = DiagonalGaussian(
        torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    )
    criterion = autoencoder_kl_loss.KLAutoencoderLoss(
        random_lpips, perceptual_weight=0.5, kl_weight=1e-3, logvar_init=0.3
    )
    loss, parts = criterion(x, x_hat, q)
    d = random_lpips(x, x_hat)
    rec = (x - x_hat).abs() + 0.5 * d[:, None, None, None]
    nll = (rec / math.exp(0.3) + 0.3).sum(dim=(1, 2, 3))
    expected = (nll + 1e-3 * q.kl()).mean()
    assert torch.allclose(loss, expected, rtol=1e-6)
    assert parts["kl_per_element"] == pytest.approx(float(q.kl().mean()) / 64, rel=1e-6)
    loss.backward()
    assert criterion.logvar.grad is not None  # the scale is learned


def test_kl_autoencoder_loss_arguments():
    with pytest.raises(ValueError, match="needs an LPIPS module"):
        autoencoder_kl_loss.KLAutoencoderLoss(None, perceptual_weight=1.0)
    criterion = autoencoder_kl_loss.KLAutoencoderLoss(None, perceptual_weight=0.0)
    with pytest.raises(TypeError, match="DiagonalGaussian"):
        criterion(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), None)


def test_training_loss_is_the_criterion_of_the_vaes_reconstruction():
    """train.train's signature: the same (loss, parts) as calling the pieces by hand."""
    torch.manual_seed(0)
    vae = autoencoder_kl.small_vae(4, (8, 8), 1, 4)
    criterion = autoencoder_kl_loss.KLAutoencoderLoss(None, 0.0, 1e-3)
    model = torch.nn.ModuleDict({"vae": vae, "loss": criterion})
    x = random_images(2, 8, seed=3)
    torch.manual_seed(1)
    loss, parts = autoencoder_kl_loss.training_loss(model, x)
    torch.manual_seed(1)
    x_hat, q = vae(x)
    expected, _ = criterion(x, x_hat, q)
    assert torch.equal(loss, expected)
    loss.backward()
    assert criterion.logvar.grad is not None and vae.encoder.conv_in.weight.grad.any()
    with torch.no_grad():
        torch.manual_seed(1)
        other = autoencoder_kl_loss.training_loss(model, -x)[0]
    assert not torch.equal(other, loss)  # the loss reads the batch it is given


def test_x_hat_of_another_shape_is_refused():
    criterion = autoencoder_kl_loss.KLAutoencoderLoss(None, perceptual_weight=0.0)
    q = DiagonalGaussian(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match=r"x_hat must have shape \(1, 3, 8, 8\)"):
        criterion(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 4), q)


def test_ch3_laplace_check_fails_without_the_log_scale_term():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    x_hat = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    q = DiagonalGaussian(
        torch.randn(4, 4, 2, 2, generator=g), torch.randn(4, 4, 2, 2, generator=g)
    )
    _, parts = autoencoder_kl_loss.KLAutoencoderLoss(
        None, perceptual_weight=0.0, logvar_init=-1.3
    )(x, x_hat, q)
    b, D = math.exp(-1.3), x[0].numel()
    laplace = (
        -torch.distributions.Laplace(x_hat, b).log_prob(x).flatten(1).sum(1)
        - D * math.log(2)
    ).mean()
    no_log_b = (
        ((x - x_hat).abs() / b).flatten(1).sum(1).mean()
    )  # the "+ s" term dropped
    assert torch.allclose(parts["nll"], laplace, rtol=1e-5)
    assert not torch.allclose(no_log_b, laplace, rtol=1e-5)
