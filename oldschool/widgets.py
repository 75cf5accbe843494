"""ipywidgets UIs of chapters 5 and 6 (the kernel version): change the SDE, the sampler, the score.

The live JavaScript explorer (``oldschool.explorer``) runs in any page; these widgets need a
running kernel, and in exchange run everything ``oldschool`` has: every sampler and a learned
score. Both draw the same three panels, and the static figures (``explorer_figure``,
``sde_vs_ode_figure``) are the same panels drawn once.

Redraw time. Rebuilding a matplotlib figure per change (subplots, tight_layout, tick labels,
a PNG of it) cost about 0.6 s of the 0.7-0.9 s a redraw took, and the density background
another 0.2 s (a ``GaussianMixture`` built per column). Here a ``TrajectoryFigure`` is built
once: its axes, ticks, labels and the data density are rendered once into a saved background
(blitting), and a redraw paints the density images, paths, points and titles over it; the
density of all columns is one tensor expression; the forward simulation is kept while only the
sampler or the score changes. Sliders send their value on release (``continuous_update`` off),
sit on the grids of ``explorer.GRIDS`` (defaults included, so the frontend sends nothing back
on load), and a setting that did not change does not redraw.
"""

import io
import time

import matplotlib.pyplot as plt
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from . import metrics, samplers, trajectories
from .gaussians import LOG_2PI
from .explorer import DEFAULTS, GRIDS, KINDS, SDE_KINDS
from .sde import VESDE, VPSDE, LinearPath, SubVPSDE

REVERSE_SDE_SAMPLERS = ("euler_maruyama", "predictor_corrector", "ddpm_ancestral")
ODE_SAMPLERS = ("ode_heun", "ode_euler", "ode_rk45", "ddim")
PATH_GRID = torch.linspace(
    -2.0, 2.0, 120, dtype=torch.float64
)  # the paths panels' y axis
DENSITY_COLUMNS = 60  # time columns of the density image behind the paths
SW_PROJECTIONS = (
    64  # directions of the sliced Wasserstein distance in the samples' title
)


def make_sde(
    kind,
    beta_min=DEFAULTS["beta_min"],
    beta_max=DEFAULTS["beta_max"],
    sigma_min=DEFAULTS["sigma_min"],
    sigma_max=DEFAULTS["sigma_max"],
):
    """The forward process named ``kind`` (one of ``explorer.KINDS``) with the given schedule."""
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
    """p_t of coordinate 1, normalized by c = sqrt(alpha^2 + sigma^2), at every t: (T, G).

    The density of y = x_1 / c is c p_t(c y), with p_t(x_1) = sum_k w_k N(alpha mu_k1,
    alpha^2 Sigma_k,11 + sigma^2) (notes eq. (14)'s marginal); the same numbers as
    ``trajectories.density_over_time(..., normalize=True)``, for all times in one expression.
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
    """The explorers' three panels, built once: paths of x_1 over p_t (two panels), samples.

    view: "sde" (forward paths, reverse paths, samples) or "sde_vs_ode" (reverse-SDE and ODE
    paths from the same noise, both samples). ``blit``: render axes and the data density once
    and paint only what changes (the widgets); without it the figure is a plain pyplot figure
    (the static cells, shown with ``plt.show()``).
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
        """Panel k: the density of normalized x_1 on [t_lo, 1] and the first n_paths paths."""
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
        """The figure as PNG bytes: the saved background, then every artist that changes."""
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


def _generators(seed):
    """Separate streams for data + forward noise and for prior + reverse noise, so a change of
    sampler or score reruns the reverse process alone, from the same prior."""
    return torch.Generator().manual_seed(seed), torch.Generator().manual_seed(
        seed + 100_000
    )


def _forward(mixture, sde, steps, seed, n_points):
    gen, _ = _generators(seed)
    x0 = mixture.sample(n_points, generator=gen)
    return trajectories.record_forward(sde, x0, steps, generator=gen)


