"""Distances between data: PSNR and SSIM for images in [-1, 1] (the SD3 VAE table's), and
the sliced Wasserstein distance between point clouds (chapters 4-6 and 8).

PSNR = 10 log10(data_range^2 / MSE) per image, with data_range = 2 for [-1, 1]. SSIM is
scikit-image's ``structural_similarity`` (Wang et al. 2004, Gaussian-free 7x7 window),
computed per image over the colour channels. LPIPS lives in :mod:`oldschool.perceptual`.
"""

import torch

from . import checks

DATA_RANGE = 2.0  # images live in [-1, 1]


def psnr(x, y):
    """Peak signal-to-noise ratio in dB per image, (B,), for images in [-1, 1]."""
    checks.tensor(x, "x", shape=("B", "C", "H", "W"))
    checks.tensor(y, "y", shape=tuple(x.shape))
    mse = (x.detach().double() - y.detach().double()).pow(2).flatten(1).mean(1)  # (B,)
    return (10.0 * torch.log10(DATA_RANGE**2 / mse)).float()


def ssim(x, y):
    """Structural similarity per image, (B,), by scikit-image, for images in [-1, 1]."""
    from skimage.metrics import structural_similarity

    checks.tensor(x, "x", shape=("B", "C", "H", "W"))
    checks.tensor(y, "y", shape=tuple(x.shape))
    if min(x.shape[-2:]) < 7:
        raise ValueError(
            "SSIM's 7x7 window needs images of at least 7x7 pixels, "
            f"got {tuple(x.shape[-2:])}"
        )
    a = x.detach().double().cpu().permute(0, 2, 3, 1).numpy()  # (B, H, W, C)
    b = y.detach().double().cpu().permute(0, 2, 3, 1).numpy()
    values = [
        structural_similarity(ai, bi, data_range=DATA_RANGE, channel_axis=-1)
        for ai, bi in zip(a, b)
    ]
    return torch.tensor(values, dtype=torch.float32)


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
    checks.tensor(x, "x", shape=("B", "D"))
    checks.tensor(y, "y (the same shape as x)", shape=tuple(x.shape))
    directions = torch.randn(
        x.shape[1], num_projections, generator=generator, dtype=torch.float64
    )
    directions = directions / directions.norm(dim=0, keepdim=True)  # (D, P)
    px = (x.double() @ directions.to(x.device)).sort(dim=0).values  # (B, P)
    py = (y.double() @ directions.to(y.device)).sort(dim=0).values
    return ((px - py) ** 2).mean().sqrt().item()
