"""CPU or GPU mode, chosen once, and every size the chapters depend on.

The book runs the same cells in two modes:

* ``"cpu"``: what CI and the rendered book use. Every chapter finishes in a couple
  of minutes on two cores and still trains a model that works.
* ``"gpu"``: what a Colab GPU gets. Bigger models, more steps, more samples.

A chapter never edits a number in a cell: it asks ``settings("ch1")`` and gets the
numbers of the current mode, all of which live in ``CHAPTERS`` below. Every environment
variable the package reads is read here:

``OLDSCHOOL_MODE``      ``cpu`` or ``gpu``; unset: ``gpu`` when CUDA is there, else
                        ``cpu``.
``OLDSCHOOL_DEVICE``    a torch device (``cpu``, ``cuda``, ``cuda:1``) that ``device()``
                        returns in either mode; with it, GPU mode runs without CUDA (the
                        dry run).
``OLDSCHOOL_CAP``       ``1`` shortens the long loops of a column (training steps,
                        sample counts, sweeps; ``CAP_RULES``) and keeps every shape, so
                        the GPU column executes on a CPU in minutes. ``0`` or unset: no
                        cap.
``OLDSCHOOL_PROGRESS``  ``0`` hides the training loops' progress bars.
"""

import os
import re
from types import SimpleNamespace

import torch

MODES = ("cpu", "gpu")
ENV_VAR = "OLDSCHOOL_MODE"
DEVICE_ENV_VAR = "OLDSCHOOL_DEVICE"
CAP_ENV_VAR = "OLDSCHOOL_CAP"
PROGRESS_ENV_VAR = "OLDSCHOOL_PROGRESS"


def _switch(name, default):
    """The 0/1 environment variable ``name`` as a bool (``default`` when unset)."""
    value = os.environ.get(name, default).strip()
    if value not in ("0", "1"):
        raise ValueError(f"{name}={value!r} must be 0 or 1")
    return value == "1"


def device_override():
    """The device ``OLDSCHOOL_DEVICE`` names, or None when it is unset."""
    name = os.environ.get(DEVICE_ENV_VAR, "").strip()
    if not name:
        return None
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise ValueError(
            f"{DEVICE_ENV_VAR}={name!r} is not a torch device ({error})"
        ) from None


def mode():
    """The current mode: ``OLDSCHOOL_MODE`` if set, else ``"gpu"`` when CUDA is there.

    Forcing ``gpu`` without CUDA is refused unless ``OLDSCHOOL_DEVICE`` says where to
    run.
    """
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced:
        if forced not in MODES:
            raise ValueError(f"{ENV_VAR}={forced!r} is not a mode; use one of {MODES}")
        if (
            forced == "gpu"
            and not torch.cuda.is_available()
            and device_override() is None
        ):
            raise RuntimeError(
                f"{ENV_VAR}=gpu but torch sees no CUDA device "
                f"(set {DEVICE_ENV_VAR}=cpu to run GPU mode on the CPU)"
            )
        return forced
    return "gpu" if torch.cuda.is_available() else "cpu"


def device():
    """Where chapters put models and data.

    ``OLDSCHOOL_DEVICE`` if set, else CUDA in GPU mode, else the CPU.
    """
    override = device_override()
    if override is not None:
        return override
    return torch.device("cuda" if mode() == "gpu" else "cpu")


def autocast_dtype(device_type):
    """The dtype training autocasts to on ``device_type`` ("cuda", "cpu"); None: fp32.

    GPU mode trains under autocast (STYLE.md: the loop's choice, not the model's): bf16
    where the hardware has it; on a CUDA GPU without bf16 units (a T4, compute
    capability 7.5) float16, which needs a gradient scaler. CPU mode trains in float32.
    On a CPU in GPU mode (the dry run) it is bf16, the path a bf16 GPU takes.
    """
    if mode() != "gpu":
        return None
    if device_type == "cuda" and not torch.cuda.is_bf16_supported(
        including_emulation=False
    ):
        return torch.float16
    return torch.bfloat16


