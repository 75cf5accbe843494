"""Image-reconstruction metrics: PSNR and SSIM for images in [-1, 1] (the SD3 VAE ablation's columns).

PSNR = 10 log10(data_range^2 / MSE) per image, with data_range = 2 for [-1, 1]. SSIM is
scikit-image's ``structural_similarity`` (Wang et al. 2004, Gaussian-free 7x7 window),
computed per image over the colour channels. LPIPS lives in :mod:`oldschool.perceptual`.
"""

import torch

DATA_RANGE = 2.0  # images live in [-1, 1]


def _check_pair(x, y):
    for name, images in (("x", x), ("y", y)):
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            shape = (
                tuple(images.shape)
                if isinstance(images, torch.Tensor)
                else type(images).__name__
            )
            raise ValueError(f"{name} must be images (B, C, H, W), got {shape}")
    if x.shape != y.shape:
        raise ValueError(f"x and y shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")


def psnr(x, y):
    """Peak signal-to-noise ratio in dB per image, (B,), for images in [-1, 1]."""
    _check_pair(x, y)
    mse = (x.detach().double() - y.detach().double()).pow(2).flatten(1).mean(1)  # (B,)
    return (10.0 * torch.log10(DATA_RANGE**2 / mse)).float()


def ssim(x, y):
    """Structural similarity per image, (B,), by scikit-image, for images in [-1, 1]."""
    from skimage.metrics import structural_similarity

    _check_pair(x, y)
    if min(x.shape[-2:]) < 7:
        raise ValueError(
            f"SSIM's 7x7 window needs images of at least 7x7 pixels, got {tuple(x.shape[-2:])}"
        )
    a = x.detach().double().cpu().permute(0, 2, 3, 1).numpy()  # (B, H, W, C)
    b = y.detach().double().cpu().permute(0, 2, 3, 1).numpy()
    values = [
        structural_similarity(ai, bi, data_range=DATA_RANGE, channel_axis=-1)
        for ai, bi in zip(a, b)
    ]
    return torch.tensor(values, dtype=torch.float32)


def gaussian_blur(x, sigma):
    """Blur images (B, C, H, W) with a Gaussian of standard deviation ``sigma`` pixels (reflect padding)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    radius = max(1, int(3 * sigma + 0.5))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()  # (2r+1,), separable: blur rows, then columns
    C = x.shape[1]
    padded = torch.nn.functional.pad(
        x, (radius, radius, radius, radius), mode="reflect"
    )
    rows = torch.nn.functional.conv2d(
        padded, kernel.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C
    )
    return torch.nn.functional.conv2d(
        rows, kernel.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C
    )


def add_noise(x, sigma, generator=None):
    """x + sigma * eps, eps ~ N(0, I), clamped back into [-1, 1]."""
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return (x + sigma * eps).clamp(-1.0, 1.0)


def _bisect(f, target, lo, hi, iterations=40):
    """The s in [lo, hi] with f(s) = target, for f increasing in s."""
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
    return 0.5 * (lo + hi)


def equal_mse_distortions(photo, top, left, size, shift=2, generator=None):
    """A crop of ``photo`` (1, C, H, W) and three distortions of it with the same mean squared error.

    "shift": the crop taken ``shift`` pixels further right; "blur" and "noise": Gaussian blur
    and additive Gaussian noise whose strengths are found by bisection so that their MSE to
    the crop equals the shifted crop's. Returns (images dict, strengths dict).
    """
    if left + shift + size > photo.shape[-1] or top + size > photo.shape[-2]:
        raise ValueError(
            f"a {size}x{size} crop at ({top}, {left}) shifted by {shift} leaves the photo {tuple(photo.shape[-2:])}"
        )
    x = photo[..., top : top + size, left : left + size]
    shifted = photo[..., top : top + size, left + shift : left + shift + size]
    mse = lambda y: float((x - y).pow(2).mean())
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
                f"{kind} cannot reach the shift's MSE {target:.4g} on this crop; pick a crop with more texture"
            )
    return images, {"blur": blur_sigma, "noise": noise_sigma, "shift": shift}


# ------------------------------------------ point clouds (chapters 4-6 and 8)


def sliced_wasserstein(x, y, num_projections=256, generator=None):
    """Sliced 2-Wasserstein distance between two equal-size point clouds (B, D).

    Projects both clouds on random unit directions, where W2 is the distance between the
    sorted projections, and averages the squared distances over directions. Without a
    ``generator`` the directions are those of seed 0, the same on every call, so that
    distances computed in different cells are measured with one ruler (Rabin et al.
    2011; Bonneel et al. 2015).
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    if x.dim() != 2 or x.shape != y.shape:
        raise ValueError(
            "need two point clouds of the same shape (B, D), got "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    directions = torch.randn(
        x.shape[1], num_projections, generator=generator, dtype=torch.float64
    )
    directions = directions / directions.norm(dim=0, keepdim=True)  # (D, P)
    px = (x.double() @ directions.to(x.device)).sort(dim=0).values  # (B, P)
    py = (y.double() @ directions.to(y.device)).sort(dim=0).values
    return ((px - py) ** 2).mean().sqrt().item()
