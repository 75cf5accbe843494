"""ipywidgets UIs of chapters 5 and 6: change the SDE, the sampler, the score, and watch it redraw.

Each UI is a thin layer over a figure function that the rendered page also calls once,
statically (``explorer_figure``, ``sde_vs_ode_figure``), so the page shows the same picture
without a kernel. The figure functions take a ``toy.GaussianMixture`` as the data and
draw on top of its exact diffused density p_t.
"""

import matplotlib.pyplot as plt
import torch

from . import samplers, toy, trajectories
from .sde import VESDE, VPSDE, SubVPSDE

SDE_KINDS = ("VP", "sub-VP", "VE")
REVERSE_SDE_SAMPLERS = ("euler_maruyama", "predictor_corrector", "ddpm_ancestral")
ODE_SAMPLERS = ("ode_heun", "ode_euler", "ode_rk45", "ddim")


def make_sde(kind, beta_min=0.1, beta_max=20.0, sigma_min=0.01, sigma_max=50.0):
    """The forward SDE named ``kind`` (one of ``SDE_KINDS``) with the given schedule."""
    if kind == "VP":
        return VPSDE(beta_min, beta_max)
    if kind == "sub-VP":
        return SubVPSDE(beta_min, beta_max)
    if kind == "VE":
        return VESDE(sigma_min, sigma_max)
    raise ValueError(f"unknown SDE kind {kind!r}; choose one of {SDE_KINDS}")


def _density(mixture, sde, ts, grid):
    times = ts[:: max(1, len(ts) // 60)]  # ~60 columns are plenty for the background
    return trajectories.density_over_time(mixture, sde, times, grid, normalize=True)


def explorer_figure(mixture, sde, *, sampler="euler_maruyama", steps=100, seed=0, score_fn=None,
                    n_points=1000, n_paths=20, lim=1.3):
    """Forward paths, reverse paths and final samples of one setting, over the exact p_t.

    score_fn: the score the sampler uses; None means the mixture's exact score under ``sde``.
    The third panel's title gives the sliced Wasserstein distance to fresh data and the NFE.
    """
    if sampler not in samplers.SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(samplers.SAMPLERS)}")
    gen = torch.Generator().manual_seed(seed)
    score = samplers.CountingScore(mixture.score_fn(sde) if score_fn is None else score_fn)
    x0 = mixture.sample(n_points, generator=gen)
    ts_f, xs_f = trajectories.record_forward(sde, x0, steps, generator=gen)
    prior = sde.prior_sample((n_points, 2), generator=gen)
    ts_r, xs_r = trajectories.record(samplers.SAMPLERS[sampler], sde, score, prior, steps, generator=gen)
    grid = torch.linspace(-2.0, 2.0, 120)

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), gridspec_kw={"width_ratios": [1.4, 1.4, 1]})
    trajectories.plot_paths(ts_f, xs_f, axes[0], n_paths=n_paths, density=_density(mixture, sde, ts_f, grid),
                            grid=grid, sde=sde, normalize=True, title=f"forward {type(sde).__name__}")
    trajectories.plot_paths(ts_r, xs_r, axes[1], n_paths=n_paths, density=_density(mixture, sde, ts_r, grid),
                            grid=grid, sde=sde, normalize=True, title=f"reverse: {sampler}, {steps} steps")
    sw = toy.sliced_wasserstein(xs_r[-1], mixture.sample(n_points, generator=gen), generator=gen)
    trajectories.plot_points(xs_r[-1], axes[2], lim=lim, color="C1", background=mixture,
                             title=f"samples: SW {sw:.3f}, NFE {score.calls}")
    fig.tight_layout()
    return fig


def sde_vs_ode_figure(mixture, sde, *, steps=100, seed=0, score_fn=None, n_points=1000, n_paths=20, lim=1.3):
    """From the same prior noise: reverse-SDE (Euler-Maruyama) and probability-flow ODE (Heun) paths."""
    gen = torch.Generator().manual_seed(seed)
    score = mixture.score_fn(sde) if score_fn is None else score_fn
    prior = sde.prior_sample((n_points, 2), generator=gen)
    ts_s, xs_s = trajectories.record(samplers.euler_maruyama, sde, score, prior, steps, generator=gen)
    ts_o, xs_o = trajectories.record(samplers.ode_heun, sde, score, prior, steps)
    grid = torch.linspace(-2.0, 2.0, 120)
    density = _density(mixture, sde, ts_s, grid)

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), gridspec_kw={"width_ratios": [1.4, 1.4, 1]})
    trajectories.plot_paths(ts_s, xs_s, axes[0], n_paths=n_paths, density=density, grid=grid, sde=sde,
                            normalize=True, title="reverse SDE, eq. (17)")
    trajectories.plot_paths(ts_o, xs_o, axes[1], n_paths=n_paths, density=density, grid=grid, sde=sde,
                            normalize=True, title="probability-flow ODE, eq. (18)")
    trajectories.plot_points(xs_s[-1], axes[2], lim=lim, color="C1", background=mixture, s=2)
    trajectories.plot_points(xs_o[-1], axes[2], lim=lim, color="C0", s=2, title="SDE (orange), ODE (blue)")
    fig.tight_layout()
    return fig


