"""The blocks a diffusion U-Net is made of, smallest first (notes 3.2.1).

* ``TimestepEmbedding``: the MLP on top of the sinusoidal features of the timestep
  (``oldschool.embeddings.sinusoidal_embedding``; DDPM, Ho et al. 2020).
* ``ResBlock``: GroupNorm, SiLU, 3x3 conv, *the time embedding projected to the channels
  and added to every pixel*, GroupNorm, SiLU, dropout, 3x3 conv, plus the skip.
* ``Attention``: multi-head attention with ``F.scaled_dot_product_attention``;
  self-attention when no context is given, cross-attention to a context sequence (text
  or label tokens) otherwise.
* ``FeedForward`` (GEGLU), ``TransformerBlock`` (self-attn, cross-attn, feed-forward,
  each pre-normed with a residual) and ``Transformer2D`` (GroupNorm, project in, flatten
  the image to tokens, blocks, back to an image, project out, residual).
* ``Downsample`` (stride-2 conv) and ``Upsample`` (nearest x2, then a conv) live in
  ``conv_blocks``, shared with the VAE.

The layer names inside each block are the ones ``unet.DIFFUSERS_KEY_MAP`` translates
from diffusers' checkpoint layout (Rombach et al. 2022; diffusers'
``UNet2DConditionModel``).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class TimestepEmbedding(nn.Module):
    """The MLP that turns sinusoidal features into the embedding each ResBlock gets."""

    def __init__(self, in_dim, embed_dim):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, embed_dim)
        self.linear_2 = nn.Linear(embed_dim, embed_dim)

    def forward(self, features):
        return self.linear_2(F.silu(self.linear_1(features)))  # (B, embed_dim)


class ResBlock(nn.Module):
    """Residual conv block with the timestep embedding added after the first conv.

    h = conv1(SiLU(GN(x))) + W_t SiLU(temb)   (one bias per channel, over all H, W)
    out = skip(x) + conv2(dropout(SiLU(GN(h))))
    where skip is a 1x1 conv when the channel count changes (Ho et al. 2020, App. B).
    """

    def __init__(
        self, in_channels, out_channels, *, temb_channels, groups, eps, dropout=0.0
    ):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        # the timestep enters here: one value per channel, the same at every pixel
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head attention softmax(Q K^T / sqrt(d)) V of queries x over a context.

    x: (B, N, query_dim) tokens; context: (B, M, context_dim), or None (self-attention:
    keys and values come from x). Q, K, V have ``heads * head_dim`` channels.
    """

    def __init__(self, query_dim, *, heads, head_dim, context_dim=None):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, query_dim)

    def _split_heads(self, y):
        b, n, _ = y.shape
        y = y.view(b, n, self.heads, self.head_dim)
        return y.transpose(1, 2)  # (B, heads, n, head_dim)

    def forward(self, x, context=None):
        context = x if context is None else context
        q = self._split_heads(self.to_q(x))  # (B, h, N, d)
        k = self._split_heads(self.to_k(context))  # (B, h, M, d)
        v = self._split_heads(self.to_v(context))  # (B, h, M, d)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, d)
        b, _, n, _ = out.shape
        out = out.transpose(1, 2).reshape(b, n, self.heads * self.head_dim)
        return self.to_out(out)  # (B, N, query_dim)

    def weights(self, x, context=None):
        """The attention probabilities softmax(Q K^T / sqrt(d)), (B, heads, N, M)."""
        context = x if context is None else context
        q = self._split_heads(self.to_q(x))
        k = self._split_heads(self.to_k(context))
        return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), dim=-1)


class FeedForward(nn.Module):
    """GEGLU feed-forward (Shazeer 2020): proj_out(value * GELU(gate)).

    [value, gate] = proj_in(x), both from one matrix.
    """

    def __init__(self, dim, mult=4):
        super().__init__()
        self.proj_in = nn.Linear(dim, 2 * mult * dim)  # value and gate in one matrix
        self.proj_out = nn.Linear(mult * dim, dim)

    def forward(self, x):
        value, gate = self.proj_in(x).chunk(2, dim=-1)  # (B, N, mult*dim) each
        return self.proj_out(value * F.gelu(gate))


class TransformerBlock(nn.Module):
    """x += SelfAttn(LN(x)); x += CrossAttn(LN(x), context); x += FF(LN(x))."""

    def __init__(self, dim, *, heads, head_dim, context_dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads=heads, head_dim=head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = Attention(
            dim, heads=heads, head_dim=head_dim, context_dim=context_dim
        )
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x, context):
        x = x + self.self_attn(self.norm1(x))  # every pixel looks at every pixel
        # every pixel looks at the context tokens
        x = x + self.cross_attn(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class Transformer2D(nn.Module):
    """``depth`` TransformerBlocks applied to the H*W pixels of a feature map as tokens.

    ``use_linear_projection`` picks how proj_in / proj_out are stored: a Linear on the
    tokens (SD 2, SDXL) or a 1x1 conv on the image (SD 1.5). Both compute the same map
    x_c -> sum_c' W_cc' x_c' + b_c; the flag only keeps the checkpoint layout.
    """

    def __init__(
        self, channels, *, heads, depth, context_dim, groups, use_linear_projection
    ):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} heads")
        self.use_linear_projection = use_linear_projection
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        Proj = (
            nn.Linear
            if use_linear_projection
            else (lambda c_in, c_out: nn.Conv2d(c_in, c_out, 1))
        )
        self.proj_in = Proj(channels, channels)
        block = dict(heads=heads, head_dim=channels // heads, context_dim=context_dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(channels, **block) for _ in range(depth)
        )
        self.proj_out = Proj(channels, channels)

    def forward(self, x, context):
        b, c, h, w = x.shape
        tokens = self.norm(x)
        if not self.use_linear_projection:
            tokens = self.proj_in(tokens)
        # (B, H*W, C): one token per pixel
        tokens = tokens.permute(0, 2, 3, 1).reshape(b, h * w, c)
        if self.use_linear_projection:
            tokens = self.proj_in(tokens)
        for block in self.blocks:
            tokens = block(tokens, context)
        if self.use_linear_projection:
            tokens = self.proj_out(tokens)
        out = tokens.reshape(b, h, w, c).permute(0, 3, 1, 2)  # (B, C, H, W)
        if not self.use_linear_projection:
            out = self.proj_out(out)
        return x + out