def capped():
    """Whether ``OLDSCHOOL_CAP=1`` asks for the shortened columns (``cap``)."""
    return _switch(CAP_ENV_VAR, "0")


def progress():
    """Whether training loops show a progress bar: yes, unless ``OLDSCHOOL_PROGRESS=0``.

    The book build sets it to 0 so that rendered pages carry no progress-bar debris.
    """
    return _switch(PROGRESS_ENV_VAR, "1")


# Per-chapter sizes. Each entry is {"cpu": {...}, "gpu": {...}} with the same keys.
# fmt: off (a table: one row per mode reads better than one key per line)
CHAPTERS = {
    # ch1: seeds: runs per model; latent_dims, dim_samples: the score-function
    # variance sweep
    "ch1": {
        "cpu": dict(
            steps=1000,
            batch_size=128,
            hidden=256,
            lr=2e-3,
            latent_dim=2,
            mc_samples=20_000,
            seeds=3,
            latent_dims=(1, 4, 16, 64, 256),
            dim_samples=20_000,
        ),
        "gpu": dict(
            steps=8000,
            batch_size=256,
            hidden=512,
            lr=1e-3,
            latent_dim=2,
            mc_samples=200_000,
            seeds=5,
            latent_dims=(1, 4, 16, 64, 256),
            dim_samples=50_000,
        ),
    },
    # ch2: sigma: the decoder's std; seeds: runs per model; is_*: importance-sampled log
    # p(x); fit_steps: per-image q fit (amortization gap); elbo_samples: draws per ELBO;
    # grid_*: the quadrature of log p(x) on [-w, w]^2 (half width, points per axis);
    # sweep_*: the beta sweep
    "ch2": {
        "cpu": dict(
            steps=2000,
            batch_size=128,
            hidden=256,
            lr=2e-3,
            latent_dim=2,
            sigma=0.3,
            mc_samples=20_000,
            seeds=3,
            is_images=200,
            is_samples=1000,
            fit_steps=150,
            elbo_samples=256,
            grid_half_width=6.0,
            grid_points=481,
            sweep_latent_dim=8,
            sweep_hidden=128,
            sweep_steps=800,
            sweep_seeds=3,
            betas=(0.1, 0.3, 1.0, 3.0, 10.0, 30.0),
        ),
        "gpu": dict(
            steps=20_000,
            batch_size=256,
            hidden=512,
            lr=1e-3,
            latent_dim=2,
            sigma=0.3,
            mc_samples=200_000,
            seeds=5,
            is_images=1797,
            is_samples=5000,
            fit_steps=300,
            elbo_samples=1024,
            grid_half_width=6.0,
            grid_points=801,
            sweep_latent_dim=16,
            sweep_hidden=512,
            sweep_steps=5000,
            sweep_seeds=5,
            betas=(0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
        ),
    },
    # ch3: a small KL autoencoder on photo patches, downsampling factor
    # f = 2**(len(block_out_channels) - 1): KL-f4 in CPU mode, KL-f8 (SD3's compression
    # ratios: 48x and 12x) in GPU mode; seeds: runs per setting, each of `steps` steps
    # (equal budgets); perceptual_weight: LPIPS in the loss
    "ch3": {
        "cpu": dict(
            patch=32,
            n_train=4096,
            n_val=256,
            block_out_channels=(16, 32, 32),
            layers_per_block=1,
            norm_num_groups=8,
            seeds=3,
            steps=150,
            batch_size=16,
            lr=2e-3,
            ema_decay=0.99,
            perceptual_weight=0.0,
            lpips_net="alex",
        ),
        "gpu": dict(
            patch=64,
            n_train=16_384,
            n_val=1024,
            block_out_channels=(64, 128, 256, 256),
            layers_per_block=2,
            norm_num_groups=32,
            seeds=5,
            steps=2000,
            batch_size=32,
            lr=1e-3,
            ema_decay=0.999,
            perceptual_weight=1.0,
            lpips_net="vgg",
        ),
    },
    # ch4: a ScoreMLP trained on 2-D data; n_*: data set and sample sizes; sample_steps:
    # sampler steps; seeds: training seeds, equal budgets (the first draws the figures)
    "ch4": {
        "cpu": dict(
            steps=2000,
            batch_size=512,
            hidden=128,
            layers=3,
            embed_dim=64,
            lr=2e-3,
            ema_decay=0.995,
            n_data=20_000,
            n_samples=2000,
            sample_steps=200,
            seeds=(3, 13, 23),
        ),
        "gpu": dict(
            steps=20_000,
            batch_size=2048,
            hidden=256,
            layers=4,
            embed_dim=128,
            lr=1e-3,
            ema_decay=0.999,
            n_data=200_000,
            n_samples=20_000,
            sample_steps=1000,
            seeds=(3, 13, 23, 33, 43),
        ),
    },
    # ch5: n_particles: forward simulation; step_counts: the reverse-SDE sweep; the
    # rest: the DSM ScoreMLP
    "ch5": {
        "cpu": dict(
            n_particles=4000,
            sim_steps=500,
            n_samples=4000,
            step_counts=(10, 30, 100, 300),
            seeds=(0, 1, 2),
            steps=1500,
            batch_size=512,
            hidden=128,
            layers=3,
            embed_dim=64,
            lr=2e-3,
            ema_decay=0.995,
            n_data=20_000,
            sample_steps=200,
            n_paths=20,
            frames=25,
        ),
        "gpu": dict(
            n_particles=100_000,
            sim_steps=1000,
            n_samples=20_000,
            step_counts=(10, 30, 100, 300, 1000),
            seeds=(0, 1, 2, 3, 4),
            steps=20_000,
            batch_size=2048,
            hidden=256,
            layers=4,
            embed_dim=128,
            lr=1e-3,
            ema_decay=0.999,
            n_data=200_000,
            sample_steps=1000,
            n_paths=30,
            frames=60,
        ),
    },
    # ch6: n_ode: particles per solver run; nfes: the error-vs-NFE sweep; peer_*: the
    # k-diffusion comparison; seeds: repeated experiments; steps...: each DSM ScoreMLP
    "ch6": {
        "cpu": dict(
            n_samples=2000,
            n_ode=500,
            nfes=(10, 20, 40, 80, 160, 320),
            peer_nfes=(10, 20, 40),
            n_peer=1000,
            seeds=(0, 1, 2),
            steps=600,
            batch_size=256,
            hidden=128,
            layers=3,
            embed_dim=64,
            lr=2e-3,
            ema_decay=0.99,
            n_data=20_000,
            sample_nfe=40,
            sample_steps=100,
            n_likelihood=100,
            guidance_scales=(1.0, 4.0),
            s_churn=10.0,
            n_paths=20,
            frames=25,
        ),
        "gpu": dict(
            n_samples=20_000,
            n_ode=4000,
            nfes=(10, 20, 40, 80, 160, 320, 640, 1280),
            peer_nfes=(10, 20, 40),
            n_peer=4000,
            seeds=(0, 1, 2, 3, 4),
            steps=20_000,
            batch_size=2048,
            hidden=256,
            layers=4,
            embed_dim=128,
            lr=1e-3,
            ema_decay=0.999,
            n_data=200_000,
            sample_nfe=40,
            sample_steps=500,
            n_likelihood=1000,
            guidance_scales=(1.0, 4.0),
            s_churn=10.0,
            n_paths=30,
            frames=60,
        ),
    },
    # ch7: a class-conditional tiny U-Net on the 8x8 digits; guidance_scales: the CFG
    # grid (guidance.class_conditional_unet builds the U-Net from these settings)
    "ch7": {
        "cpu": dict(
            channels=(16, 32, 32),
            layers_per_block=1,
            heads=2,
            context_dim=32,
            groups=8,
            steps=600,
            batch_size=64,
            lr=3e-3,
            ema_decay=0.995,
            p_uncond=0.1,
            sample_steps=30,
            per_class=6,
            guidance_scales=(0.0, 1.0, 2.0, 4.0),
        ),
        "gpu": dict(
            channels=(64, 128, 128),
            layers_per_block=2,
            heads=4,
            context_dim=64,
            groups=32,
            steps=8000,
            batch_size=256,
            lr=1e-3,
            ema_decay=0.999,
            p_uncond=0.1,
            sample_steps=100,
            per_class=10,
            guidance_scales=(0.0, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0),
        ),
    },
    "ch8": {  # a ScoreMLP trained by flow matching; seeds: the reflow and path studies
        "cpu": dict(
            steps=400,
            batch_size=256,
            hidden=64,
            layers=2,
            embed_dim=32,
            lr=2e-3,
            ema_decay=0.99,
            n_data=20_000,
            n_samples=2000,
            n_pairs=5000,
            pair_steps=30,
            sample_steps=50,
            n_ode=200,
            step_counts=(1, 2, 4, 8, 16, 32, 64, 128),
            seeds=(0, 1, 2),
            n_paths=20,
            frames=25,
        ),
        "gpu": dict(
            steps=4000,
            batch_size=1024,
            hidden=256,
            layers=4,
            embed_dim=128,
            lr=1e-3,
            ema_decay=0.999,
            n_data=200_000,
            n_samples=20_000,
            n_pairs=100_000,
            pair_steps=100,
            sample_steps=100,
            n_ode=2000,
            step_counts=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            seeds=(0, 1, 2, 3, 4),
            n_paths=30,
            frames=60,
        ),
    },
    # ch9: latent diffusion on digits: a KL-f4 autoencoder per latent width,
    # class-conditional U-Nets in its latents.
    "ch9": {
        # data: image_size, source ("sklearn" digits resized, or "mnist" with a loud
        # fallback), n_val held out; vae_*: the autoencoders (vae_initial_logvar: a
        # narrow start for short runs); unet_sizes: the two model sizes (channels per
        # level); steps/batch_size/lr: each denoiser run; seeds: training seeds per
        # (size, channels); sampler, time_grid: the chapter's one sampler; eval_*: the
        # guidance scale, steps and samples per class of every accuracy; grid_*:
        # guidance x steps
        "cpu": dict(
            image_size=16,
            source="sklearn",
            n_val=297,
            vae_channels=(8, 16, 16),
            vae_groups=8,
            vae_steps=120,
            vae_batch_size=32,
            vae_lr=2e-3,
            vae_initial_logvar=-6.0,
            kl_weight=1e-6,
            latent_channels=(4, 16),
            unet_sizes=(("small", (16, 32)), ("large", (32, 64))),
            heads=2,
            context_dim=32,
            unet_groups=8,
            steps=100,
            batch_size=64,
            lr=5e-3,
            ema_decay=None,
            p_uncond=0.1,
            seeds=3,
            sampler="dpm_solver_2m",
            eval_scale=3.0,
            eval_steps=10,
            per_class=10,
            grid_scales=(0.0, 1.0, 3.0, 6.0),
            grid_steps=(2, 5, 20),
            time_grid="logsnr",
            pixel_size="small",
            pixel_per_class=4,
        ),
        "gpu": dict(
            image_size=32,
            source="mnist",
            n_val=2000,
            vae_channels=(64, 128, 128),
            vae_groups=32,
            vae_steps=4000,
            vae_batch_size=128,
            vae_lr=1e-3,
            vae_initial_logvar=None,
            kl_weight=1e-6,
            latent_channels=(4, 16),
            unet_sizes=(("small", (64, 128)), ("large", (128, 256))),
            heads=4,
            context_dim=64,
            unet_groups=32,
            steps=2500,
            batch_size=256,
            lr=1e-3,
            ema_decay=0.999,
            p_uncond=0.1,
            seeds=4,
            sampler="dpm_solver_2m",
            eval_scale=3.0,
            eval_steps=25,
            per_class=100,
            grid_scales=(0.0, 1.0, 2.0, 3.0, 5.0, 8.0),
            grid_steps=(5, 10, 25, 50),
            time_grid="logsnr",
            pixel_size="small",
            pixel_per_class=50,
        ),
    },
}
# fmt: on


# What OLDSCHOOL_CAP=1 does to a setting, by its name: (kind, pattern, cap), first match
# wins. An int is cut to at most the cap; a sweep (a tuple of values a chapter loops
# over) keeps its first and last entry. Names no pattern matches are shapes (widths,
# patch sizes, channel tuples, rates) and keep their value: the capped run builds the
# real GPU-mode models.
FIRST_AND_LAST = "first and last"
CAP_RULES = (
    (
        "sweep",
        r"(^|_)(counts|scales|betas|tolerances|shifts|grid|sweep|nfes)$|^grid_steps$",
        FIRST_AND_LAST,
    ),
    ("solver steps", r"^(sample|sampling|sim|solver|ode|sde)_steps$|^nfe$", 8),
    ("training steps", r"(^|_)(steps|iters|iterations|epochs)$", 2),
    ("animation frames", r"(^|_)frames$", 4),
    ("batch size", r"(^|_)batch(_size)?$", 4),
    (
        "sample count",
        r"^n_|(^|_)(samples|images|particles|paths|points|per_class)$",
        256,
    ),
)
# Per-chapter exceptions, where one item of a generic count is expensive (an image
# through a GPU-width autoencoder on one CPU core): {chapter: {setting: cap}}.
CAP_OVERRIDES = {
    "ch3": dict(n_train=64, n_val=8),
    # sweeps whose middle values a chapter reads by name or position
    "ch5": dict(step_counts=(10, 100, 300)),
    "ch6": dict(nfes=(10, 20, 40)),
    "ch7": dict(guidance_scales=(0.0, 1.0, 6.0)),
    "ch9": dict(per_class=4, pixel_per_class=2, n_val=64, grid_steps=(5, 10)),
}


def cap_rule(name):
    """The ``(kind, cap)`` that ``CAP_RULES`` gives setting ``name``; None: a shape."""
    for kind, pattern, limit in CAP_RULES:
        if re.search(pattern, name):
            return kind, limit
    return None


def cap(chapter, name, value):
    """``value`` of setting ``name`` of ``chapter`` as the capped run uses it.

    By ``CAP_RULES`` and the chapter's ``CAP_OVERRIDES``.
    """
    if name in CAP_OVERRIDES.get(chapter, {}):
        cap = CAP_OVERRIDES[chapter][name]
        return cap if isinstance(cap, tuple) else min(value, cap)
    rule = cap_rule(name)
    if rule is None or isinstance(value, (bool, float, str)):
        return value
    _, limit = rule
    if limit == FIRST_AND_LAST:
        return type(value)([value[0], value[-1]]) if len(value) > 2 else value
    if not isinstance(value, int):
        raise TypeError(f"{chapter}.{name} = {value!r}: a capped count must be an int")
    return min(value, limit)


def settings(chapter, mode_name=None, capped_run=None):
    """The settings of ``chapter`` (e.g. ``"ch1"``) in the current mode, as attributes.

    ``mode_name`` overrides the mode and ``capped_run`` the cap (``OLDSCHOOL_CAP``);
    tests use them to check every column. ``.mode`` and ``.capped`` say which column
    this is.
    """
    if chapter not in CHAPTERS:
        raise KeyError(
            f"no settings for chapter {chapter!r}; known: {sorted(CHAPTERS)}"
        )
    mode_name = mode() if mode_name is None else mode_name
    if mode_name not in MODES:
        raise ValueError(f"mode {mode_name!r} is not one of {MODES}")
    capped_run = capped() if capped_run is None else capped_run
    values = dict(CHAPTERS[chapter][mode_name])
    if capped_run:
        values = {name: cap(chapter, name, value) for name, value in values.items()}
    return SimpleNamespace(mode=mode_name, capped=capped_run, **values)
