"""The loss the SD/SDXL KL autoencoders trained with: L1 + LPIPS + KL (notes eq. (11)).

Latent diffusion's ``LPIPSWithDiscriminator`` (Rombach et al. 2022; Esser et al. 2021,
"Taming Transformers") before its GAN term switches on. Per image, with r_i the L1 error
of pixel value i plus the image's LPIPS distance times ``perceptual_weight``:

    nll   = sum_i r_i / exp(s) + s          a Laplace likelihood with a learned scale s
    loss  = mean_batch[ nll + kl_weight * KL(q(z|x) || N(0, I)) ]

* ``KLAutoencoderLoss(x, x_hat, posterior)``: the formula, with the learned scalar s.
* ``training_loss(model, x)``: the same in ``train.train``'s signature; ``model`` holds
  the autoencoder (``model["vae"]``) and its ``KLAutoencoderLoss`` (``model["loss"]``),
  so that the optimizer learns s with the weights:

      model = nn.ModuleDict({"vae": vae, "loss": KLAutoencoderLoss(None, 0.0, 1e-6)})
      train.train(model, autoencoder_kl_loss.training_loss, images, ...)
"""

import torch
import torch.nn as nn

from . import checks
from .gaussians import DiagonalGaussian


class KLAutoencoderLoss(nn.Module):
    """Notes eq. (11) as latent diffusion trains KL-f8, before its GAN starts.

        rec  = |x - x_hat| + perceptual_weight * LPIPS(x, x_hat)   per pixel value
        nll  = sum_pixels rec / exp(logvar) + logvar          Laplace, learned scale
        loss = mean_batch[ nll + kl_weight * KL(q(z|x) || N(0, I)) ]   KL summed over z

    ``logvar`` is one learned scalar: chapter 1's decoder likelihood with its scale
    learned, a Laplace instead of a Gaussian. The patch-GAN hinge term of the original
    recipe (switched on after 50k steps with an adaptive weight) is not here.
    ``perceptual``: an ``oldschool.perceptual.LPIPS``, needed if perceptual_weight > 0.
    Called as ``criterion(x, x_hat, posterior)``; returns ``(loss, parts)``.
    """

    def __init__(
        self, perceptual=None, perceptual_weight=1.0, kl_weight=1e-6, logvar_init=0.0
    ):
        super().__init__()
        if perceptual is None and perceptual_weight:
            raise ValueError(
                "perceptual_weight > 0 needs an LPIPS module (perceptual=...)"
            )
        checks.number(kl_weight, "kl_weight", low=0)
        self.perceptual = perceptual
        self.perceptual_weight = perceptual_weight
        self.kl_weight = kl_weight
        self.logvar = nn.Parameter(torch.tensor(float(logvar_init)))

    def forward(self, x, x_hat, posterior):
        if not isinstance(posterior, DiagonalGaussian):
            raise TypeError(
                f"posterior must be a DiagonalGaussian, got {type(posterior).__name__}"
            )
        checks.tensor(x_hat, "x_hat", shape=tuple(checks.tensor(x, "x").shape))
        l1 = (x - x_hat).abs()  # (B, C, H, W)
        rec = l1
        lpips_value = torch.zeros(x.shape[0], device=x.device)
        if self.perceptual_weight:
            # the decoder's output may overshoot [-1, 1] while training; latent
            # diffusion feeds it to LPIPS as it is
            lpips_value = self.perceptual(x, x_hat, check_range=False)  # (B,)
            rec = rec + self.perceptual_weight * lpips_value[:, None, None, None]
        nll = (rec / torch.exp(self.logvar) + self.logvar).flatten(1).sum(1)  # (B,)
        kl = posterior.kl()  # (B,), summed over latent elements
        loss = (nll + self.kl_weight * kl).mean()
        n_latent = posterior.mean[0].numel()
        parts = {
            "nll": nll.mean().detach(),
            "l1": l1.mean().detach(),
            "lpips": lpips_value.mean().detach(),
            "kl_per_element": (kl.mean() / n_latent).detach(),
            "logvar": self.logvar.detach(),
        }
        return loss, parts


def training_loss(model, x):
    """``train.train``'s loss_fn: ``model["loss"]`` of ``model["vae"]``'s output.

    x_hat is decoded from a draw z ~ q(z|x) (the reparameterization of notes eq. (6)).
    Returns ``(loss, parts)`` of ``KLAutoencoderLoss``.
    """
    x_hat, posterior = model["vae"](x)
    return model["loss"](x, x_hat, posterior)