def _explorer_panels(
    mixture, sde, sampler, steps, seed, score_fn, n_points, forward=None
):
    """(left, right, titles) of the "sde" view; ``forward``: a cached forward run, or None."""
    if sampler not in samplers.SAMPLERS:
        raise ValueError(
            f"unknown sampler {sampler!r}; choose one of {sorted(samplers.SAMPLERS)}"
        )
    left = (
        forward
        if forward is not None
        else _forward(mixture, sde, steps, seed, n_points)
    )
    _, gen = _generators(seed)
    score = samplers.CountingScore(
        mixture.score_fn(sde) if score_fn is None else score_fn
    )
    prior = sde.prior_sample((n_points, 2), generator=gen)
    right = trajectories.record(
        samplers.SAMPLERS[sampler], sde, score, prior, steps, generator=gen
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


def _sde_vs_ode_panels(mixture, sde, steps, seed, score_fn, n_points):
    _, gen = _generators(seed)
    score = mixture.score_fn(sde) if score_fn is None else score_fn
    prior = sde.prior_sample((n_points, 2), generator=gen)
    left = trajectories.record(
        samplers.euler_maruyama, sde, score, prior, steps, generator=gen
    )
    right = trajectories.record(samplers.ode_heun, sde, score, prior, steps)
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
    """Forward paths, reverse paths and final samples of one setting, over the exact p_t.

    score_fn: the score the sampler uses; None means the mixture's exact score under ``sde``.
    The third panel's title gives the sliced Wasserstein distance to fresh data and the NFE.
    Reverse SDE eq. (17) / ODE eq. (18) of the notes; Song et al. 2021.
    """
    left, right, titles = _explorer_panels(
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
    """From the same prior noise: reverse-SDE (Euler-Maruyama) and probability-flow ODE (Heun) paths."""
    left, right, titles = _sde_vs_ode_panels(
        mixture, sde, steps, seed, score_fn, n_points
    )
    figure = TrajectoryFigure(mixture, view="sde_vs_ode", n_paths=n_paths, lim=lim)
    figure.update(sde, left, right, titles)
    return figure.fig


KERNEL_LINE = (
    "<b>Kernel version</b> (Python; it answers only with a running kernel, in Jupyter "
    "or Colab; the live version above runs in any page)."
)


def _controls(learned, view):
    import ipywidgets as W

    style = {"description_width": "80px"}

    def grid_slider(name):  # values only from the grid: an index travels, never a float
        return W.SelectionSlider(
            options=list(GRIDS[name]),
            value=DEFAULTS[name],
            description=name,
            continuous_update=False,
            style=style,
        )

    controls = {
        "kind": W.ToggleButtons(
            options=SDE_KINDS, value=DEFAULTS["kind"], description="SDE", style=style
        ),
        **{
            name: grid_slider(name)
            for name in ("beta_min", "beta_max", "sigma_min", "sigma_max", "steps")
        },
        "seed": W.IntSlider(
            value=DEFAULTS["seed"],
            min=0,
            max=max(GRIDS["seed"]),
            description="seed",
            continuous_update=False,
            style=style,
        ),
        "score": W.ToggleButtons(
            options=("exact", "learned") if learned else ("exact",),
            value="exact",
            description="score",
            style=style,
        ),
    }
    if view == "sde":
        controls["process"] = W.ToggleButtons(
            options=("SDE", "ODE"), value="SDE", description="reverse", style=style
        )
        controls["sampler"] = W.Dropdown(
            options=REVERSE_SDE_SAMPLERS,
            value="euler_maruyama",
            description="sampler",
            style=style,
        )
    return controls


class KernelExplorer:
    """Controls, a PNG image of a ``TrajectoryFigure``, and a status line; ``box`` is the UI.

    ``redraw()`` recomputes only when the setting changed, and returns whether it did.
    """

    def __init__(self, mixture, learned=None, n_points=1000, view="sde"):
        import ipywidgets as W

        if learned is not None and (len(learned) != 2 or not callable(learned[1])):
            raise ValueError("learned must be (sde, score_fn) of a trained model")
        self.mixture, self.learned, self.n_points, self.view = (
            mixture,
            learned,
            n_points,
            view,
        )
        self.controls = _controls(learned, view)
        self.figure = TrajectoryFigure(mixture, view=view, blit=True)
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.status = W.HTML()
        self.times, self._last, self._forward = [], None, (None, None)
        if view == "sde":
            self.controls["process"].observe(self._follow_process, names="value")
        for control in self.controls.values():
            control.observe(lambda change: self.redraw(), names="value")
        self.redraw()
        names = ["kind", "beta_min", "beta_max", "sigma_min", "sigma_max"]
        left = W.VBox([self.controls[n] for n in names])
        right = W.VBox([self.controls[n] for n in self.controls if n not in names])
        self.box = W.VBox(
            [
                W.VBox([W.HTML(KERNEL_LINE), W.HBox([left, right])]),
                W.VBox([self.image, self.status]),
            ]
        )

    def _follow_process(self, change):  # the sampler list follows the SDE/ODE choice
        options = REVERSE_SDE_SAMPLERS if change["new"] == "SDE" else ODE_SAMPLERS
        self.controls["sampler"].options = options
        self.controls["sampler"].value = options[0]

    def setting(self):
        return {name: control.value for name, control in self.controls.items()}

    def redraw(self):
        s = self.setting()
        key = tuple(sorted(s.items()))
        if key == self._last:
            return False  # nothing changed: no work
        start = time.perf_counter()
        if s["score"] == "learned":
            sde, score_fn = self.learned
            note = f"learned score: trained for {type(sde).__name__}; the schedule sliders do not apply. "
        else:
            sde = make_sde(
                s["kind"], s["beta_min"], s["beta_max"], s["sigma_min"], s["sigma_max"]
            )
            score_fn, note = None, ""
        steps, seed = s["steps"], s["seed"]
        if self.view == "sde":
            forward_key = (
                type(sde).__name__,
                vars(sde).get("beta_min"),
                vars(sde).get("beta_max"),
                vars(sde).get("sigma_min"),
                vars(sde).get("sigma_max"),
                steps,
                seed,
            )
            if self._forward[0] != forward_key:
                self._forward = (
                    forward_key,
                    _forward(self.mixture, sde, steps, seed, self.n_points),
                )
            panels = _explorer_panels(
                self.mixture,
                sde,
                s["sampler"],
                steps,
                seed,
                score_fn,
                self.n_points,
                forward=self._forward[1],
            )
        else:
            panels = _sde_vs_ode_panels(
                self.mixture, sde, steps, seed, score_fn, self.n_points
            )
        self.figure.update(sde, *panels)
        self.image.value = self.figure.png()
        self._last = key
        seconds = time.perf_counter() - start
        self.times.append(seconds)
        self.status.value = (
            f"<small>{note}Redrawn by the kernel in {1000 * seconds:.0f} ms.</small>"
        )
        return True


def sde_explorer(mixture, learned=None, n_points=1000):
    """Controls for the schedule, steps, sampler (reverse SDE or ODE), exact/learned score and seed.

    learned: optional (sde, score_fn) of a trained model. Returns the widget (a VBox).
    """
    return KernelExplorer(mixture, learned, n_points, view="sde").box


def sde_vs_ode_explorer(mixture, learned=None, n_points=1000):
    """Controls as ``sde_explorer``; reverse-SDE and ODE paths from the same noise side by side."""
    return KernelExplorer(mixture, learned, n_points, view="sde_vs_ode").box
