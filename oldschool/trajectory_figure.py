"""The explorers' figure: paths of x_1 over the exact p_t, and the samples.

Chapters 5 and 6 draw one setting of the forward SDE, the reverse sampler and the score
(notes eqs. (14), (17), (18); Song et al. 2021) as three panels: forward (or
reverse-SDE) paths of the first coordinate over the diffused mixture's density, reverse
(or probability-flow ODE) paths over it, and the final samples over the data density.
``explorer_figure`` and ``sde_vs_ode_figure`` draw them once for the static page; the
kernel widgets (``oldschool.widgets``) redraw the same ``TrajectoryFigure`` per change,
and the live JavaScript explorer (``oldschool.explorer``) draws the same panels in the
page.

Redraw time. Rebuilding a matplotlib figure per change (subplots, tight_layout, tick
labels, a PNG of it) cost about 0.6 s of the 0.7-0.9 s a redraw took, and the density
background another 0.2 s (a ``GaussianMixture`` built per column). So a
``TrajectoryFigure`` is built once: its axes, ticks, labels and the data density are
rendered once into a saved background (blitting), and a redraw paints the density
images, paths, points and titles over it; the density of all columns is one tensor
expression (``density_columns``).
"""

import io

import matplotlib.pyplot as plt
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from . import metrics, ode_solvers, samplers, trajectories
from .explorer import DEFAULTS, KINDS
from .gaussians import LOG_2PI
from .sde import VESDE, VPSDE, LinearPath, SubVPSDE

PATH_GRID = torch.linspace(-2.0, 2.0, 120, dtype=torch.float64)  # paths' y axis
DENSITY_COLUMNS = 60  # time columns of the density image behind the paths
SW_PROJECTIONS = 64  # directions of the sliced Wasserstein distance in the title


def make_sde(
    kind,
    beta_min=DEFAULTS["beta_min"],
    beta_max=DEFAULTS["beta_max"],
    sigma_min=DEFAULTS["sigma_min"],
    sigma_max=DEFAULTS["sigma_max"],
):
    """The forward process named ``kind`` (one of ``explorer.KINDS``), this schedule."""
    if kind == "VP":
        return VPSDE(beta_min, beta_max)
    if kind == "sub-VP":
        return SubVPSDE(beta_min, beta_max)
    if kind == "VE":
        return VESDE(sigma_min, sigma_max)
    if kind == "linear":
        return LinearPath()  # rectified flow (chapter 8): no schedule to set
    raise ValueError(f"unknown SDE kind {kind!r}; choose one of {KINDS}")


def density_columns(mixture, sde, times, grid=PATH_GRID):
    """p_t of coordinate 1 normalized by c = sqrt(alpha^2 + sigma^2), each t: (T, G).

    The density of y = x_1 / c is c p_t(c y), with p_t(x_1) = sum_k w_k N(alpha mu_k1,
    alpha^2 Sigma_k,11 + sigma^2) (notes eq. (14)'s marginal); the same numbers as
    ``trajectories.density_over_time(..., normalize=True)``, for all times in one
    expression.
    """
    t = times.double()
    alpha, sigma = sde.alpha(t), sde.sigma(t)  # (T,)
    c = torch.sqrt(alpha**2 + sigma**2)  # (T,)
    mean = alpha[:, None] * mixture.means[:, 0]  # (T, K)
    var = alpha[:, None] ** 2 * mixture.covs[:, 0, 0] + sigma[:, None] ** 2  # (T, K)
    x = c[:, None, None] * grid.double()[None, :, None]  # (T, G, 1)
    log_normal = -0.5 * (
        (x - mean[:, None]) ** 2 / var[:, None] + var.log()[:, None] + LOG_2PI
    )
    return (
        c[:, None] * torch.logsumexp(mixture.weights.log() + log_normal, dim=-1).exp()
    )  # (T, G)


