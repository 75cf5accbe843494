"""Perceptual losses: LPIPS, and the L1 + LPIPS + KL loss the SD/SDXL autoencoders trained with.

* ``LPIPS``: the learned perceptual distance of Zhang et al. 2018 through the ``lpips``
  package. The distance is d(x, y) = sum_l mean_{h,w} || w_l * (f_l(x) - f_l(y)) ||^2 with
  f_l the unit-normalized features of layer l of a trunk network (AlexNet or VGG16) and w_l
  per-channel weights fitted to human judgements (shipped inside the package). The trunk's
  ImageNet weights come from torchvision's download server; offline, a random trunk is
  used, and only when asked for (``pretrained_backbone=False``) or announced aloud
  (``lpips_with_fallback``).
* ``KLAutoencoderLoss``: notes eq. (11) as latent-diffusion's ``LPIPSWithDiscriminator``
  computes it before its GAN term switches on (Rombach et al. 2022; Esser et al. 2021).
"""

import os
import warnings

import torch
import torch.nn as nn

from .gaussians import DiagonalGaussian

# torchvision's file names for the ImageNet trunks lpips uses (torch.hub cache, "checkpoints/").
TRUNK_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


def trunk_weights_cached(net):
    """Whether torchvision's ImageNet weights for ``net`` are already in the torch.hub cache."""
    if net not in TRUNK_FILES:
        raise ValueError(f"net must be one of {sorted(TRUNK_FILES)}, got {net!r}")
    return os.path.exists(
        os.path.join(torch.hub.get_dir(), "checkpoints", TRUNK_FILES[net])
    )


def _build_lpips(net, pretrained_backbone):
    import lpips

    with warnings.catch_warnings():
        # lpips calls torchvision's alexnet/vgg16 with the old ``pretrained=`` argument, which
        # torchvision deprecates with a UserWarning; the call itself is what we want.
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        return lpips.LPIPS(net=net, pnet_rand=not pretrained_backbone, verbose=False)


class LPIPS(nn.Module):
    """LPIPS distance between two batches of images in [-1, 1]: ``lpips(x, y) -> (B,)``.

    net: "alex" (what the LPIPS paper recommends as a metric) or "vgg" (what latent-diffusion
        trained its autoencoders with).
    pretrained_backbone: True loads torchvision's ImageNet trunk (from the cache, or downloaded
        when ``allow_download``) and raises a RuntimeError saying why when it cannot; False
        builds a random trunk from ``seed`` (the linear heads stay the shipped, calibrated ones).
    """

    def __init__(
        self, net="alex", pretrained_backbone=True, allow_download=True, seed=0
    ):
        super().__init__()
        if net not in TRUNK_FILES:
            raise ValueError(f"net must be one of {sorted(TRUNK_FILES)}, got {net!r}")
        self.net_name = net
        self.pretrained_backbone = bool(pretrained_backbone)
        if self.pretrained_backbone:
            if not trunk_weights_cached(net) and not allow_download:
                raise RuntimeError(
                    f"the ImageNet weights of LPIPS' {net} trunk are not cached "
                    f"({TRUNK_FILES[net]}) and downloading is not allowed"
                )
            try:
                self.lpips = _build_lpips(net, pretrained_backbone=True)
            except OSError as error:  # urllib's URLError and socket errors are OSErrors
                raise RuntimeError(
                    f"could not download the ImageNet weights of LPIPS' {net} trunk ({error}); "
                    "offline, pass pretrained_backbone=False for a random trunk"
                ) from error
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.lpips = _build_lpips(net, pretrained_backbone=False)
        self.lpips.eval().requires_grad_(False)

    def describe(self):
        """A label to print beside every number this metric gives."""
        trunk = (
            "ImageNet"
            if self.pretrained_backbone
            else "random (offline: not the calibrated metric)"
        )
        return f"LPIPS-{self.net_name}, {trunk} trunk"

    def forward(self, x, y, check_range=True):
        """LPIPS(x, y) per image, (B,). Images (B, 3, H, W) in [-1, 1] (checked unless told not to)."""
        for name, images in (("x", x), ("y", y)):
            if (
                not isinstance(images, torch.Tensor)
                or images.dim() != 4
                or images.shape[1] != 3
            ):
                shape = (
                    tuple(images.shape)
                    if isinstance(images, torch.Tensor)
                    else type(images).__name__
                )
                raise ValueError(
                    f"LPIPS takes RGB images (B, 3, H, W); {name} has shape {shape}"
                )
            if check_range and (images.min() < -1.0 or images.max() > 1.0):
                raise ValueError(
                    f"LPIPS expects values in [-1, 1]; {name} spans "
                    f"[{float(images.min()):.3g}, {float(images.max()):.3g}]"
                )
        if x.shape != y.shape:
            raise ValueError(
                f"x and y shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}"
            )
        if min(x.shape[-2:]) < 32:
            raise ValueError(
                f"LPIPS needs images of at least 32x32 pixels, got {tuple(x.shape[-2:])}"
            )
        return self.lpips(x, y).flatten()  # (B,)


