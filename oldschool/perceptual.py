"""LPIPS, the learned perceptual distance (Zhang et al. 2018), through ``lpips``.

The distance is d(x, y) = sum_l mean_{h,w} || w_l * (f_l(x) - f_l(y)) ||^2 with f_l
the unit-normalized features of layer l of a trunk network (AlexNet or VGG16) and w_l
per-channel weights fitted to human judgements (shipped inside the package). The
trunk's ImageNet weights come from torchvision's download server; offline, a random
trunk is used, and only when asked for (``pretrained_backbone=False``) or announced
aloud (``lpips_with_fallback``). The autoencoders' training loss that adds LPIPS to
the L1 error is ``oldschool.autoencoder_kl_loss``.
"""

import os
import warnings

import torch
import torch.nn as nn

from . import checks


# torchvision's files of the ImageNet trunks lpips uses (in torch.hub's checkpoints/)
TRUNK_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


def trunk_weights_cached(net):
    """Whether torchvision's ImageNet weights for ``net`` are in the torch.hub cache."""
    checks.one_of(net, "net", TRUNK_FILES)
    return os.path.exists(
        os.path.join(torch.hub.get_dir(), "checkpoints", TRUNK_FILES[net])
    )


def _build_lpips(net, pretrained_backbone):
    import lpips

    with warnings.catch_warnings():
        # lpips calls torchvision's alexnet/vgg16 with the old ``pretrained=`` argument,
        # which torchvision deprecates with a UserWarning; the call is what we want.
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        return lpips.LPIPS(net=net, pnet_rand=not pretrained_backbone, verbose=False)


class LPIPS(nn.Module):
    """LPIPS distance between two batches of images in [-1, 1]: ``lpips(x, y) -> (B,)``.

    net: "alex" (what the LPIPS paper recommends as a metric) or "vgg" (what latent
        diffusion trained its autoencoders with).
    pretrained_backbone: True loads torchvision's ImageNet trunk (from the cache, or
        downloaded when ``allow_download``) and raises a RuntimeError saying why when it
        cannot; False builds a random trunk from ``seed`` (the linear heads stay the
        shipped, calibrated ones).
    """

    def __init__(
        self, net="alex", pretrained_backbone=True, allow_download=True, seed=0
    ):
        super().__init__()
        checks.one_of(net, "net", TRUNK_FILES)
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
                    f"could not download the ImageNet weights of LPIPS' {net} trunk "
                    f"({error}); offline, pass pretrained_backbone=False for a random "
                    "trunk"
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
        """LPIPS(x, y) per image, (B,), of images (B, 3, H, W) in [-1, 1].

        The range is checked unless ``check_range`` is False.
        """
        checks.tensor(x, "x", shape=("B", 3, "H", "W"))
        checks.tensor(y, "y", shape=tuple(x.shape))
        if min(x.shape[-2:]) < 32:
            raise ValueError(
                "LPIPS needs images of at least 32x32 pixels, "
                f"got {tuple(x.shape[-2:])}"
            )
        for name, images in (("x", x), ("y", y)):
            if check_range and (images.min() < -1.0 or images.max() > 1.0):
                raise ValueError(
                    f"LPIPS expects values in [-1, 1]; {name} spans "
                    f"[{float(images.min()):.3g}, {float(images.max()):.3g}]"
                )
        return self.lpips(x, y).flatten()  # (B,)


def lpips_with_fallback(net="alex", allow_download=True, seed=0):
    """The pretrained LPIPS when its trunk can be had, else a random one, said aloud."""
    try:
        return LPIPS(net, pretrained_backbone=True, allow_download=allow_download)
    except RuntimeError as error:
        print(
            f"LPIPS-{net}: {error}.\n  Falling back to a RANDOM {net} trunk: its "
            "numbers rank images by random features, not by the calibrated "
            "perceptual distance."
        )
        return LPIPS(net, pretrained_backbone=False, seed=seed)
