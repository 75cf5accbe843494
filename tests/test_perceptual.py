"""oldschool.perceptual and oldschool.metrics: LPIPS wrapper, the eq. (11) loss, PSNR and SSIM."""

import math
import warnings

import pytest
import torch

from oldschool import metrics, perceptual
from oldschool.gaussians import DiagonalGaussian


@pytest.fixture(scope="module")
def random_lpips():
    return perceptual.LPIPS("alex", pretrained_backbone=False, seed=0)


def _images(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def test_lpips_is_a_distance_like_function(random_lpips):
    x, y = _images(seed=0), _images(seed=1)
    d_xy, d_xx = random_lpips(x, y), random_lpips(x, x)
    assert (
        d_xy.shape == (2,)
        and torch.all(d_xy > 0)
        and torch.allclose(d_xx, torch.zeros(2), atol=1e-7)
    )
    assert torch.allclose(random_lpips(y, x), d_xy, rtol=1e-5)
    assert "random" in random_lpips.describe()


def test_random_trunk_is_reproducible_from_its_seed():
    x, y = _images(seed=0), _images(seed=1)
    a = perceptual.LPIPS("alex", pretrained_backbone=False, seed=3)(x, y)
    b = perceptual.LPIPS("alex", pretrained_backbone=False, seed=3)(x, y)
    assert torch.equal(a, b)


def test_building_emits_no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        perceptual.LPIPS("alex", pretrained_backbone=False)


def test_lpips_validates_range_and_shape(random_lpips):
    x = _images()
    with pytest.raises(ValueError, match=r"values in \[-1, 1\]; y spans"):
        random_lpips(x, 1.5 * x.abs() + 0.1)
    with pytest.raises(ValueError, match=r"RGB images \(B, 3, H, W\)"):
        random_lpips(x[:, :1], x[:, :1])
    with pytest.raises(ValueError, match="at least 32x32"):
        random_lpips(x[..., :16, :16], x[..., :16, :16])
    assert random_lpips(x, 1.2 * x, check_range=False).shape == (2,)


@pytest.mark.skipif(
    perceptual.trunk_weights_cached("alex"), reason="the ImageNet trunk is cached here"
)
def test_pretrained_without_download_fails_clearly_and_fallback_says_so(capsys):
    with pytest.raises(RuntimeError, match="not cached"):
        perceptual.LPIPS("alex", pretrained_backbone=True, allow_download=False)
    metric = perceptual.lpips_with_fallback("alex", allow_download=False)
    assert not metric.pretrained_backbone
    assert "RANDOM alex trunk" in capsys.readouterr().out


def test_kl_autoencoder_loss_matches_its_formula(random_lpips):
    x = _images(seed=0)
    x_hat = 0.9 * x
    g = torch.Generator().manual_seed(5)
    q = DiagonalGaussian(
        torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    )
    criterion = perceptual.KLAutoencoderLoss(
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
        perceptual.KLAutoencoderLoss(None, perceptual_weight=1.0)
    criterion = perceptual.KLAutoencoderLoss(None, perceptual_weight=0.0)
    with pytest.raises(TypeError, match="DiagonalGaussian"):
        criterion(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), None)


def test_psnr_and_ssim_against_skimage():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    x, y = (
        _images(3, 24, seed=0),
        _images(3, 24, seed=1).mul(0.3).add(_images(3, 24, seed=0).mul(0.7)),
    )
    p, s = metrics.psnr(x, y), metrics.ssim(x, y)
    for i in range(3):
        a, b = (
            x[i].permute(1, 2, 0).double().numpy(),
            y[i].permute(1, 2, 0).double().numpy(),
        )
        assert p[i].item() == pytest.approx(
            peak_signal_noise_ratio(a, b, data_range=2.0), rel=1e-5
        )
        assert s[i].item() == pytest.approx(
            structural_similarity(a, b, data_range=2.0, channel_axis=-1), rel=1e-5
        )
    assert torch.all(metrics.ssim(x, x) > 0.999)
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.psnr(x, y[:2])
