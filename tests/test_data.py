import sys

import pytest
import torch

from oldschool import data


def test_digits_are_in_unit_range_with_labels():
    images, labels = data.digits(return_labels=True)
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    assert images.min() == -1.0 and images.max() == 1.0
    assert labels.shape == (1797,) and set(labels.tolist()) == set(range(10))


def test_faces_and_photos():
    faces, labels = data.faces(return_labels=True)
    assert faces.shape == (200, 1, 25, 25) and faces.min() >= -1 and faces.max() <= 1
    assert labels.sum() == 100
    for name in data.PHOTOS:
        photo = data.photo(name)
        assert photo.dim() == 4 and photo.shape[:2] == (1, 3)
        assert photo.min() >= -1 and photo.max() <= 1 and photo.std() > 0.1


def test_photo_patches_are_reproducible_crops():
    a = data.photo_patches(32, 6, generator=torch.Generator().manual_seed(0))
    b = data.photo_patches(32, 6, generator=torch.Generator().manual_seed(0))
    assert a.shape == (6, 3, 32, 32) and torch.equal(a, b)
    full = data.photo("astronaut")[0]
    # the first crop comes from the astronaut: find where its top-left pixel occurs, then compare
    candidates = (full == a[0][:, :1, :1]).all(0).nonzero().tolist()
    assert any(
        torch.equal(full[:, i : i + 32, j : j + 32], a[0]) for i, j in candidates
    )


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="photo name must be one of .*got 'eagle'"):
        data.photo("eagle")
    with pytest.raises(ValueError, match=r"size must lie in \[1, inf\], got 0"):
        data.photo_patches(0, 3)
    with pytest.raises(ValueError, match="larger than photo"):
        data.photo_patches(1000, 1)
    with pytest.raises(ValueError, match="outside the stated"):
        data.to_unit_range(torch.tensor([0.0, 2.0]), 0.0, 1.0)


def test_unit_range_round_trip():
    x = torch.rand(5, 3) * 16
    y = data.to_unit_range(x, 0.0, 16.0)
    assert torch.allclose(data.from_unit_range(y), x / 16)


def test_digit_images_resized_with_labels():
    x, labels, source = data.digit_images(16)
    assert (
        source == "sklearn" and x.shape == (1797, 1, 16, 16) and labels.shape == (1797,)
    )
    assert x.min() >= -1 and x.max() <= 1
    small = torch.nn.functional.avg_pool2d(
        x, 2
    )  # back to 8x8: a blurred copy of each original
    own = (small - data.digits()).abs().mean()
    other = (
        (small - data.digits().roll(1, dims=0)).abs().mean()
    )  # control: the neighbouring digit
    assert own < 0.5 * other


def test_digit_images_fall_back_loudly_without_torchvision(monkeypatch, capsys):
    monkeypatch.setitem(
        sys.modules, "torchvision.datasets", None
    )  # makes the import fail
    x, labels, source = data.digit_images(12, source="mnist")
    assert source == "sklearn" and x.shape == (1797, 1, 12, 12)
    assert "FALLING BACK" in capsys.readouterr().out
    with pytest.raises(ValueError, match="source must be one of .*got 'cifar'"):
        data.digit_images(12, source="cifar")