def _controls(learned):
    import ipywidgets as W

    style = {"description_width": "80px"}
    controls = {
        "kind": W.ToggleButtons(options=SDE_KINDS, value="VP", description="SDE", style=style),
        "beta_min": W.FloatSlider(value=0.1, min=0.01, max=2.0, step=0.01, description="beta_min", style=style),
        "beta_max": W.FloatSlider(value=20.0, min=2.0, max=40.0, step=0.5, description="beta_max", style=style),
        "sigma_min": W.FloatLogSlider(value=0.01, base=10, min=-3, max=-1, description="sigma_min", style=style),
        "sigma_max": W.FloatLogSlider(value=50.0, base=10, min=0, max=2, description="sigma_max", style=style),
        "steps": W.IntSlider(value=100, min=5, max=500, step=5, description="steps", style=style),
        "seed": W.IntSlider(value=0, min=0, max=20, description="seed", style=style),
        "score": W.ToggleButtons(options=("exact", "learned") if learned else ("exact",), value="exact",
                                 description="score", style=style),
    }
    return controls


def _layout(controls, extra, out):
    import ipywidgets as W

    left = W.VBox([controls["kind"], controls["beta_min"], controls["beta_max"], controls["sigma_min"],
                   controls["sigma_max"]])
    right = W.VBox([*extra, controls["steps"], controls["seed"], controls["score"]])
    return W.VBox([W.HBox([left, right]), out])


def _setting(mixture, learned, kind, beta_min, beta_max, sigma_min, sigma_max, score):
    """(sde, score_fn, note): a learned score is tied to the SDE it was trained for."""
    if score == "learned":
        sde, score_fn = learned
        return sde, score_fn, f"learned score: trained for {type(sde).__name__}; the schedule sliders do not apply"
    sde = make_sde(kind, beta_min, max(beta_max, beta_min + 0.01), sigma_min, max(sigma_max, 2 * sigma_min))
    return sde, None, ""


def sde_explorer(mixture, learned=None, n_points=1000):
    """Sliders for the schedule, steps, sampler (reverse SDE or ODE), exact/learned score and seed.

    learned: optional (sde, score_fn) of a trained model. Redraws ``explorer_figure``.
    """
    import ipywidgets as W

    controls = _controls(learned)
    controls["process"] = W.ToggleButtons(options=("SDE", "ODE"), value="SDE", description="reverse",
                                          style={"description_width": "80px"})
    controls["sampler"] = W.Dropdown(options=REVERSE_SDE_SAMPLERS, value="euler_maruyama", description="sampler",
                                     style={"description_width": "80px"})

    def follow_process(change):  # the sampler list follows the SDE/ODE choice
        options = REVERSE_SDE_SAMPLERS if change["new"] == "SDE" else ODE_SAMPLERS
        controls["sampler"].options, controls["sampler"].value = options, options[0]

    controls["process"].observe(follow_process, names="value")

    def draw(kind, beta_min, beta_max, sigma_min, sigma_max, steps, seed, score, process, sampler):
        sde, score_fn, note = _setting(mixture, learned, kind, beta_min, beta_max, sigma_min, sigma_max, score)
        fig = explorer_figure(mixture, sde, sampler=sampler, steps=steps, seed=seed, score_fn=score_fn,
                              n_points=n_points)
        if note:
            fig.suptitle(note, fontsize=9, y=1.02)
        plt.show()

    out = W.interactive_output(draw, controls)
    return _layout(controls, [controls["process"], controls["sampler"]], out)


def sde_vs_ode_explorer(mixture, learned=None, n_points=1000):
    """Sliders as ``sde_explorer``; draws reverse-SDE and ODE paths from the same noise side by side."""
    import ipywidgets as W

    controls = _controls(learned)

    def draw(kind, beta_min, beta_max, sigma_min, sigma_max, steps, seed, score):
        sde, score_fn, note = _setting(mixture, learned, kind, beta_min, beta_max, sigma_min, sigma_max, score)
        fig = sde_vs_ode_figure(mixture, sde, steps=steps, seed=seed, score_fn=score_fn, n_points=n_points)
        if note:
            fig.suptitle(note, fontsize=9, y=1.02)
        plt.show()

    out = W.interactive_output(draw, controls)
    return _layout(controls, [], out)
