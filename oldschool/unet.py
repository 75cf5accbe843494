"""The conditional U-Net of Stable Diffusion and SDXL, from readable blocks (notes 3.2).

    unet = UNet2DCondition(UNetConfig(...))   # or sd15_unet(), sdxl_unet(), tiny_unet()
    eps = unet(sample, timestep, context)     # (B, 4, H, W), (B,) or scalar, (B, M, D)

Three parts (notes 3.2.1): the *down* path (per level: ResBlocks, each optionally
followed by a Transformer2D with self- and cross-attention, then a stride-2 conv), the
*mid* level (ResBlock, Transformer2D, ResBlock) and the *up* path (per level: one more
ResBlock than down, each fed the concatenation of the features and one skip tensor saved
on the way down, then a nearest x2 upsample). The timestep embedding reaches every
ResBlock. The settings are ``oldschool.unet_config.UNetConfig`` (diffusers' names);
``load_diffusers_state_dict`` reads checkpoints in diffusers' layout through
``DIFFUSERS_KEY_MAP``, a table of renamings.
"""

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import checkpoints, checks
from .conv_blocks import Downsample, Upsample  # shared with the VAE (conv_blocks.py)
from .embeddings import sinusoidal_embedding
from .unet_blocks import (
    ResBlock,
    TimestepEmbedding,
    Transformer2D,
)
from .unet_config import DOWN_TYPES, SD15_CONFIG, SDXL_CONFIG, UP_TYPES, tiny_config


class DownLevel(nn.Module):
    """One level of the down path: ResBlocks (each followed by a Transformer2D when
    ``transformer`` is given), then an optional Downsample.

    ``resblock(c_in, c_out)`` and ``transformer(c)`` build the level's blocks. Returns
    the features and the skip tensors saved for the up path (one per ResBlock and one
    after the Downsample).
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        *,
        num_layers,
        resblock,
        transformer,
        downsample,
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            resblock(in_channels if j == 0 else out_channels, out_channels)
            for j in range(num_layers)
        )
        self.attentions = nn.ModuleList(
            transformer(out_channels) for _ in range(num_layers if transformer else 0)
        )
        self.downsample = Downsample(out_channels) if downsample else None

    def forward(self, x, temb, context):
        skips = []
        for j, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if self.attentions:
                x = self.attentions[j](x, context)
            skips.append(x)
        if self.downsample is not None:
            x = self.downsample(x)  # (B, C, H/2, W/2)
            skips.append(x)
        return x, skips


class MidLevel(nn.Module):
    """ResBlock, Transformer2D, ResBlock at the lowest resolution."""

    def __init__(self, channels, *, resblock, transformer):
        super().__init__()
        self.resnets = nn.ModuleList(
            [resblock(channels, channels), resblock(channels, channels)]
        )
        self.attentions = nn.ModuleList([transformer(channels)])

    def forward(self, x, temb, context):
        x = self.resnets[0](x, temb)
        x = self.attentions[0](x, context)
        return self.resnets[1](x, temb)


class UpLevel(nn.Module):
    """One level of the up path: ResBlocks on [features, skip] concatenations (each
    followed by a Transformer2D when ``transformer`` is given), then an optional
    Upsample.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        skip_channels,
        *,
        resblock,
        transformer,
        upsample,
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            resblock((in_channels if j == 0 else out_channels) + skip, out_channels)
            for j, skip in enumerate(skip_channels)
        )
        self.attentions = nn.ModuleList(
            transformer(out_channels)
            for _ in range(len(skip_channels) if transformer else 0)
        )
        self.upsample = Upsample(out_channels) if upsample else None

    def forward(self, x, skips, temb, context):
        for j, resnet in enumerate(self.resnets):
            # (B, C + C_skip, H, W) -> (B, C_out, H, W)
            x = resnet(torch.cat([x, skips.pop()], dim=1), temb)
            if self.attentions:
                x = self.attentions[j](x, context)
        if self.upsample is not None:
            x = self.upsample(x)  # (B, C_out, 2H, 2W)
        return x


