"""The changes of resolution the KL autoencoder and the U-Net share (notes 2.2, 3.2.1).

* ``Downsample``: halve H and W with a 3x3 convolution of stride 2.
* ``Upsample``: double H and W by nearest-neighbour upsampling, then a 3x3 convolution.

Both follow Rombach et al. 2022 ("High-Resolution Image Synthesis with Latent Diffusion
Models") as diffusers' ``Downsample2D`` / ``Upsample2D`` implement them, with the same
parameter names (``conv``), so published checkpoints load into either model. The one
difference between the two networks is where the stride-2 convolution pads: the
autoencoder's encoder adds one zero row and column at the bottom and right only
(diffusers' ``padding=0``), the U-Net pads one pixel on every side (``padding=1``).
For even H and W both give H/2 x W/2, but the pixels each output sees differ by one.
"""

import torch.nn as nn
import torch.nn.functional as F


class Downsample(nn.Module):
    """Halve H and W: a 3x3 conv of stride 2, (B, C, H, W) -> (B, C, H/2, W/2).

    pad_bottom_right: False pads one pixel on every side (the U-Net's); True pads one
    row at the bottom and one column at the right only (the KL autoencoder's encoder).
    """

    def __init__(self, channels, pad_bottom_right=False):
        super().__init__()
        self.pad_bottom_right = pad_bottom_right
        padding = 0 if pad_bottom_right else 1
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x):
        if self.pad_bottom_right:
            x = F.pad(x, (0, 1, 0, 1))  # (left, right, top, bottom)
        return self.conv(x)  # (B, C, H/2, W/2)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour upsampling, then a 3x3 conv."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, C, 2H, 2W)
        return self.conv(x)
