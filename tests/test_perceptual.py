"""oldschool.perceptual: the LPIPS wrapper, its random trunk and its checks."""

import warnings

import pytest
import torch

from conftest import random_images
from oldschool import perceptual


def test_lpips_is_a_distance_like_function(random_lpips):
    x, y = random_images(seed=0), random_images(seed=1)
    d_xy, d_xx = random_lpips(x, y), random_lpips(x, x)
    assert (
        d_xy.shape == (2,)
        and torch.all(d_xy > 0)
        and torch.allclose(d_xx, torch.zeros(2), atol=1e-7)
    )
    assert torch.allclose(random_lpips(y, x), d_xy, rtol=1e-5)
    assert "random" in random_lpips.describe()


def test_random_trunk_is_reproducible_from_its_seed():
    x, y = random_images(seed=0), random_images(seed=1)
    a = perceptual.LPIPS("alex", pretrained_backbone=False, seed=3)(x, y)
    b = perceptual.LPIPS("alex", pretrained_backbone=False, seed=3)(x, y)
    assert torch.equal(a, b)


def test_building_emits_no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        perceptual.LPIPS("alex", pretrained_backbone=False)


def test_lpips_validates_range_and_shape(random_lpips):
    x = random_images()
    with pytest.raises(ValueError, match=r"values in \[-1, 1\]; y spans"):
        random_lpips(x, 1.5 * x.abs() + 0.1)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 3, H, W\)"):
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