def lpips_with_fallback(net="alex", allow_download=True, seed=0):
    """The pretrained LPIPS when its trunk can be had, else a random-trunk one, saying so aloud."""
    try:
        return LPIPS(net, pretrained_backbone=True, allow_download=allow_download)
    except RuntimeError as error:
        print(
            f"LPIPS-{net}: {error}.\n  Falling back to a RANDOM {net} trunk: its numbers rank images by "
            "random features, not by the calibrated perceptual distance."
        )
        return LPIPS(net, pretrained_backbone=False, seed=seed)


class KLAutoencoderLoss(nn.Module):
    """Notes eq. (11) as latent-diffusion trains KL-f8 (``LPIPSWithDiscriminator``, before its GAN starts).

        rec   = |x - x_hat| + perceptual_weight * LPIPS(x, x_hat)        per pixel (LPIPS broadcast)
        nll   = sum_pixels rec / exp(logvar) + logvar                      a Laplace likelihood, learned scale
        loss  = mean_batch[ nll + kl_weight * KL(q(z|x) || N(0, I)) ]      KL summed over latent elements

    ``logvar`` is one learned scalar: chapter 1's decoder likelihood with its scale learned,
    a Laplace instead of a Gaussian. The patch-GAN hinge term of the original recipe (switched
    on after 50k steps with an adaptive weight) is not here. Returns ``(loss, parts)``.
    """

    def __init__(
        self, perceptual=None, perceptual_weight=1.0, kl_weight=1e-6, logvar_init=0.0
    ):
        super().__init__()
        if perceptual is None and perceptual_weight:
            raise ValueError(
                "perceptual_weight > 0 needs an LPIPS module (perceptual=...)"
            )
        if not kl_weight >= 0:
            raise ValueError(f"kl_weight must be >= 0, got {kl_weight!r}")
        self.perceptual = perceptual
        self.perceptual_weight = perceptual_weight
        self.kl_weight = kl_weight
        self.logvar = nn.Parameter(torch.tensor(float(logvar_init)))

    def forward(self, x, x_hat, posterior):
        if not isinstance(posterior, DiagonalGaussian):
            raise TypeError(
                f"posterior must be a DiagonalGaussian, got {type(posterior).__name__}"
            )
        if x.shape != x_hat.shape:
            raise ValueError(
                f"x and x_hat shapes differ: {tuple(x.shape)} vs {tuple(x_hat.shape)}"
            )
        l1 = (x - x_hat).abs()  # (B, C, H, W)
        rec = l1
        lpips_value = torch.zeros(x.shape[0], device=x.device)
        if self.perceptual_weight:
            # the decoder's output may overshoot [-1, 1] while training; latent-diffusion feeds it as is
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
