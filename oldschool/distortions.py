"""Three distortions of a photo with the same mean squared error (chapter 3).

A crop shifted by two pixels, a blurred crop and a noisy crop can be made equally far
from the original in MSE while they look nothing alike: the experiment behind the
perceptual term of notes eq. (11) (Zhang et al. 2018, "The Unreasonable Effectiveness
of Deep Features as a Perceptual Metric", fig. 1). ``equal_mse_distortions`` finds the
blur and noise strengths by bisection.
"""

import torch
import torch.nn.functional as F

from . import checks


def gaussian_blur(x, sigma):
    """Blur images (B, C, H, W) with a Gaussian of std ``sigma`` pixels (reflect)."""
    checks.number(sigma, "sigma", low=0, low_open=True)
    radius = max(1, int(3 * sigma + 0.5))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()  # (2r+1,), separable: blur rows, then columns
    C = x.shape[1]
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def _bisect(f, target, lo, hi, iterations=40):
    """The s in [lo, hi] with f(s) = target, for f increasing in s."""
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
    return 0.5 * (lo + hi)


def equal_mse_distortions(photo, top, left, size, shift=2, generator=None):
    """A crop of ``photo`` (1, C, H, W) and three distortions of it with equal MSE.

    "shift": the crop taken ``shift`` pixels further right; "blur" and "noise": Gaussian
    blur and additive Gaussian noise whose strengths are found by bisection so that
    their MSE to the crop equals the shifted crop's. Returns (images, strengths), dicts.
    """
    checks.tensor(photo, "photo", shape=(1, "C", "H", "W"))
    if left + shift + size > photo.shape[-1] or top + size > photo.shape[-2]:
        raise ValueError(
            f"a {size}x{size} crop at ({top}, {left}) shifted by {shift} leaves the "
            f"photo {tuple(photo.shape[-2:])}"
        )
    x = photo[..., top : top + size, left : left + size]
    shifted = photo[..., top : top + size, left + shift : left + shift + size]

    def mse(y):
        return float((x - y).pow(2).mean())

    target = mse(shifted)
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    blur_sigma = _bisect(lambda s: mse(gaussian_blur(x, s)), target, 0.05, 20.0)
    noise_sigma = _bisect(lambda s: mse((x + s * eps).clamp(-1, 1)), target, 0.0, 2.0)
    images = {
        "original": x,
        "blur": gaussian_blur(x, blur_sigma),
        "noise": (x + noise_sigma * eps).clamp(-1, 1),
        "shift": shifted,
    }
    for kind in ("blur", "noise"):
        if abs(mse(images[kind]) - target) > 0.01 * target:
            raise ValueError(
                f"{kind} cannot reach the shift's MSE {target:.4g} on this crop; "
                "pick a crop with more texture"
            )
    return images, {"blur": blur_sigma, "noise": noise_sigma, "shift": shift}
