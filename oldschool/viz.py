"""Figures the chapters share: image grids, latent scatters, loss curves.

Every function draws on a matplotlib ``Axes`` (made for you when ``ax`` is None)
and returns it, so a chapter can compose panels with ``plt.subplots``.
"""

import math

import matplotlib.pyplot as plt
import torch

from . import checks
from .data import from_unit_range


def _axes(ax, figsize=(4, 4)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def make_grid(images, nrow=8, pad=1, pad_value=1.0):
    """Tile (N, C, H, W) images in [-1, 1] into one (H', W', C) array in [0, 1].

    The array ``imshow`` takes.
    """
    checks.tensor(images, "images", shape=("N", "C", "H", "W"))
    checks.one_of(images.shape[1], "the number of channels C", (1, 3))
    images = from_unit_range(images.detach().float().cpu())
    n, c, h, w = images.shape
    ncol = min(nrow, n)
    nrows = math.ceil(n / ncol)
    grid = torch.full((c, nrows * (h + pad) + pad, ncol * (w + pad) + pad), pad_value)
    for i in range(n):
        top, left = pad + (i // ncol) * (h + pad), pad + (i % ncol) * (w + pad)
        grid[:, top : top + h, left : left + w] = images[i]
    return grid.permute(1, 2, 0).squeeze(-1).numpy()  # (H', W') or (H', W', 3)


def show_images(images, nrow=8, ax=None, title=None):
    """Show a grid of (N, C, H, W) images in [-1, 1]."""
    ax = _axes(ax)
    ax.imshow(
        make_grid(images, nrow=nrow),
        cmap="gray",
        vmin=0.0,
        vmax=1.0,
        interpolation="nearest",
    )
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def latent_scatter(z, labels=None, ax=None, title=None, s=4):
    """Scatter 2-D latents (N, 2), coloured by integer labels when given."""
    checks.tensor(z, "z (2-D latents)", shape=("N", 2))
    ax = _axes(ax)
    z = z.detach().float().cpu()
    if labels is None:
        ax.scatter(z[:, 0], z[:, 1], s=s, alpha=0.6)
    else:
        points = ax.scatter(
            z[:, 0],
            z[:, 1],
            c=labels.cpu(),
            cmap="tab10",
            s=s,
            alpha=0.8,
            vmin=-0.5,
            vmax=9.5,
        )
        ax.figure.colorbar(points, ax=ax, ticks=range(10), fraction=0.046)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_aspect("equal", adjustable="datalim")
    if title:
        ax.set_title(title)
    return ax


def plot_history(history, names=None, ax=None, title=None, smooth=25, logy=False):
    """Plot named loss parts of a ``train.History`` against the step.

    Each curve is a moving average over ``smooth`` steps.
    """
    ax = _axes(ax, figsize=(5, 3))
    names = list(history.keys()) if names is None else names
    for name in names:
        values = torch.tensor(history[name], dtype=torch.float64)
        if smooth > 1 and len(values) >= smooth:
            values = values.unfold(0, smooth, 1).mean(1)
        ax.plot(range(len(values)), values, label=name)
    ax.set_xlabel("step")
    if logy:
        ax.set_yscale("log")
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def decoded_manifold(decode, lo=-3.0, hi=3.0, n=12, ax=None, title=None, device="cpu"):
    """Decode an n x n grid of 2-D latents in [lo, hi]^2 (on ``device``); show them."""
    ax = _axes(ax, figsize=(5, 5))
    axis = torch.linspace(lo, hi, n)
    z = torch.stack(torch.meshgrid(axis.flip(0), axis, indexing="ij"), dim=-1).view(
        -1, 2
    )  # (n*n, 2)
    z = z[:, [1, 0]]  # x runs along columns, y up the rows
    with torch.no_grad():
        images = decode(z.to(device))
    show_images(images, nrow=n, ax=ax, title=title)
    return ax