class TrajectoryFigure:
    """The explorers' three panels, built once: paths of x_1 over p_t (two), samples.

    view: "sde" (forward paths, reverse paths, samples) or "sde_vs_ode" (reverse-SDE and
    ODE paths from the same noise, both samples). ``blit``: render axes and the data
    density once and paint only what changes (the widgets); without it the figure is a
    plain pyplot figure (the static cells, shown with ``plt.show()``).
    """

    def __init__(
        self,
        mixture,
        *,
        view="sde",
        t_min=1e-3,
        n_paths=20,
        lim=1.3,
        blit=False,
        dpi=72,
    ):
        self.mixture, self.view, self.n_paths, self.blit = mixture, view, n_paths, blit
        figsize, ratios = (13, 3.4), {"width_ratios": [1.4, 1.4, 1]}
        if blit:
            self.fig = Figure(figsize=figsize, dpi=dpi)
            FigureCanvasAgg(self.fig)
            axes = self.fig.subplots(1, 3, gridspec_kw=ratios)
        else:
            self.fig, axes = plt.subplots(1, 3, figsize=figsize, gridspec_kw=ratios)
        self.axes = axes
        left_t = 0.0 if view == "sde" else t_min  # the forward paths start at t = 0
        self.images, self.lines = [], []
        for ax, t_lo in zip(axes[:2], (left_t, t_min)):
            extent = (t_lo, 1.0, float(PATH_GRID[0]), float(PATH_GRID[-1]))
            blank = torch.zeros(len(PATH_GRID), DENSITY_COLUMNS).numpy()
            self.images.append(
                ax.imshow(
                    blank, origin="lower", aspect="auto", cmap="magma", extent=extent
                )
            )
            lines = LineCollection([], colors="white", linewidths=0.6, alpha=0.7)
            self.lines.append(ax.add_collection(lines))
            ax.set_xlim(t_lo, 1.0)
            ax.set_ylim(extent[2], extent[3])
            ax.set_xlabel("t")
            ax.set_ylabel(r"$x_1$ / $\sqrt{\alpha^2 + \sigma^2}$")
        trajectories.plot_density_2d(mixture, axes[2], lim=lim)
        colors = ("C1",) if view == "sde" else ("C1", "C0")
        self.points = [
            axes[2].scatter([], [], s=2, color=c, alpha=0.6, linewidths=0)
            for c in colors
        ]
        axes[2].set_xlim(-lim, lim)
        axes[2].set_ylim(-lim, lim)
        for ax in axes:
            ax.set_title(" ")
        self.fig.tight_layout()
        self.dynamic = [
            *self.images,
            *self.lines,
            *self.points,
            *(ax.title for ax in axes),
        ]
        if blit:
            for artist in self.dynamic:
                artist.set_animated(True)
            self.fig.canvas.draw()
            self.background = self.fig.canvas.copy_from_bbox(self.fig.bbox)

    def _paths(self, k, sde, ts, xs):
        """Panel k: the density of normalized x_1 on [t_lo, 1], first n_paths paths."""
        t_lo, t_hi = self.axes[k].get_xlim()
        times = torch.linspace(t_lo, t_hi, DENSITY_COLUMNS, dtype=torch.float64)
        density = density_columns(self.mixture, sde, times)  # (T, G)
        self.images[k].set_data(density.T.numpy())
        self.images[k].set_clim(0, float(density.max()))
        t = ts.double()
        scale = torch.sqrt(sde.alpha(t) ** 2 + sde.sigma(t) ** 2)  # (steps + 1,)
        paths = (
            xs[:, : self.n_paths, 0].double() / scale[:, None]
        )  # (steps + 1, n_paths)
        segments = torch.stack(
            [t[:, None].expand_as(paths), paths], -1
        )  # (steps + 1, n_paths, 2)
        segments = segments.transpose(
            0, 1
        )  # (n_paths, steps + 1, 2): one polyline per path
        self.lines[k].set_segments(segments.numpy())

    def update(self, sde, left, right, titles):
        """left, right: (ts, xs) recorded trajectories; titles: three strings."""
        self._paths(0, sde, *left)
        self._paths(1, sde, *right)
        clouds = (right[1][-1],) if self.view == "sde" else (left[1][-1], right[1][-1])
        for points, x in zip(self.points, clouds):
            points.set_offsets(x.double().numpy())
        for ax, title in zip(self.axes, titles):
            ax.set_title(title)

    def png(self):
        """The figure as PNG: the saved background, then each artist that changes."""
        canvas = self.fig.canvas
        canvas.restore_region(self.background)
        for artist in self.dynamic:
            self.fig.draw_artist(artist)
        buffer = io.BytesIO()
        from PIL import Image

        Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).save(
            buffer, format="png", compress_level=1
        )
        return buffer.getvalue()


