"""What happens to the autoencoder's latents before the diffusion model sees them.

Notes 2.2.

* Normalization: ``scale_latents`` maps z to (z - shift) * scale so that the diffusion
  model works on latents of unit variance (Rombach et al. 2022, sec. 4.3.2 and app. D.1,
  where scale = 1 / std of the latents over a batch of data);
  ``estimate_scaling_factor`` measures scale (and shift) on a data set. Published: SD
  0.18215; SDXL 0.13025; SD3 1.5305 with shift 0.0609; FLUX.1 0.3611 with shift 0.1159.
* FLUX.1's packing: ``pack_latents`` cuts the (B, C, H, W) latent into 2x2 patches and
  stacks each patch's 4C numbers as one token, (B, H/2 * W/2, 4C), in the element order
  of the FLUX pipeline; ``unpack_latents`` undoes it exactly. ``patch_conv_as_linear``
  shows that SD3's patch embedding (a conv with kernel = stride = 2) is the same map as
  packing followed by a linear layer.
"""

import torch

from . import checks


def scale_latents(z, scaling_factor, shift_factor=0.0):
    """(z - shift_factor) * scaling_factor: the latents the diffusion model sees."""
    checks.number(scaling_factor, "scaling_factor", low=0, low_open=True)
    return (z - shift_factor) * scaling_factor


def unscale_latents(z_scaled, scaling_factor, shift_factor=0.0):
    """z_scaled / scaling_factor + shift_factor: undoes ``scale_latents`` to decode."""
    checks.number(scaling_factor, "scaling_factor", low=0, low_open=True)
    return z_scaled / scaling_factor + shift_factor


@torch.no_grad()
def estimate_scaling_factor(z, with_shift=False):
    """(scale, shift) giving ``scale_latents(z, scale, shift)`` unit std (and mean 0).

    Pools every element of ``z`` (B, C, H, W) as latent diffusion's ``scale_by_std``
    does: scale = 1 / std(z) (the std about the mean), and shift = mean(z) when
    ``with_shift`` (SD3, FLUX) or 0 (SD, SDXL, which leave the small mean in). Computed
    in float64.
    """
    checks.tensor(z, "z", shape=("B", "C", "H", "W"))
    z = z.detach().double().flatten()
    shift = float(z.mean()) if with_shift else 0.0
    return float(1.0 / z.std()), shift


def pack_latents(z):
    """FLUX.1's packing: (B, C, H, W) -> (B, H/2 * W/2, 4C), one token per 2x2 patch.

    Token t = i * (W/2) + j holds the patch at rows 2i..2i+1, columns 2j..2j+1; within a
    token the index is c * 4 + 2 * dy + dx (channel first, then the row and column in
    the patch), the order of diffusers' ``FluxPipeline._pack_latents``.
    """
    checks.tensor(z, "z", shape=("B", "C", "H", "W"))
    B, C, H, W = z.shape
    if H % 2 or W % 2:
        raise ValueError(f"packing needs an even latent height and width, got {H}x{W}")
    patches = z.view(B, C, H // 2, 2, W // 2, 2)  # (B, C, i, dy, j, dx)
    patches = patches.permute(0, 2, 4, 1, 3, 5)  # (B, i, j, C, dy, dx)
    return patches.reshape(B, (H // 2) * (W // 2), C * 4)  # (B, tokens, 4C)


def unpack_latents(tokens, height, width):
    """The inverse of ``pack_latents``: (B, height/2 * width/2, 4C) -> (B, C, h, w).

    ``height`` and ``width`` are those of the latent grid (not of the image).
    """
    checks.tensor(tokens, "tokens", shape=("B", "N", "4C"))
    if height % 2 or width % 2:
        raise ValueError(
            f"height and width of the latent grid must be even, got {height}x{width}"
        )
    B, N, D = tokens.shape
    if N != (height // 2) * (width // 2) or D % 4:
        raise ValueError(
            f"{N} tokens of {D} numbers do not make a {height}x{width} grid of 2x2 "
            "patches"
        )
    # (B, i, j, C, dy, dx)
    patches = tokens.view(B, height // 2, width // 2, D // 4, 2, 2)
    patches = patches.permute(0, 3, 1, 4, 2, 5)  # (B, C, i, dy, j, dx)
    return patches.reshape(B, D // 4, height, width)


def patch_conv_as_linear(conv):
    """A Linear layer that, applied to ``pack_latents(z)``, is SD3's patch conv of z.

    ``conv`` is an ``nn.Conv2d(C, D, kernel_size=2, stride=2)``; its weight (D, C, 2, 2)
    read row by row is (D, 4C) in exactly the packed order c * 4 + 2 * dy + dx, so the
    linear weight is a reshape: conv(z).flatten(2).transpose(1, 2) == linear(pack(z)).
    """
    kernel, stride = tuple(conv.kernel_size), tuple(conv.stride)
    if (
        kernel != (2, 2)
        or stride != (2, 2)
        or conv.padding not in ((0, 0), "valid")
        or conv.groups != 1
    ):
        raise ValueError(
            "expected a 2x2 conv with stride 2, no padding, one group; got kernel "
            f"{kernel}, stride {stride}, padding {conv.padding}, groups {conv.groups}"
        )
    D, C = conv.out_channels, conv.in_channels
    linear = torch.nn.Linear(
        4 * C,
        D,
        bias=conv.bias is not None,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        linear.weight.copy_(conv.weight.reshape(D, 4 * C))
        if conv.bias is not None:
            linear.bias.copy_(conv.bias)
    return linear