class UNet2DCondition(nn.Module):
    """eps_theta(z_t, t, context): the conditional U-Net of SD / SDXL.

    Rombach et al. 2022 (SD); Podell et al. 2023 (SDXL's added conditioning).
    """

    def __init__(self, config=None):
        super().__init__()
        cfg = self.config = config if config is not None else SD15_CONFIG
        channels, heads, depths = (
            cfg.block_out_channels,
            cfg.heads(),
            cfg.transformer_depths(),
        )
        levels, n = len(channels), cfg.layers_per_block
        resblock = partial(
            ResBlock,
            temb_channels=cfg.temb_channels,
            groups=cfg.norm_num_groups,
            eps=cfg.norm_eps,
            dropout=cfg.dropout,
        )

        def transformer(level, attention=True):  # level's Transformer2D builder
            if not attention:
                return None
            return partial(
                Transformer2D,
                heads=heads[level],
                depth=depths[level],
                context_dim=cfg.cross_attention_dim,
                groups=cfg.norm_num_groups,
                use_linear_projection=cfg.use_linear_projection,
            )

        self.time_embedding = TimestepEmbedding(channels[0], cfg.temb_channels)
        if cfg.addition_embed_type == "text_time":  # SDXL: pooled text + size/crop ids
            self.add_embedding = TimestepEmbedding(
                cfg.projection_class_embeddings_input_dim, cfg.temb_channels
            )
        self.conv_in = nn.Conv2d(cfg.in_channels, channels[0], 3, padding=1)

        self.down_blocks = nn.ModuleList()
        skip_channels = [channels[0]]  # conv_in's output is the first skip
        for i in range(levels):
            last = i == levels - 1
            self.down_blocks.append(
                DownLevel(
                    channels[max(i - 1, 0)],
                    channels[i],
                    num_layers=n,
                    resblock=resblock,
                    transformer=transformer(i, DOWN_TYPES[cfg.down_block_types[i]]),
                    downsample=not last,
                )
            )
            skip_channels += [channels[i]] * (n + (0 if last else 1))
        self.mid_block = MidLevel(
            channels[-1], resblock=resblock, transformer=transformer(levels - 1)
        )

        self.up_blocks = nn.ModuleList()
        for i in range(levels):  # i = 0 is the lowest resolution
            level = levels - 1 - i
            self.up_blocks.append(
                UpLevel(
                    channels[min(level + 1, levels - 1)],
                    channels[level],
                    [skip_channels.pop() for _ in range(n + 1)],
                    resblock=resblock,
                    transformer=transformer(level, UP_TYPES[cfg.up_block_types[i]]),
                    upsample=level > 0,
                )
            )
        self.conv_norm_out = nn.GroupNorm(
            cfg.norm_num_groups, channels[0], eps=cfg.norm_eps
        )
        self.conv_out = nn.Conv2d(channels[0], cfg.out_channels, 3, padding=1)

    def time_features(self, t):
        """Sinusoidal features (B, block_out_channels[0]) of timesteps t (B,), float32.

        DDPM's positional embedding (Ho et al. 2020), in diffusers' ordering.
        """
        return sinusoidal_embedding(
            t.float(),
            self.config.block_out_channels[0],
            flip_sin_to_cos=self.config.flip_sin_to_cos,
            downscale_freq_shift=self.config.freq_shift,
        )

    def embed_time(self, timestep, batch, *, text_embeds=None, time_ids=None):
        """The embedding (B, 4 * block_out_channels[0]) that every ResBlock receives."""
        cfg = self.config
        t = torch.as_tensor(timestep, device=self.conv_in.weight.device)
        features = self.time_features(t.expand(batch))  # (B, C0)
        emb = self.time_embedding(features.to(self.conv_in.weight.dtype))
        if cfg.addition_embed_type != "text_time":
            return emb
        id_features = sinusoidal_embedding(
            time_ids.flatten().float(),
            cfg.addition_time_embed_dim,
            flip_sin_to_cos=cfg.flip_sin_to_cos,
            downscale_freq_shift=cfg.freq_shift,
        )  # (B * K, addition_time_embed_dim)
        id_features = id_features.reshape(batch, -1).to(text_embeds.dtype)
        extra = torch.cat([text_embeds, id_features], dim=-1)  # (B, P + K * dim)
        return emb + self.add_embedding(extra)

    def _check_inputs(self, sample, timestep, context, text_embeds, time_ids):
        cfg = self.config
        checks.tensor(sample, "sample", shape=("B", cfg.in_channels, "H", "W"))
        factor, batch = 2 ** (len(cfg.block_out_channels) - 1), sample.shape[0]
        if sample.shape[2] % factor or sample.shape[3] % factor:
            raise ValueError(
                "sample's H and W must be divisible by the downsampling factor "
                f"{factor}, got {tuple(sample.shape[2:])}"
            )
        checks.tensor(context, "context", shape=(batch, "M", cfg.cross_attention_dim))
        if torch.as_tensor(timestep).shape not in ((), (batch,)):
            raise ValueError(
                f"timestep must be a scalar or have shape ({batch},), "
                f"got {checks.describe(timestep)}"
            )
        if cfg.addition_embed_type != "text_time":
            if text_embeds is not None or time_ids is not None:
                raise ValueError(
                    "text_embeds / time_ids given, but this U-Net has no added "
                    "conditioning"
                )
            return
        if text_embeds is None or time_ids is None:
            raise ValueError(
                "this U-Net (addition_embed_type='text_time', SDXL) needs text_embeds "
                "and time_ids"
            )
        checks.tensor(text_embeds, "text_embeds", shape=(batch, "P"))
        checks.tensor(time_ids, "time_ids", shape=(batch, "K"))
        width, dim = (
            cfg.projection_class_embeddings_input_dim,
            cfg.addition_time_embed_dim,
        )
        if text_embeds.shape[1] + time_ids.shape[1] * dim != width:
            raise ValueError(
                f"text_embeds (B, P) and time_ids (B, K) need P + K * {dim} = {width}, "
                f"got {tuple(text_embeds.shape)} and {tuple(time_ids.shape)}"
            )

    def forward(self, sample, timestep, context, *, text_embeds=None, time_ids=None):
        """sample (B, in_channels, H, W), timestep scalar or (B,), context (B, M, D).

        D is ``cross_attention_dim``; SDXL-like configs also take the pooled
        ``text_embeds`` (B, P) and ``time_ids`` (B, K).
        """
        self._check_inputs(sample, timestep, context, text_embeds, time_ids)
        temb = self.embed_time(
            timestep, sample.shape[0], text_embeds=text_embeds, time_ids=time_ids
        )  # (B, 4 C0)
        x = self.conv_in(sample)  # (B, C0, H, W)
        skips = [x]
        for block in self.down_blocks:
            x, saved = block(x, temb, context)
            skips += saved
        x = self.mid_block(x, temb, context)  # (B, C_last, H / factor, W / factor)
        for block in self.up_blocks:
            x = block(x, skips, temb, context)  # pops its skips, last saved first
        return self.conv_out(F.silu(self.conv_norm_out(x)))  # (B, out_channels, H, W)