def generators(seed):
    """Separate streams for data + forward noise and for prior + reverse noise, so a
    change of sampler or score reruns the reverse process alone, from the same prior."""
    return torch.Generator().manual_seed(seed), torch.Generator().manual_seed(
        seed + 100_000
    )


def forward_paths(mixture, sde, steps, seed, n_points):
    gen, _ = generators(seed)
    x0 = mixture.sample(n_points, generator=gen)
    return trajectories.record_forward(sde, x0, steps, generator=gen)


def explorer_panels(
    mixture, sde, sampler, steps, seed, score_fn, n_points, forward=None
):
    """(left, right, titles) of the "sde" view; ``forward``: a cached forward run."""
    if sampler not in ode_solvers.SAMPLERS:
        raise ValueError(
            f"unknown sampler {sampler!r}; choose one of {sorted(ode_solvers.SAMPLERS)}"
        )
    left = (
        forward
        if forward is not None
        else forward_paths(mixture, sde, steps, seed, n_points)
    )
    _, gen = generators(seed)
    score = samplers.CountingScore(
        mixture.score_fn(sde) if score_fn is None else score_fn
    )
    prior = sde.prior_sample((n_points, 2), generator=gen)
    right = trajectories.record(
        ode_solvers.SAMPLERS[sampler], sde, score, prior, steps, generator=gen
    )
    fresh = mixture.sample(
        n_points, generator=gen
    )  # SW with 64 directions: 0.1 s less than 256
    sw = metrics.sliced_wasserstein(
        right[1][-1], fresh, num_projections=SW_PROJECTIONS, generator=gen
    )
    titles = (
        f"forward {type(sde).__name__}",
        f"reverse: {sampler}, {steps} steps",
        f"samples: SW {sw:.3f}, NFE {score.calls}",
    )
    return left, right, titles


def sde_vs_ode_panels(mixture, sde, steps, seed, score_fn, n_points):
    _, gen = generators(seed)
    score = mixture.score_fn(sde) if score_fn is None else score_fn
    prior = sde.prior_sample((n_points, 2), generator=gen)
    left = trajectories.record(
        samplers.euler_maruyama, sde, score, prior, steps, generator=gen
    )
    right = trajectories.record(ode_solvers.ode_heun, sde, score, prior, steps)
    titles = (
        "reverse SDE, eq. (17)",
        "probability-flow ODE, eq. (18)",
        "SDE (orange), ODE (blue)",
    )
    return left, right, titles


def explorer_figure(
    mixture,
    sde,
    *,
    sampler="euler_maruyama",
    steps=100,
    seed=0,
    score_fn=None,
    n_points=1000,
    n_paths=20,
    lim=1.3,
):
    """Forward paths, reverse paths and final samples of one setting, over exact p_t.

    score_fn: the score the sampler uses; None means the mixture's exact score under
    ``sde``. The third panel's title gives the sliced Wasserstein distance to fresh data
    and the NFE. Reverse SDE eq. (17) / ODE eq. (18) of the notes; Song et al. 2021.
    """
    left, right, titles = explorer_panels(
        mixture, sde, sampler, steps, seed, score_fn, n_points
    )
    figure = TrajectoryFigure(mixture, view="sde", n_paths=n_paths, lim=lim)
    figure.update(sde, left, right, titles)
    return figure.fig


def sde_vs_ode_figure(
    mixture,
    sde,
    *,
    steps=100,
    seed=0,
    score_fn=None,
    n_points=1000,
    n_paths=20,
    lim=1.3,
):
    """Reverse-SDE (Euler-Maruyama) and probability-flow ODE (Heun) paths.

    Both from the same prior noise; arguments as ``explorer_figure``.
    """
    left, right, titles = sde_vs_ode_panels(
        mixture, sde, steps, seed, score_fn, n_points
    )
    figure = TrajectoryFigure(mixture, view="sde_vs_ode", n_paths=n_paths, lim=lim)
    figure.update(sde, left, right, titles)
    return figure.fig
