"""metrics.sliced_wasserstein (the point-cloud distance of chapters 4-6 and 8): its
closed form on a shift, its fixed default ruler, and chapter 4's sample check
(ch4-sample in book/checks.md) fed a sampler that returns its start (it must fail)."""

import math

import pytest
import torch

from oldschool import metrics, toy


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
