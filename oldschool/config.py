"""CPU or GPU mode, chosen once, and every size the chapters depend on.

The book runs the same cells in two modes:

* ``"cpu"``: what CI and the rendered book use. Every chapter finishes in a couple
  of minutes on two cores and still trains a model that works.
* ``"gpu"``: what a Colab GPU gets. Bigger models, more steps, more samples.

The mode is ``"gpu"`` when CUDA is available and ``"cpu"`` otherwise; the
environment variable ``OLDSCHOOL_MODE`` (``cpu`` or ``gpu``) forces either. A
chapter never edits a number in a cell: it asks ``settings("ch1")`` and gets the
numbers of the current mode, all of which live in ``CHAPTERS`` below.
"""

import os
from types import SimpleNamespace

import torch

MODES = ("cpu", "gpu")
ENV_VAR = "OLDSCHOOL_MODE"
PROGRESS_ENV_VAR = "OLDSCHOOL_PROGRESS"


def mode():
    """The current mode: ``OLDSCHOOL_MODE`` if set, else ``"gpu"`` when CUDA is there."""
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced:
        if forced not in MODES:
            raise ValueError(f"{ENV_VAR}={forced!r} is not a mode; use one of {MODES}")
        if forced == "gpu" and not torch.cuda.is_available():
            raise RuntimeError(f"{ENV_VAR}=gpu but torch sees no CUDA device")
        return forced
    return "gpu" if torch.cuda.is_available() else "cpu"


def device():
    """The device chapters put their models and data on: CUDA in GPU mode, else CPU."""
    return torch.device("cuda" if mode() == "gpu" else "cpu")


def progress():
    """Whether training loops show a progress bar: yes, unless ``OLDSCHOOL_PROGRESS=0``.

    The book build sets it to 0 so that rendered pages carry no progress-bar debris.
    """
    value = os.environ.get(PROGRESS_ENV_VAR, "1").strip()
    if value not in ("0", "1"):
        raise ValueError(f"{PROGRESS_ENV_VAR}={value!r} must be 0 or 1")
    return value == "1"


# Per-chapter sizes. Each entry is {"cpu": {...}, "gpu": {...}} with the same keys.
CHAPTERS = {
    "ch1": {
        "cpu": dict(steps=1500, batch_size=128, hidden=256, lr=2e-3, latent_dim=2, mc_samples=20_000),
        "gpu": dict(steps=8000, batch_size=256, hidden=512, lr=1e-3, latent_dim=2, mc_samples=200_000),
    },
}


def settings(chapter, mode_name=None):
    """The settings of ``chapter`` (e.g. ``"ch1"``) in the current mode, as attributes.

    ``mode_name`` overrides the mode (tests use it to check both tables).
    """
    if chapter not in CHAPTERS:
        raise KeyError(f"no settings for chapter {chapter!r}; known: {sorted(CHAPTERS)}")
    mode_name = mode() if mode_name is None else mode_name
    if mode_name not in MODES:
        raise ValueError(f"mode {mode_name!r} is not one of {MODES}")
    return SimpleNamespace(mode=mode_name, **CHAPTERS[chapter][mode_name])
