"""Live explorers for the static page: chapter 5 and 6's samplers redone in JavaScript.

A kernel widget (``oldschool.widgets``) needs a running Python; most readers meet the
book as rendered pages, where it would sit dead. For a Gaussian mixture the diffused
score is known in closed form (``gaussian_mixture.GaussianMixture.score``), so the whole experiment
fits in the page: the explorer is one HTML cell output that carries

- ``explorer.js`` (package data next to this file), inlined: a second implementation of
  ``sde.GaussianPath`` (VP, sub-VP, VE and the linear path: alpha, sigma, f, g2), the
  mixture's exact score, and the samplers Euler-Maruyama (reverse SDE, notes eq. (17))
  and Euler / Heun on the probability-flow ODE (eq. (18)), in float64, with the Python
  names;
- the mixture (weights, means, covariances and their eigendecompositions) and the
  controls' grids as JSON.

Nothing is fetched: the same output runs in Jupyter, Colab and the rendered book, with
or without a kernel. tests/test_explorer.py runs the JavaScript in Chromium against
``oldschool.samplers`` and ``ode_solvers`` for the same noise (agreement to 1e-6) and
moves every control.

The grids below are shared with the kernel widgets, so a default sits on its slider's
grid and the static and live figures use the same numbers (Song et al. 2021 for the
defaults).
"""

import itertools
import json
from pathlib import Path

from . import checks
from .gaussian_mixture import GaussianMixture

JS_FILE = Path(__file__).with_name("explorer.js")

SDE_KINDS = ("VP", "sub-VP", "VE")  # the kinds shown by default
# every path explorer.js has ("linear": sde.LinearPath, T = 0.999)
KINDS = SDE_KINDS + ("linear",)
JS_SAMPLERS = ("euler_maruyama", "ode_euler", "ode_heun")  # what explorer.js implements
VIEWS = ("sde", "sde_vs_ode")

