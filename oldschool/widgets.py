"""ipywidgets UIs of chapters 5 and 6 (the kernel version): the SDE, sampler and score.

The live JavaScript explorer (``oldschool.explorer``) runs in any page; these widgets
need a running kernel, and in exchange run everything ``oldschool`` has: every sampler
and a learned score. Both draw the panels of ``trajectory_figure``, whose static
figures are the same panels drawn once.

A ``KernelExplorer`` keeps one blitted ``TrajectoryFigure`` and redraws it per change
(see ``trajectory_figure`` on redraw time); the forward simulation is kept while only
the sampler or the score changes. Sliders send their value on release
(``continuous_update`` off), sit on the grids of ``explorer.GRIDS`` (defaults included,
so the frontend sends nothing back on load), and a setting that did not change does
not redraw.
"""

import time

from . import trajectory_figure as tf
from .explorer import DEFAULTS, GRIDS, SDE_KINDS

REVERSE_SDE_SAMPLERS = ("euler_maruyama", "predictor_corrector", "ddpm_ancestral")
ODE_SAMPLERS = ("ode_heun", "ode_euler", "ode_rk45", "ddim")


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
    """Controls, a PNG of a ``TrajectoryFigure`` and a status line; ``box`` is the UI.

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
        self.figure = tf.TrajectoryFigure(mixture, view=view, blit=True)
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
            note = (
                f"learned score: trained for {type(sde).__name__}; "
                "the schedule sliders do not apply. "
            )
        else:
            sde = tf.make_sde(
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
                    tf.forward_paths(self.mixture, sde, steps, seed, self.n_points),
                )
            panels = tf.explorer_panels(
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
            panels = tf.sde_vs_ode_panels(
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
    """Controls for schedule, steps, sampler (reverse SDE or ODE), score and seed.

    The score is the mixture's exact one, or ``learned``: optional (sde, score_fn) of a
    trained model. Returns the widget (a VBox).
    """
    return KernelExplorer(mixture, learned, n_points, view="sde").box


def sde_vs_ode_explorer(mixture, learned=None, n_points=1000):
    """Controls as ``sde_explorer``; reverse-SDE and ODE paths from the same noise."""
    return KernelExplorer(mixture, learned, n_points, view="sde_vs_ode").box