def sd15_unet():
    """SD 1.5's UNet (859,520,964 parameters).

    Build under ``with torch.device("meta"):`` to count only.
    """
    return UNet2DCondition(SD15_CONFIG)


def sdxl_unet():
    """SDXL base's UNet (2,567,463,684 parameters), with the size/crop add_embedding."""
    return UNet2DCondition(SDXL_CONFIG)


def tiny_unet(**kwargs):
    """``UNet2DCondition(unet_config.tiny_config(**kwargs))``."""
    return UNet2DCondition(tiny_config(**kwargs))


# ---- checkpoints in diffusers' layout -----------------------------------------------

# diffusers name pattern -> our name; ``checkpoints.rename_key`` applies them in order.
DIFFUSERS_KEY_MAP = (
    (r"\.downsamplers\.0\.", ".downsample."),
    (r"\.upsamplers\.0\.", ".upsample."),
    (r"\.conv_shortcut\.", ".skip."),
    (r"\.transformer_blocks\.", ".blocks."),
    (r"\.attn1\.", ".self_attn."),
    (r"\.attn2\.", ".cross_attn."),
    (r"\.to_out\.0\.", ".to_out."),
    (r"\.ff\.net\.0\.proj\.", ".ff.proj_in."),
    (r"\.ff\.net\.2\.", ".ff.proj_out."),
)


def load_diffusers_state_dict(model, state_dict):
    """Load a diffusers ``UNet2DConditionModel`` state dict into ``model``; returns it.

    Every key is renamed through ``DIFFUSERS_KEY_MAP``. Refuses, naming the keys:
    weights the model needs but the checkpoint lacks, checkpoint keys the model has no
    place for, and shape mismatches (``checkpoints.load_renamed``). A model built on
    the meta device receives the tensors themselves.
    """
    return checkpoints.load_renamed(model, state_dict, DIFFUSERS_KEY_MAP, "this U-Net")


# ---- looking inside -----------------------------------------------------------------


@torch.no_grad()
def cross_attention_maps(model, sample, timestep, context, **added):
    """Cross-attention probabilities of every TransformerBlock in one forward pass.

    Returns {module name: (B, heads, H, W, M)}: for each pixel of that level, how its
    attention splits over the M context tokens (each pixel's M values sum to 1).
    """
    maps, level_shape, handles = {}, {}, []

    def remember_shape(module, inputs):
        level_shape["hw"] = tuple(inputs[0].shape[2:])  # the Transformer2D's (H, W)

    def record(name):
        def hook(module, inputs, output):
            weights = module.weights(*inputs)  # (B, heads, H*W, M)
            maps[name] = weights.unflatten(2, level_shape["hw"])  # (B, heads, H, W, M)

        return hook

    for name, module in model.named_modules():
        if isinstance(module, Transformer2D):
            handles.append(module.register_forward_pre_hook(remember_shape))
        elif name.endswith(".cross_attn"):
            handles.append(module.register_forward_hook(record(name)))
    try:
        model(sample, timestep, context, **added)
    finally:
        for handle in handles:
            handle.remove()
    return maps