# Every slider's grid, and its default (beta 0.1 -> 20, sigma 0.01 -> 50: Song et al.).
GRIDS = {
    "beta_min": (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
    "beta_max": (3.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0),
    "sigma_min": (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
    "sigma_max": (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0),
    "steps": (5, 10, 20, 50, 100, 200, 500),
    "seed": tuple(range(21)),
    "n_points": (250, 500, 1000, 2000, 4000),
}
DEFAULTS = {
    "kind": "VP",
    "beta_min": 0.1,
    "beta_max": 20.0,
    "sigma_min": 0.01,
    "sigma_max": 50.0,
    "sampler": "euler_maruyama",
    "steps": 100,
    "seed": 0,
    "n_points": 1000,
}
LABELS = {
    "kind": "SDE",
    "beta_min": "\u03b2_min",
    "beta_max": "\u03b2_max",
    "sigma_min": "\u03c3_min",
    "sigma_max": "\u03c3_max",
    "sampler": "sampler",
    "steps": "steps",
    "seed": "seed",
    "n_points": "particles",
}

_ids = itertools.count()


def mixture_json(mixture):
    """The mixture as plain lists.

    weights (K,), means (K, 2), covs (K, 2, 2), eigvals (K, 2), eigvecs (K, 2, 2).
    """
    if not isinstance(mixture, GaussianMixture) or mixture.dim != 2:
        raise ValueError(
            f"the explorer draws a 2-D gaussian_mixture.GaussianMixture, got {mixture!r}"
        )
    return {
        "weights": mixture.weights.tolist(),
        "means": mixture.means.tolist(),
        "covs": mixture.covs.tolist(),
        "eigvals": mixture.eigvals.tolist(),
        "eigvecs": mixture.eigvecs.tolist(),
    }


def js_source():
    """The text of explorer.js (inlined into each explorer output; tests read it too)"""
    return JS_FILE.read_text(encoding="utf-8")


class LiveExplorer:
    """An explorer as a cell output.

    ``_repr_html_`` is a div, the inlined script, and its config.
    """

    def __init__(self, config):
        self.config = config
        self.element_id = f"oldschool-explorer-{next(_ids)}-{id(self):x}"

    def _repr_html_(self):
        config = json.dumps(self.config).replace(
            "</", "<\\/"
        )  # no "</script>" inside the JSON
        return (
            f'<div id="{self.element_id}" class="oldschool-explorer">'
            f"<noscript>The live explorer needs JavaScript.</noscript></div>\n"
            f"<style>{STYLE}</style>\n"
            f"<script>{js_source()}</script>\n"
            f"<script>OldschoolExplorer.mount("
            f"document.getElementById({self.element_id!r}), {config});</script>"
        )

    def __repr__(self):
        view = self.config["view"]
        return f"LiveExplorer(view={view!r}) (an HTML output: display it in a notebook)"


STYLE = """
.oldschool-explorer { font: 13px sans-serif; margin: 0.5em 0 1em; max-width: 100%; }
.oldschool-explorer-controls {
  display: flex; flex-wrap: wrap; gap: 4px 16px; margin-bottom: 6px;
}
.oldschool-explorer-controls label {
  display: inline-flex; align-items: center; gap: 4px;
}
.oldschool-explorer-controls input[type=range] { width: 110px; }
.oldschool-explorer-controls .value {
  min-width: 3.5em; font-variant-numeric: tabular-nums;
}
.oldschool-explorer-panels { display: flex; flex-wrap: wrap; gap: 8px; }
.oldschool-explorer-panel { margin: 0; min-width: 200px; }
.oldschool-explorer-panel figcaption {
  font-size: 12px; text-align: center; min-height: 1.3em;
}
.oldschool-explorer-panel canvas { display: block; }
.oldschool-explorer-status { font-size: 12px; color: #555; margin-top: 4px; }
.oldschool-explorer-header { font-weight: bold; margin-bottom: 4px; }
"""


def live_explorer(
    mixture,
    *,
    view="sde",
    kinds=SDE_KINDS,
    t_min=1e-3,
    n_paths=20,
    lim=1.3,
    path_lim=2.0,
    **defaults,
):
    """The live (in-page JavaScript) explorer of forward and reverse paths on a mixture.

    view: "sde" (chapter 5: forward paths, reverse paths of the chosen sampler, samples
    with their SW distance and NFE) or "sde_vs_ode" (chapter 6: reverse SDE with
    Euler-Maruyama and probability-flow ODE with Heun from the same prior noise, and
    both samples).
    kinds: the paths offered (a subset of ``KINDS``; chapter 8 adds "linear").
    defaults: starting values of the controls (keys of ``DEFAULTS``), each on its grid.
    t_min: the samplers' end time; n_paths: paths drawn per panel; lim: the samples'
    box; path_lim: the paths panels' range of x_1 / sqrt(alpha^2 + sigma^2).
    Math: notes eqs. (14)-(18); Song et al. 2021; the score is the mixture's exact one.
    Returns an object that a notebook displays as HTML (Jupyter, Colab, the page).
    """
    checks.one_of(view, "view", VIEWS)
    unknown = set(defaults) - set(DEFAULTS)
    if unknown:
        raise ValueError(
            f"unknown controls {sorted(unknown)}; known: {sorted(DEFAULTS)}"
        )
    values = {**DEFAULTS, **defaults}
    for kind in kinds:
        checks.one_of(kind, "kinds", KINDS)
    checks.one_of(values["kind"], "kind", kinds)
    checks.one_of(values["sampler"], "sampler", JS_SAMPLERS)
    for name, grid in GRIDS.items():
        checks.one_of(values[name], name, grid)
    if not 0 < t_min < 1:
        raise ValueError(f"t_min must lie in (0, 1), got {t_min!r}")
    names = [
        "kind",
        "beta_min",
        "beta_max",
        "sigma_min",
        "sigma_max",
        "steps",
        "seed",
        "n_points",
    ]
    if view == "sde":
        names.insert(5, "sampler")
    controls = {}
    for name in names:
        if name in GRIDS:
            controls[name] = {
                "kind": "slider",
                "label": LABELS[name],
                "options": list(GRIDS[name]),
                "value": values[name],
            }
        else:
            options = kinds if name == "kind" else JS_SAMPLERS
            controls[name] = {
                "kind": "select",
                "label": LABELS[name],
                "options": list(options),
                "value": values[name],
            }
    config = {
        "mixture": mixture_json(mixture),
        "view": view,
        "controls": controls,
        "t_min": float(t_min),
        "n_paths": int(n_paths),
        "lim": float(lim),
        "path_lim": float(path_lim),
    }
    return LiveExplorer(config)
