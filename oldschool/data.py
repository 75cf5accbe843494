"""The data sets the book trains on, all shipped inside pip packages: nothing downloads
(except MNIST, and only when a chapter asks for it in GPU mode).

* ``digits()``: scikit-learn's 1,797 handwritten digits, 8x8 grey levels 0..16.
* ``faces()``: scikit-image's LFW subset, 200 faces (100 faces, 100 non-faces), 25x25.
* ``photo(name)`` / ``photo_patches(...)``: scikit-image's bundled colour photos.
* ``digit_images(size, source)``: labelled digits resized to size x size; on Colab,
  MNIST (torchvision's download) when asked and reachable, else the shipped digits,
  said aloud.

Every image tensor is float32, shaped (N, C, H, W), with values in [-1, 1].
"""

import os

import numpy as np
import torch
import torch.nn.functional as F

from . import checks

# scikit-image's colour photos inside the wheel (others need pooch and a network)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def to_unit_range(images, lo, hi):
    """Map values in [lo, hi] linearly to [-1, 1]; refuse values outside [lo, hi]."""
    images = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if images.min() < lo or images.max() > hi:
        raise ValueError(
            f"values span [{images.min():.3g}, {images.max():.3g}], outside the "
            f"stated [{lo}, {hi}]"
        )
    return 2.0 * (images - lo) / (hi - lo) - 1.0


def from_unit_range(images):
    """[-1, 1] -> [0, 1] for plotting, clamped (model outputs may overshoot)."""
    return ((images + 1.0) / 2.0).clamp(0.0, 1.0)


def digits(return_labels=False):
    """scikit-learn's digits, a (1797, 1, 8, 8) tensor in [-1, 1] (and labels 0..9)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = to_unit_range(bunch.images, 0.0, 16.0).unsqueeze(1)  # (1797, 1, 8, 8)
    if return_labels:
        return images, torch.as_tensor(bunch.target, dtype=torch.long)
    return images


def faces(return_labels=False):
    """scikit-image's LFW subset as a (200, 1, 25, 25) tensor in [-1, 1].

    The first 100 images are faces (label 1), the last 100 are not (label 0).
    """
    from skimage.data import lfw_subset

    images = to_unit_range(lfw_subset(), 0.0, 1.0).unsqueeze(1)  # (200, 1, 25, 25)
    if return_labels:
        labels = torch.cat(
            [torch.ones(100, dtype=torch.long), torch.zeros(100, dtype=torch.long)]
        )
        return images, labels
    return images


def photo(name):
    """One of scikit-image's bundled colour photos, a (1, 3, H, W) tensor in [-1, 1]."""
    checks.one_of(name, "photo name", PHOTOS)
    import skimage.data

    array = getattr(skimage.data, name)()  # (H, W, 3) uint8
    return to_unit_range(array, 0, 255).permute(2, 0, 1).unsqueeze(0)


def photo_patches(size, n, names=PHOTOS, generator=None):
    """``n`` random ``size`` x ``size`` crops of the bundled photos, (n, 3, size, size).

    Values in [-1, 1]; crop i comes from photo ``names[i % len(names)]``.
    """
    checks.number(size, "size", low=1, integer=True)
    checks.number(n, "n", low=1, integer=True)
    images = [photo(name)[0] for name in names]
    crops = []
    for i in range(n):
        image = images[i % len(images)]
        _, h, w = image.shape
        if size > min(h, w):
            raise ValueError(
                f"size {size} is larger than photo {names[i % len(names)]!r} ({h}x{w})"
            )
        top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
        crops.append(image[:, top : top + size, left : left + size])
    return torch.stack(crops)


DIGIT_SOURCES = ("sklearn", "mnist")


def digit_images(size, source="sklearn", root="~/.cache/oldschool"):
    """Labelled digits at ``size`` x ``size`` in [-1, 1]: (images, labels, source).

    images (N, 1, size, size), labels (N,). source="sklearn": scikit-learn's 1,797 8x8
    digits, resized bilinearly (shipped; offline). source="mnist": torchvision's 60,000
    MNIST training digits (28x28, downloaded into ``root`` once), resized bilinearly.
    When torchvision is missing or the download fails, it prints why, loudly, and
    returns the scikit-learn digits. The third value names the source actually used.
    """
    checks.number(size, "size", low=1, integer=True)
    checks.one_of(source, "source", DIGIT_SOURCES)
    if source == "mnist":
        try:
            from torchvision.datasets import MNIST

            mnist = MNIST(os.path.expanduser(root), train=True, download=True)
            images = to_unit_range(mnist.data.numpy(), 0, 255)[
                :, None
            ]  # (60000, 1, ...)
            labels = mnist.targets.long()
        except Exception as error:  # no torchvision, no network, a broken mirror
            print(
                f"MNIST IS NOT AVAILABLE ({type(error).__name__}: {error}).\n"
                "  FALLING BACK to scikit-learn's 1,797 8x8 digits, resized: the "
                "numbers below are for those."
            )
            source = "sklearn"
    if source == "sklearn":
        images, labels = digits(return_labels=True)  # (1797, 1, 8, 8)
    if images.shape[-1] != size:
        images = F.interpolate(
            images,
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
    return images.clamp(-1.0, 1.0), labels, source
