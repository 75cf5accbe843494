"""oldschool.metrics: PSNR and SSIM against scikit-image; the sliced Wasserstein distance on
a shift (its closed form), its fixed default ruler, and chapter 4's sample check
(ch4-sample in book/checks.md) fed a sampler that returns its start (it must fail)."""

import math

import pytest
import torch

from conftest import random_images
from oldschool import metrics, toy


def test_psnr_and_ssim_against_skimage():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    x, y = (
        random_images(3, 24, seed=0),
        random_images(3, 24, seed=1)
        .mul(0.3)
        .add(random_images(3, 24, seed=0).mul(0.7)),
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


def test_sliced_wasserstein():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 2, generator=gen)
    shift = torch.tensor(
        [0.6, 0.8]
    )  # |shift| = 1; averaged over directions, SW2^2 = |shift|^2 / D
    assert metrics.sliced_wasserstein(x, x) == 0.0
    sw = metrics.sliced_wasserstein(x, x + shift, num_projections=500, generator=gen)
    assert abs(sw - 1 / math.sqrt(2)) < 0.03
    with pytest.raises(ValueError, match="same shape"):
        metrics.sliced_wasserstein(x, x[:10])


def test_sliced_wasserstein_default_is_one_seeded_ruler():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(300, 2, generator=gen), torch.randn(300, 2, generator=gen)
    seeded = metrics.sliced_wasserstein(
        x, y, generator=torch.Generator().manual_seed(0)
    )
    assert (
        metrics.sliced_wasserstein(x, y) == seeded == metrics.sliced_wasserstein(x, y)
    )
    other = metrics.sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(1))
    assert other != seeded


def far_from_prior(samples, prior, n=500):
    """ch4-sample: samples nearer the data than the prior by > 5 SE (sliced W2)."""
    fresh = [
        toy.sample_2d("moons", n, generator=torch.Generator().manual_seed(100 + k))
        for k in range(6)
    ]
    g = torch.Generator().manual_seed(9)
    gap = torch.tensor(
        [
            metrics.sliced_wasserstein(prior, f, generator=g)
            - metrics.sliced_wasserstein(samples, f, generator=g)
            for f in fresh
        ]
    )
    return bool(gap.mean() > 5 * gap.std() / math.sqrt(len(gap)))


def test_ch4_sample_check_fails_when_the_sampler_returns_its_start():
    prior = torch.randn(500, 2, generator=torch.Generator().manual_seed(6))
    good = toy.sample_2d("moons", 500, generator=torch.Generator().manual_seed(7))
    assert far_from_prior(good, prior)
    assert not far_from_prior(
        torch.randn(500, 2, generator=torch.Generator().manual_seed(8)), prior
    )
