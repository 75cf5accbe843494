"""oldschool.distortions: chapter 3's three distortions of equal mean squared error."""

import pytest
import torch

from oldschool import data, distortions


def test_the_three_distortions_have_the_shifts_mse():
    photo = data.photo("astronaut")
    g = torch.Generator().manual_seed(0)
    images, strengths = distortions.equal_mse_distortions(
        photo, 100, 150, size=64, generator=g
    )
    x = images["original"]
    assert x.shape == (1, 3, 64, 64)
    assert torch.equal(images["shift"], photo[..., 100:164, 152:216])
    mse = {
        k: (x - y).pow(2).mean().item() for k, y in images.items() if k != "original"
    }
    assert mse["blur"] == pytest.approx(mse["shift"], rel=0.01)
    assert mse["noise"] == pytest.approx(mse["shift"], rel=0.01)
    assert strengths["blur"] > 0.05 and 0 < strengths["noise"] < 2
    blurred = distortions.gaussian_blur(x, strengths["blur"])
    assert torch.equal(images["blur"], blurred)


def test_blur_keeps_a_constant_image_and_its_sum():
    x = torch.full((1, 2, 9, 9), 0.3)
    assert torch.allclose(distortions.gaussian_blur(x, 1.5), x)
    spike = torch.zeros(1, 1, 21, 21)
    spike[..., 10, 10] = 1.0
    blurred = distortions.gaussian_blur(spike, 2.0)
    assert blurred.sum().item() == pytest.approx(1.0, rel=1e-5)
    assert blurred[..., 10, 10] < 0.1  # spread out, not a no-op


def test_bad_inputs_are_named():
    photo = data.photo("astronaut")
    with pytest.raises(ValueError, match="leaves the photo"):
        distortions.equal_mse_distortions(photo, 0, photo.shape[-1] - 10, size=16)
    with pytest.raises(ValueError, match="sigma must lie in"):
        distortions.gaussian_blur(photo, 0.0)
    with pytest.raises(ValueError, match=r"photo must have shape \(1, C, H, W\)"):
        distortions.equal_mse_distortions(photo[0], 0, 0, size=16)
