"""Time embeddings: a time t (B,) as features a network can read, (B, dim).

* ``sinusoidal_embedding`` / ``SinusoidalEmbedding``: the DDPM / Transformer one, with
  the options diffusers' ``get_timestep_embedding`` has (used by ``ScoreMLP`` and the
  U-Net).
* ``GaussianFourierEmbedding``: random Fourier features (Song et al. 2021).
* ``TimestepEmbedder``: a fixed embedding followed by a small MLP, the learned time
  features (DiT's ``TimestepEmbedder``).

The door is the network's ``forward``, which checks t once; the embeddings trust it.
Their constructors check their sizes.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import checks


def sinusoidal_embedding(
    t,
    dim,
    *,
    flip_sin_to_cos=False,
    downscale_freq_shift=1.0,
    scale=1.0,
    max_period=10000.0,
):
    """Sinusoidal embedding of times t (B,) -> (B, dim) (Vaswani et al. 2017; DDPM).

    With half = dim // 2 the frequencies fall geometrically from 1 to ~1 / max_period,
        omega_i = max_period ** (-i / (half - downscale_freq_shift)),  i < half,
    and the embedding is [sin(scale t omega), cos(scale t omega)] ([cos, sin] with
    ``flip_sin_to_cos``), zero-padded by one column when ``dim`` is odd. The options
    mean what they mean in diffusers' ``get_timestep_embedding`` (downscale_freq_shift=1
    is the DDPM/original; SD's U-Net uses flip_sin_to_cos=True, downscale_freq_shift=0).
    ``scale`` multiplies t: continuous t in [0, 1] with scale=1000 looks like DDPM's
    steps. The caller checks t and dim (``SinusoidalEmbedding`` checks dim once).
    """
    half = dim // 2
    dtype = t.dtype if t.is_floating_point() else torch.float32
    i = torch.arange(half, device=t.device, dtype=torch.float32)
    omega = torch.exp(-math.log(max_period) * i / (half - downscale_freq_shift))
    angle = scale * (t.float()[:, None] * omega[None, :])  # (B, half)
    sin, cos = torch.sin(angle), torch.cos(angle)
    embedding = torch.cat([cos, sin] if flip_sin_to_cos else [sin, cos], dim=-1)
    if dim % 2 == 1:
        embedding = F.pad(embedding, (0, 1))  # (B, dim)
    return embedding.to(dtype)


class SinusoidalEmbedding(nn.Module):
    """``sinusoidal_embedding`` as a module (no parameters), keeping its options."""

    def __init__(
        self,
        dim,
        *,
        flip_sin_to_cos=False,
        downscale_freq_shift=1.0,
        scale=1.0,
        max_period=10000.0,
    ):
        super().__init__()
        self.dim = checks.number(dim, "dim", low=2, integer=True)
        if dim // 2 - downscale_freq_shift <= 0:
            raise ValueError(
                f"dim={dim} with downscale_freq_shift={downscale_freq_shift} "
                "leaves no frequency range"
            )
        self.options = dict(
            flip_sin_to_cos=flip_sin_to_cos,
            downscale_freq_shift=downscale_freq_shift,
            scale=scale,
            max_period=max_period,
        )

    def forward(self, t):
        return sinusoidal_embedding(t, self.dim, **self.options)  # (B, dim)


class GaussianFourierEmbedding(nn.Module):
    """Random Fourier features of t: [sin(2 pi t w), cos(2 pi t w)], w ~ N(0, scale^2).

    Song et al. 2021 (score_sde's ``GaussianFourierProjection``; Tancik et al. 2020).
    The frequencies w are a buffer, drawn once (from ``generator`` when given), never
    trained.
    """

    def __init__(self, dim, scale=16.0, generator=None):
        super().__init__()
        checks.number(dim, "dim", low=2, integer=True)
        if dim % 2:
            raise ValueError(f"dim must be an even int >= 2, got {dim!r}")
        w = scale * torch.randn(dim // 2, generator=generator)  # (dim/2,)
        self.register_buffer("w", w)

    def forward(self, t):
        angle = (
            2 * math.pi * t[:, None].to(self.w.dtype) * self.w[None, :]
        )  # (B, dim/2)
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)  # (B, dim)


class TimestepEmbedder(nn.Module):
    """t -> a fixed embedding -> Linear, SiLU, Linear: learned time features (DiT's)."""

    def __init__(self, embedding, embed_dim, hidden):
        super().__init__()
        self.embedding = embedding  # a module t (B,) -> (B, embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )

    def forward(self, t):
        return self.mlp(self.embedding(t))  # (B, hidden)
