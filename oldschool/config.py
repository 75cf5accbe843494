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
    "ch1": {  # seeds: runs per model; latent_dims, dim_samples: the score-function variance sweep
        "cpu": dict(steps=1000, batch_size=128, hidden=256, lr=2e-3, latent_dim=2, mc_samples=20_000,
                    seeds=3, latent_dims=(1, 4, 16, 64, 256), dim_samples=20_000),
        "gpu": dict(steps=8000, batch_size=256, hidden=512, lr=1e-3, latent_dim=2, mc_samples=200_000,
                    seeds=5, latent_dims=(1, 4, 16, 64, 256), dim_samples=50_000),
    },
    # ch2: sigma: the decoder's std; seeds: runs per model; is_*: importance-sampled log p(x);
    # fit_steps: per-image q fit (amortization gap); elbo_samples: draws per ELBO; grid_*: the
    # quadrature of log p(x) on [-w, w]^2 (half width, points per axis); sweep_*: the beta sweep
    "ch2": {
        "cpu": dict(steps=2000, batch_size=128, hidden=256, lr=2e-3, latent_dim=2, sigma=0.3, mc_samples=20_000,
                    seeds=3, is_images=200, is_samples=1000, fit_steps=150, elbo_samples=256, grid_half_width=6.0,
                    grid_points=481, sweep_latent_dim=8, sweep_hidden=128, sweep_steps=800, sweep_seeds=3,
                    betas=(0.1, 0.3, 1.0, 3.0, 10.0, 30.0)),
        "gpu": dict(steps=20_000, batch_size=256, hidden=512, lr=1e-3, latent_dim=2, sigma=0.3, mc_samples=200_000,
                    seeds=5, is_images=1797, is_samples=5000, fit_steps=300, elbo_samples=1024, grid_half_width=6.0,
                    grid_points=801, sweep_latent_dim=16, sweep_hidden=512, sweep_steps=5000, sweep_seeds=5,
                    betas=(0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)),
    },
    # ch3: a small KL autoencoder on photo patches, f = 2**(len(block_out_channels) - 1): KL-f4 in
    # CPU mode, KL-f8 (SD3's compression ratios: 48x and 12x) in GPU mode; seeds: runs per
    # setting, each of `steps` steps (equal budgets); perceptual_weight: LPIPS in the loss
    "ch3": {
        "cpu": dict(patch=32, n_train=4096, n_val=256, block_out_channels=(16, 32, 32), layers_per_block=1,
                    norm_num_groups=8, seeds=3, steps=150, batch_size=16, lr=2e-3, ema_decay=0.99,
                    perceptual_weight=0.0, lpips_net="alex"),
        "gpu": dict(patch=64, n_train=16_384, n_val=1024, block_out_channels=(64, 128, 256, 256),
                    layers_per_block=2, norm_num_groups=32, seeds=5, steps=2000, batch_size=32, lr=1e-3,
                    ema_decay=0.999, perceptual_weight=1.0, lpips_net="vgg"),
    },
    "ch4": {  # a ScoreMLP trained on 2-D data; n_*: data set and sample sizes; sample_steps: sampler steps;
              # seeds: training seeds, equal budgets (the first one draws the figures)
        "cpu": dict(steps=2000, batch_size=512, hidden=128, layers=3, embed_dim=64, lr=2e-3, ema_decay=0.995,
                    n_data=20_000, n_samples=2000, sample_steps=200, seeds=(3, 13, 23)),
        "gpu": dict(steps=20_000, batch_size=2048, hidden=256, layers=4, embed_dim=128, lr=1e-3, ema_decay=0.999,
                    n_data=200_000, n_samples=20_000, sample_steps=1000, seeds=(3, 13, 23, 33, 43)),
    },
    "ch5": {  # n_particles: forward simulation; step_counts: the reverse-SDE sweep; the rest: the DSM ScoreMLP
        "cpu": dict(n_particles=4000, sim_steps=500, n_samples=4000, step_counts=(10, 30, 100, 300),
                    seeds=(0, 1, 2),
                    steps=1500, batch_size=512, hidden=128, layers=3, embed_dim=64, lr=2e-3, ema_decay=0.995,
                    n_data=20_000, sample_steps=200, n_paths=20, frames=25),
        "gpu": dict(n_particles=100_000, sim_steps=1000, n_samples=20_000, step_counts=(10, 30, 100, 300, 1000),
                    seeds=(0, 1, 2, 3, 4),
                    steps=20_000, batch_size=2048, hidden=256, layers=4, embed_dim=128, lr=1e-3, ema_decay=0.999,
                    n_data=200_000, sample_steps=1000, n_paths=30, frames=60),
    },
    "ch6": {  # n_ode: particles per solver run; nfes: the error-vs-NFE sweep; peer_*: the
        # k-diffusion comparison; seeds: repeated experiments; steps...: each DSM ScoreMLP
        "cpu": dict(n_samples=2000, n_ode=500, nfes=(10, 20, 40, 80, 160, 320),
                    peer_nfes=(10, 20, 40), n_peer=1000, seeds=(0, 1, 2), steps=600,
                    batch_size=256, hidden=128, layers=3, embed_dim=64, lr=2e-3,
                    ema_decay=0.99, n_data=20_000, sample_nfe=40, sample_steps=100,
                    n_likelihood=100, guidance_scales=(1.0, 4.0), s_churn=10.0, n_paths=20,
                    frames=25),
        "gpu": dict(n_samples=20_000, n_ode=4000, nfes=(10, 20, 40, 80, 160, 320, 640, 1280),
                    peer_nfes=(10, 20, 40), n_peer=4000, seeds=(0, 1, 2, 3, 4), steps=20_000,
                    batch_size=2048, hidden=256, layers=4, embed_dim=128, lr=1e-3,
                    ema_decay=0.999, n_data=200_000, sample_nfe=40, sample_steps=500,
                    n_likelihood=1000, guidance_scales=(1.0, 4.0), s_churn=10.0, n_paths=30,
                    frames=60),
    },
    "ch7": {  # a class-conditional tiny U-Net on the 8x8 digits; guidance_scales: the CFG grid
        "cpu": dict(channels=(16, 32, 32), layers_per_block=1, heads=2, context_dim=32, groups=8, steps=600,
                    batch_size=64, lr=3e-3, ema_decay=0.995, p_uncond=0.1, sample_steps=30, per_class=6,
                    guidance_scales=(0.0, 1.0, 2.0, 4.0)),
        "gpu": dict(channels=(64, 128, 128), layers_per_block=2, heads=4, context_dim=64, groups=32, steps=8000,
                    batch_size=256, lr=1e-3, ema_decay=0.999, p_uncond=0.1, sample_steps=100, per_class=10,
                    guidance_scales=(0.0, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)),
    },
    "ch8": {  # a ScoreMLP trained by flow matching; seeds: the reflow and path studies
        "cpu": dict(steps=400, batch_size=256, hidden=64, layers=2, embed_dim=32, lr=2e-3,
                    ema_decay=0.99, n_data=20_000, n_samples=2000, n_pairs=5000,
                    pair_steps=30, sample_steps=50, n_ode=200,
                    step_counts=(1, 2, 4, 8, 16, 32, 64, 128), seeds=(0, 1, 2),
                    n_paths=20, frames=25),
        "gpu": dict(steps=4000, batch_size=1024, hidden=256, layers=4, embed_dim=128,
                    lr=1e-3, ema_decay=0.999, n_data=200_000, n_samples=20_000,
                    n_pairs=100_000, pair_steps=100, sample_steps=100, n_ode=2000,
                    step_counts=(1, 2, 4, 8, 16, 32, 64, 128, 256), seeds=(0, 1, 2, 3, 4),
                    n_paths=30, frames=60),
    },
    "ch9": {  # latent diffusion on digits: a KL-f4 autoencoder per latent width, class-conditional U-Nets in its latents
        # data: image_size, source ("sklearn" digits resized, or "mnist" with a loud fallback), n_val held out;
        # vae_*: the autoencoders (vae_initial_logvar: a narrow start for short runs); unet_sizes: the two model sizes (channels per level); steps/batch_size/lr: each
        # denoiser run; seeds: training seeds per (size, channels); sampler, time_grid: the chapter's one sampler;
        # eval_*: the guidance scale, steps and samples per class of every accuracy; grid_*: guidance x steps
        "cpu": dict(image_size=16, source="sklearn", n_val=297, vae_channels=(8, 16, 16), vae_groups=8,
                    vae_steps=120, vae_batch_size=32, vae_lr=2e-3, vae_initial_logvar=-6.0, kl_weight=1e-6, latent_channels=(4, 16),
                    unet_sizes=(("small", (16, 32)), ("large", (32, 64))), heads=2, context_dim=32, unet_groups=8,
                    steps=100, batch_size=64, lr=5e-3, ema_decay=None, p_uncond=0.1, seeds=3, sampler="dpm_solver_2m",
                    eval_scale=3.0, eval_steps=10, per_class=10, grid_scales=(0.0, 1.0, 3.0, 6.0),
                    grid_steps=(2, 5, 20), time_grid="logsnr", pixel_size="small", pixel_per_class=4),
        "gpu": dict(image_size=32, source="mnist", n_val=2000, vae_channels=(64, 128, 128), vae_groups=32,
                    vae_steps=4000, vae_batch_size=128, vae_lr=1e-3, vae_initial_logvar=None, kl_weight=1e-6, latent_channels=(4, 16),
                    unet_sizes=(("small", (64, 128)), ("large", (128, 256))), heads=4, context_dim=64, unet_groups=32,
                    steps=2500, batch_size=256, lr=1e-3, ema_decay=0.999, p_uncond=0.1, seeds=4, sampler="dpm_solver_2m",
                    eval_scale=3.0, eval_steps=25, per_class=100, grid_scales=(0.0, 1.0, 2.0, 3.0, 5.0, 8.0),
                    grid_steps=(5, 10, 25, 50), time_grid="logsnr", pixel_size="small",
                    pixel_per_class=50),
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
