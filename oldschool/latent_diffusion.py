"""Latent diffusion: autoencoder, denoiser and schedule in one module (notes 2.2, 3).

    ldm = LatentDiffusion(autoencoder, denoiser, schedule, image_size=16)
    ldm.fit_scaling(images)                    # scale = 1 / std of the latents
    z0 = ldm.encode(images)                    # (B, C, H/f, W/f), unit variance
    loss, parts = ldm.loss((z0, labels), p_uncond=0.1)     # trains the denoiser only
    x = ldm.sample(labels, guidance_scale=3.0, steps=20, sampler=samplers.ddim)

Stable Diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent
Diffusion Models") is three parts trained in two stages. Nothing here re-implements any
of them; this module only wires the book's own parts together:

1. the *first stage*, a KL autoencoder (``oldschool.autoencoder_kl.AutoencoderKL``,
   notes 2.2), trained first and then frozen: x (B, C_x, H, W) -> z (B, C, H/f, W/f);
2. the latents' normalization (``oldschool.latents``): z -> (z - shift) * scale, with
   scale = 1 / std of the latents measured on data (Rombach et al., sec. 4.3.2);
3. a conditional denoiser eps_theta(z_t, t, y) in latent space (``oldschool.guidance``'s
   ``ClassConditionalUNet`` around ``oldschool.unet.UNet2DCondition``, notes 3.2),
   trained with the eps-prediction loss on z_t = alpha(t) z_0 + sigma(t) eps (notes 3)
   on one of ``oldschool.sde``'s Gaussian paths, with label dropout for classifier-free
   guidance (Ho & Salimans 2022);
4. sampling: prior noise z_T -> a sampler of ``oldschool.samplers`` on the guided noise
   prediction -> z_0 -> unscale -> decode (notes 3.1.3).

The loss is Rombach et al.'s eq. (2), E_{E(x),y,eps,t} ||eps - eps_theta(z_t, t, y)||^2,
on latents encoded once: the autoencoder is frozen, so encoding every batch again would
give the same posterior means. Checkpoints are safetensors files (tensors only, no
pickle), loaded back through ``oldschool.checkpoints.load_renamed``, which names every
missing, unexpected or misshapen key.
"""

import torch
import torch.nn as nn

from . import checkpoints, checks, denoising, guidance, latents

CHECKPOINT_NAME = "this LatentDiffusion"


