"""Trajectories of the forward and reverse processes: recording, plotting, animations.

Chapters 5 and 6 draw particles moving under an SDE or the probability-flow ODE on top
of the exact marginal density p_t of a ``gaussian_mixture.GaussianMixture``. Coordinates can be
shown *normalized*, x_t / sqrt(alpha(t)^2 + sigma(t)^2): that changes nothing for a VP
SDE (alpha^2 + sigma^2 = 1) and keeps a VE SDE, whose noise grows to sigma_max = 50, on
the same axes as the data.

Animations are ``matplotlib.animation`` objects; ``to_html`` turns one into JavaScript
that plays in the static page (no kernel needed) and closes its figure.
"""

import math

import matplotlib.pyplot as plt
import torch
from matplotlib import animation

from . import samplers


def _axes(ax, figsize=(4, 4)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def record(sampler, sde, score_fn, x, steps, **kwargs):
    """Run ``sampler`` and keep every state.

    Returns (ts (steps + 1,), xs (steps + 1, B, ...)).
    """
    ts, xs = [], []
    sampler(
        sde,
        score_fn,
        x,
        steps,
        callback=lambda i, t, xi: (ts.append(float(t)), xs.append(xi.cpu())),
        **kwargs,
    )
    return torch.tensor(ts, dtype=torch.float64), torch.stack(xs)


def record_forward(sde, x0, steps, *, t_end=None, generator=None):
    """The forward SDE run from ``x0``, every state kept: (ts, xs) as in ``record``."""
    ts, xs = [], []
    samplers.forward_euler_maruyama(
        sde,
        x0,
        steps,
        t_end=t_end,
        generator=generator,
        callback=lambda i, t, xi: (ts.append(float(t)), xs.append(xi.cpu())),
    )
    return torch.tensor(ts, dtype=torch.float64), torch.stack(xs)


def _scale(sde, t, normalize):
    """The factor that coordinates are divided by at time t: sqrt(alpha^2 + sigma^2)."""
    if not normalize:
        return 1.0
    t = torch.tensor(float(t), dtype=torch.float64)
    return math.sqrt(float(sde.alpha(t)) ** 2 + float(sde.sigma(t)) ** 2)


def density_over_time(mixture, sde, ts, grid, coordinate=0, normalize=False):
    """p_t of one coordinate of the diffused mixture on ``grid``, for each t.

    Returns (len(ts), len(grid)). With ``normalize`` it is the density of
    x / sqrt(alpha^2 + sigma^2), i.e. c p_t(c y) on y = grid.
    """
    rows = []
    for t in ts:
        c = _scale(sde, t, normalize)
        marginal = mixture.diffused(float(t), sde).coordinate(coordinate)
        rows.append(c * marginal.log_prob(c * grid.double()[:, None]).exp())
    return torch.stack(rows)


def plot_paths(
    ts,
    xs,
    ax=None,
    coordinate=0,
    n_paths=20,
    density=None,
    grid=None,
    sde=None,
    normalize=False,
    color="white",
    title=None,
):
    """One coordinate of ``n_paths`` trajectories against t, over a density image.

    density: (len(times), len(grid)) from ``density_over_time`` on times that span the
    same range as ``ts`` (e.g. ``ts[::4]``), in the same order.
    """
    ax = _axes(ax, figsize=(5, 3))
    if density is not None:
        if (
            ts[0] > ts[-1]
        ):  # a reverse trajectory: the density rows run from T down to eps
            density = density.flip(0)
        ax.imshow(
            density.T.numpy(),
            origin="lower",
            aspect="auto",
            cmap="magma",
            extent=(float(ts.min()), float(ts.max()), float(grid[0]), float(grid[-1])),
        )
    scale = torch.tensor([_scale(sde, t, normalize) for t in ts]) if normalize else 1.0
    paths = xs[:, :n_paths, coordinate].double() / (
        scale[:, None] if normalize else 1.0
    )  # (steps + 1, n_paths)
    ax.plot(ts.numpy(), paths.numpy(), color=color, lw=0.6, alpha=0.7)
    ax.set_xlabel("t")
    ax.set_ylabel(
        f"$x_{coordinate + 1}$"
        + (r" / $\sqrt{\alpha^2 + \sigma^2}$" if normalize else "")
    )
    if grid is not None:
        ax.set_ylim(float(grid[0]), float(grid[-1]))
    if title:
        ax.set_title(title)
    return ax


def plot_density_2d(mixture, ax=None, lim=1.3, n=120, cmap="Greys"):
    """Filled contours of a 2-D mixture's density on [-lim, lim]^2."""
    ax = _axes(ax)
    axis = torch.linspace(-lim, lim, n, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(
        -1, 2
    )  # (n*n, 2)
    density = mixture.log_prob(grid).exp().reshape(n, n)
    ax.contourf(axis.numpy(), axis.numpy(), density.numpy(), levels=12, cmap=cmap)
    ax.set_aspect("equal")
    return ax


def plot_points(x, ax=None, lim=1.3, color="C0", s=2, title=None, background=None):
    """Scatter 2-D points (B, 2), over a mixture's density contours (``background``)."""
    ax = _axes(ax)
    if background is not None:
        plot_density_2d(background, ax, lim=lim)
    x = x.detach().cpu().float()
    ax.scatter(x[:, 0], x[:, 1], s=s, color=color, alpha=0.6, linewidths=0)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return ax


def plot_score_field(
    score_fn, t, ax=None, lim=1.3, n=17, color="C0", sde=None, scale=30.0, label=None
):
    """Arrows of score_fn(x, t) on an n x n grid of 2-D points.

    With ``sde`` the arrows are sigma(t) * score, the score in units of the noise (what
    an eps-network predicts, up to sign), which is O(1) at every t; ``scale`` is
    matplotlib's quiver scale (data units per arrow length in axes widths), the same for
    every call so that two fields drawn on one axes compare.
    """
    ax = _axes(ax)
    axis = torch.linspace(-lim, lim, n)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(
        -1, 2
    )  # (n*n, 2)
    t_batch = torch.full((len(grid),), float(t))
    with torch.no_grad():
        arrows = score_fn(grid, t_batch).float()  # (n*n, 2)
    if sde is not None:
        arrows = arrows * sde.sigma(t_batch).float()[:, None]
    ax.quiver(
        grid[:, 0],
        grid[:, 1],
        arrows[:, 0],
        arrows[:, 1],
        color=color,
        scale=scale,
        label=label,
        angles="xy",
        width=0.004,
    )
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    return ax


def plot_error_vs_nfe(results, ax=None, reference_slopes=(1, 2), title=None):
    """Log-log error against the number of function evaluations, one line per solver.

    results: {name: (nfes, errors)}. Dashed lines of slope -p show what order p looks
    like.
    """
    ax = _axes(ax, figsize=(5, 3.5))
    for name, (nfes, errors) in results.items():
        ax.loglog(nfes, errors, "o-", label=name, ms=4)
    all_nfe = [n for nfes, _ in results.values() for n in nfes]
    all_err = [e for _, errors in results.values() for e in errors]
    n0, e0 = min(all_nfe), max(all_err)
    for p in reference_slopes:
        n1 = max(all_nfe)
        ax.loglog([n0, n1], [e0, e0 * (n0 / n1) ** p], "k--", lw=0.8, alpha=0.6)
        ax.annotate(
            f"slope -{p}",
            (n1, e0 * (n0 / n1) ** p),
            fontsize=8,
            ha="right",
            va="bottom",
        )
    ax.set_xlabel("number of score evaluations (NFE)")
    ax.set_ylabel("error at t = t_min")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_grids(sde, grids, ax=None, title=None):
    """Where each time grid puts its points on the noise-level axis s = sigma / alpha.

    grids: {label: ts}. One row of markers per grid on a log axis, so the reader sees
    which grid spends its steps at high noise and which near the data.
    """
    ax = _axes(ax, figsize=(6, 0.5 + 0.45 * len(grids)))
    for row, (label, ts) in enumerate(grids.items()):
        s = samplers.noise_levels(sde, ts.double()).cpu()
        ax.semilogx(s.numpy(), [row] * len(s), "|", ms=14, mew=1.5)
    ax.set_yticks(range(len(grids)), list(grids))
    ax.set_ylim(-0.7, len(grids) - 0.3)
    ax.set_xlabel(r"noise level $\sigma / \alpha$ (log scale)")
    if title:
        ax.set_title(title)
    return ax


def animate(
    ts,
    xs,
    mixture,
    sde,
    *,
    lim=1.3,
    frames=30,
    n_paths=20,
    normalize=True,
    title="",
    interval=150,
    dpi=60,
):
    """Two panels: particles over the exact p_t (left), coordinate-1 paths in t (right).

    ts, xs: a recorded trajectory (``record`` / ``record_forward``), in either time
    direction.
    Returns a ``FuncAnimation``; pass it to ``to_html`` for the static page.
    """
    index = torch.linspace(0, len(ts) - 1, min(frames, len(ts))).round().long().tolist()
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(7.5, 3.3), dpi=dpi, gridspec_kw={"width_ratios": [1, 1.4]}
    )
    n = 60
    axis = torch.linspace(-lim, lim, n, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)

    def density_image(t):
        c = _scale(sde, t, normalize)
        return (
            (mixture.diffused(float(t), sde).log_prob(c * grid).exp() * c**2)
            .reshape(n, n)
            .numpy()
        )

    image = left.imshow(
        density_image(ts[0]),
        origin="lower",
        extent=(-lim, lim, -lim, lim),
        cmap="Greys",
    )
    points = left.scatter([], [], s=3, color="C1", linewidths=0)
    left.set_xlim(-lim, lim)
    left.set_ylim(-lim, lim)
    left.set_aspect("equal")
    scale = torch.tensor([_scale(sde, t, normalize) for t in ts])
    paths = xs[:, :n_paths, 0].double() / scale[:, None]  # (steps + 1, n_paths)
    lines = right.plot(ts.numpy()[:1], paths[:1].numpy(), color="C1", lw=0.8)
    right.set_xlim(float(ts.min()), float(ts.max()))
    right.set_ylim(-lim, lim)
    right.set_xlabel("t")
    right.set_ylabel("$x_1$" + (r" / $\sqrt{\alpha^2+\sigma^2}$" if normalize else ""))
    fig.tight_layout()

    def update(k):
        i = index[k]
        image.set_data(density_image(ts[i]))
        image.set_clim(0, image.get_array().max())
        points.set_offsets((xs[i, :, :2].double() / scale[i]).numpy())
        for j, line in enumerate(lines):
            line.set_data(ts[: i + 1].numpy(), paths[: i + 1, j].numpy())
        left.set_title(f"{title}  t = {float(ts[i]):.3f}")
        return [image, points, *lines]

    return animation.FuncAnimation(
        fig, update, frames=len(index), interval=interval, blit=False
    )


def to_html(anim):
    """The animation as self-contained JavaScript/HTML (``IPython.display.HTML``).

    Closes its figure.
    """
    from IPython.display import HTML

    html = anim.to_jshtml(default_mode="once")
    plt.close(anim._fig)
    return HTML(html)
