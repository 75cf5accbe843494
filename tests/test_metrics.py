"""oldschool.metrics: PSNR and SSIM against scikit-image."""

import pytest
import torch

from oldschool import metrics


def _images(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


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
    with pytest.raises(ValueError, match=r"y must have shape \(3, 3, 24, 24\)"):
        metrics.psnr(x, y[:2])
    with pytest.raises(ValueError, match=r"x must have shape \(B, C, H, W\)"):
        metrics.ssim(x[0], y[0])