class LatentDiffusion(nn.Module):
    """A frozen autoencoder, a denoiser in its latent space, a schedule.

    autoencoder: an ``AutoencoderKL``; its ``config.downsampling_factor`` is f.
    denoiser: eps_theta(z_t, t, labels) with t in [0, 1], such as
        ``guidance.ClassConditionalUNet``; it must have ``null_label`` (the label of
        classifier-free guidance's empty prompt) and ``check_labels``.
    schedule: an ``oldschool.sde`` path, e.g. ``sde.DiscreteVP.stable_diffusion()``.
    image_size: height = width of the images, divisible by f.
    scaling_factor, shift_factor: the latents' normalization (default: the autoencoder's
        own); ``fit_scaling`` measures them. Buffers, so that checkpoints carry them.
    """

    def __init__(
        self,
        autoencoder,
        denoiser,
        schedule,
        *,
        image_size,
        scaling_factor=None,
        shift_factor=None,
    ):
        super().__init__()
        cfg = autoencoder.config
        f = cfg.downsampling_factor
        checks.number(image_size, "image_size", low=1, integer=True)
        if image_size % f:
            raise ValueError(
                f"image_size must be divisible by the autoencoder's factor {f}, "
                f"got {image_size!r}"
            )
        if not hasattr(denoiser, "null_label"):
            raise TypeError(
                "denoiser needs a null_label (the unconditional label), "
                "as guidance.ClassConditionalUNet has"
            )
        self.autoencoder = autoencoder.eval().requires_grad_(False)  # the first stage
        self.denoiser = denoiser
        self.schedule = schedule
        self.image_size = image_size
        self.latent_shape = (cfg.latent_channels, image_size // f, image_size // f)
        scale = cfg.scaling_factor if scaling_factor is None else scaling_factor
        shift = cfg.shift_factor if shift_factor is None else shift_factor
        self.register_buffer("scaling_factor", torch.tensor(float(scale)))
        self.register_buffer("shift_factor", torch.tensor(float(shift)))

    def train(self, mode=True):
        """Train mode for the denoiser; the frozen autoencoder stays in eval mode."""
        super().train(mode)
        self.autoencoder.eval()
        return self

    # ---- the first stage: pixels <-> scaled latents ----------------------------------

    @property
    def image_shape(self):
        """(C_x, H, W) of the images."""
        return (self.autoencoder.config.in_channels, self.image_size, self.image_size)

    @torch.no_grad()
    def fit_scaling(self, x, with_shift=False, batch_size=512):
        """Measure scale = 1 / std of the latents of images x (and shift = their mean).

        Rombach et al. 2022, sec. 4.3.2: SD's 0.18215 is this number for its autoencoder
        (``latents.estimate_scaling_factor``). Sets the buffers; returns (scale, shift).
        """
        checks.tensor(x, "images x", shape=("B", *self.image_shape))
        chunks = x.split(batch_size)
        z = torch.cat([self.autoencoder.encode(chunk).mode() for chunk in chunks])
        scale, shift = latents.estimate_scaling_factor(z, with_shift=with_shift)
        self.scaling_factor.fill_(scale)
        self.shift_factor.fill_(shift)
        return scale, shift

    @torch.no_grad()
    def encode(self, x, generator=None, batch_size=512):
        """Scaled latents (B, C, H/f, W/f) of images x: (z - shift) * scale.

        z is the mean of q(z|x), or a draw of it (notes eq. (3)) given a ``generator``.
        """
        checks.tensor(x, "images x", shape=("B", *self.image_shape))
        z = []
        for chunk in x.split(batch_size):
            posterior = self.autoencoder.encode(chunk)
            z.append(posterior.sample(generator) if generator else posterior.mode())
        scale, shift = float(self.scaling_factor), float(self.shift_factor)
        return latents.scale_latents(torch.cat(z), scale, shift)

    @torch.no_grad()
    def decode(self, z):
        """Images (B, C_x, H, W) of scaled latents z: unscale, then the decoder."""
        checks.tensor(z, "latents z", shape=("B", *self.latent_shape))
        scale, shift = float(self.scaling_factor), float(self.shift_factor)
        return self.autoencoder.decode(latents.unscale_latents(z, scale, shift))

    # ---- the second stage: diffusion in latent space ---------------------------------

    def loss(self, batch, *, p_uncond=0.1, generator=None):
        """Rombach et al.'s eq. (2) with label dropout; (loss, parts) of ``cfg_loss``.

        batch = (z0, labels): scaled latents from ``encode`` (B, C, h, w), labels (B,).
        """
        z0, labels = batch
        checks.tensor(z0, "latents z0", shape=("B", *self.latent_shape))
        return guidance.cfg_loss(
            self.denoiser,
            (z0, labels),
            self.schedule,
            p_uncond=p_uncond,
            generator=generator,
        )

    def guided_score(self, labels, guidance_scale):
        """score(z, t) of the guided eps = eps_null + w (eps_label - eps_null)."""
        eps_fn = guidance.guided_eps(self.denoiser, labels, guidance_scale)
        return denoising.score_fn_from_model(
            eps_fn, self.schedule, "eps"
        )  # -eps / sigma(t)

    @torch.no_grad()
    def sample(
        self,
        labels,
        *,
        guidance_scale,
        steps,
        sampler,
        generator=None,
        callback=None,
        return_latents=False,
    ):
        """Images for ``labels`` (B,): z_T from the prior, ``sampler``, then decode.

        sampler: a function of ``oldschool.samplers`` (shared signature), run on the
        guided score; ``steps`` is its time grid (an int: the uniform one). Each
        denoiser call evaluates the label and the null label together, a batch of 2B.
        Returns images (B, C_x, H, W), and the latents z_0 too if ``return_latents``.
        """
        checks.tensor(labels, "labels", shape=("B",))
        self.denoiser.check_labels(labels, len(labels))
        if not callable(sampler):
            raise TypeError(
                f"sampler must be a function of oldschool.samplers, "
                f"got {type(sampler).__name__}"
            )
        shape = (len(labels), *self.latent_shape)
        dtype = self.scaling_factor.dtype
        z_T = self.schedule.prior_sample(
            shape,
            generator=generator,  # (B, C, h, w)
            device=labels.device,
            dtype=dtype,
        )
        score_fn = self.guided_score(labels, guidance_scale)
        z_0 = sampler(
            self.schedule, score_fn, z_T, steps, callback=callback, generator=generator
        )
        images = self.decode(z_0)  # (B, C_x, H, W)
        return (images, z_0) if return_latents else images

    @torch.no_grad()
    def stage_shapes(self, x, labels, *, sampler, t=0.5, generator=None):
        """[(stage, shape)] of one real pass through every stage, for images and labels.

        Training path: x -> moments of q(z|x) -> z -> scaled z_0 -> z_t -> (with the
        label's context tokens) the U-Net's eps-prediction. Sampling path: z_T from the
        prior -> ``sampler`` (one step: only the shapes matter) -> z_0 -> decoded image.
        """
        checks.tensor(x, "images x", shape=("B", *self.image_shape))
        self.denoiser.check_labels(labels, len(x))
        posterior = self.autoencoder.encode(x)
        z0 = self.encode(x)
        t_batch = torch.full((len(x),), float(t), device=x.device, dtype=x.dtype)
        z_t, _ = self.schedule.perturb(z0, t_batch, generator=generator)
        moments = torch.cat([posterior.mean, posterior.logvar], 1)
        stages = [
            ("image x", x),
            ("q(z|x): mean and log-variance", moments),
            ("latent z (mean of q)", posterior.mean),
            ("scaled latent z_0 = (z - shift) scale", z0),
            ("noised latent z_t", z_t),
        ]
        if hasattr(self.denoiser, "tokens"):
            stages.append(("context: the label's tokens", self.denoiser.tokens(labels)))
        eps_hat = self.denoiser(z_t, t_batch, labels)
        stages.append(("U-Net output eps_hat(z_t, t, y)", eps_hat))
        z_T = self.schedule.prior_sample(
            z0.shape, generator=generator, device=x.device, dtype=x.dtype
        )
        z_sampled = sampler(
            self.schedule, self.guided_score(labels, 1.0), z_T, 1, generator=generator
        )
        stages += [
            ("prior noise z_T", z_T),
            ("sampler output z_0", z_sampled),
            ("decoded image", self.decode(z_sampled)),
        ]
        return [(name, tuple(tensor.shape)) for name, tensor in stages]


# ---- checkpoints ---------------------------------------------------------------------


def save_checkpoint(model, path):
    """Write the state dict (autoencoder, denoiser, scaling) to a safetensors file."""
    from safetensors.torch import save_file

    if not isinstance(model, LatentDiffusion):
        raise TypeError(f"model must be a LatentDiffusion, got {type(model).__name__}")
    tensors = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
    save_file(tensors, str(path))


def load_checkpoint(model, path):
    """Load a ``save_checkpoint`` file into ``model`` (built the same way); returns it.

    Every key goes through ``checkpoints.load_renamed`` with an empty key map: a
    checkpoint of another architecture is refused, naming the keys that do not fit.
    """
    from safetensors.torch import load_file

    if not isinstance(model, LatentDiffusion):
        raise TypeError(f"model must be a LatentDiffusion, got {type(model).__name__}")
    return checkpoints.load_renamed(
        model, load_file(str(path)), key_map=(), what=CHECKPOINT_NAME
    )
