"""The conditional U-Net of Stable Diffusion and SDXL, from readable blocks (notes 3.2).

    unet = UNet2DCondition(UNetConfig(...))          # or sd15_unet(), sdxl_unet(), tiny_unet()
    eps = unet(sample, timestep, context)            # (B, 4, H, W), (B,) or scalar, (B, M, D)

Three parts (notes 3.2.1): the *down* path (per level: ResBlocks, each optionally followed by
a Transformer2D with self- and cross-attention, then a stride-2 conv), the *mid* block
(ResBlock, Transformer2D, ResBlock) and the *up* path (per level: one more ResBlock than down,
each fed the concatenation of the features and one skip tensor saved on the way down, then a
nearest x2 upsample). The timestep embedding reaches every ResBlock.

Settings carry diffusers' names, so a published ``config.json`` carries over one to one
(``UNetConfig.from_diffusers``). One quirk is kept on purpose: diffusers' ``attention_head_dim``
is the *number of heads* when ``num_attention_heads`` is not given (SD 1.5: 8 heads of 40..160
channels; SDXL: 5/10/20 heads of 64 channels). ``load_diffusers_state_dict`` reads checkpoints in
diffusers' layout through ``DIFFUSERS_KEY_MAP``, a table of renamings.
"""

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import checkpoints
from .autoencoder_kl import (
    Upsample,
)  # the VAE decoder's block: nearest x2, then a 3x3 conv
from .embeddings import sinusoidal_embedding
from .unet_blocks import (
    Downsample,
    ResBlock,
    TimestepEmbedding,
    Transformer2D,
)

DOWN_TYPES = {
    "CrossAttnDownBlock2D": True,
    "DownBlock2D": False,
}  # block type -> has attention
UP_TYPES = {"CrossAttnUpBlock2D": True, "UpBlock2D": False}


@dataclass(frozen=True)
class UNetConfig:
    """Architectural settings under diffusers' names (defaults: SD 1.5's UNet)."""

    sample_size: int = (
        64  # latent height and width it was trained at (informative only)
    )
    in_channels: int = 4
    out_channels: int = 4
    flip_sin_to_cos: bool = True  # timestep features ordered [cos, sin]
    freq_shift: float = 0.0
    down_block_types: tuple = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    up_block_types: tuple = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    block_out_channels: tuple = (
        320,
        640,
        1280,
        1280,
    )  # channels per level, highest resolution first
    layers_per_block: int = 2  # ResBlocks per down level (up levels get one more)
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    cross_attention_dim: int = 768  # width D of the context tokens
    transformer_layers_per_block: object = (
        1  # int or one per level; the mid block uses the last
    )
    attention_head_dim: object = (
        8  # diffusers: the number of heads unless num_attention_heads is set
    )
    num_attention_heads: object = None
    use_linear_projection: bool = False
    addition_embed_type: str = (
        None  # "text_time" for SDXL's pooled-text + size/crop conditioning
    )
    addition_time_embed_dim: int = None  # sinusoid width per time_id (SDXL: 256)
    projection_class_embeddings_input_dim: int = (
        None  # pooled text + 6 time_ids (SDXL: 1280 + 6*256)
    )
    dropout: float = 0.0

    def __post_init__(self):
        levels = len(self.block_out_channels)
        if len(self.down_block_types) != levels or len(self.up_block_types) != levels:
            raise ValueError(
                f"need one down and one up block type per level ({levels} levels), got "
                f"{len(self.down_block_types)} and {len(self.up_block_types)}"
            )
        for kind, known in (
            (self.down_block_types, DOWN_TYPES),
            (self.up_block_types, UP_TYPES),
        ):
            unknown = [k for k in kind if k not in known]
            if unknown:
                raise ValueError(
                    f"unsupported block types {unknown}; this U-Net has {sorted(known)}"
                )
        for c in self.block_out_channels:
            if c % self.norm_num_groups:
                raise ValueError(
                    f"block_out_channels {c} is not divisible by norm_num_groups {self.norm_num_groups}"
                )
        if self.addition_embed_type not in (None, "text_time"):
            raise ValueError(
                f"addition_embed_type {self.addition_embed_type!r} is not supported (None or 'text_time')"
            )
        if self.addition_embed_type == "text_time" and not (
            self.addition_time_embed_dim and self.projection_class_embeddings_input_dim
        ):
            raise ValueError(
                "addition_embed_type='text_time' needs addition_time_embed_dim and projection_class_embeddings_input_dim"
            )
        self.heads(), self.transformer_depths()  # validate the per-level lists

    def _per_level(self, value, name):
        value = (
            tuple(value)
            if isinstance(value, (tuple, list))
            else (value,) * len(self.block_out_channels)
        )
        if len(value) != len(self.block_out_channels):
            raise ValueError(
                f"{name} has {len(value)} entries for {len(self.block_out_channels)} levels"
            )
        return value

    def heads(self):
        """Attention heads per level (diffusers: ``num_attention_heads or attention_head_dim``)."""
        heads = (
            self.num_attention_heads
            if self.num_attention_heads is not None
            else self.attention_head_dim
        )
        return self._per_level(heads, "num_attention_heads")

    def transformer_depths(self):
        """TransformerBlocks per Transformer2D, per level."""
        return self._per_level(
            self.transformer_layers_per_block, "transformer_layers_per_block"
        )

    @classmethod
    def from_diffusers(cls, config):
        """A UNetConfig from a diffusers UNet2DConditionModel config (dict); refuses what we don't build."""
        config = dict(config)
        defaults = {
            "mid_block_type": "UNetMidBlock2DCrossAttn",
            "center_input_sample": False,
            "act_fn": "silu",
            "downsample_padding": 1,
            "mid_block_scale_factor": 1,
            "class_embed_type": None,
            "time_embedding_type": "positional",
            "resnet_time_scale_shift": "default",
            "only_cross_attention": False,
            "dual_cross_attention": False,
            "encoder_hid_dim": None,
            "conv_in_kernel": 3,
            "conv_out_kernel": 3,
            "reverse_transformer_layers_per_block": None,
        }
        for key, value in defaults.items():
            if key in config and config[key] != value:
                raise ValueError(
                    f"diffusers setting {key}={config[key]!r} is not built here (only {value!r})"
                )
        names = {f.name for f in fields(cls)}
        kept = {
            k: tuple(v) if isinstance(v, list) else v
            for k, v in config.items()
            if k in names
        }
        return cls(**kept)


class DownLevel(nn.Module):
    """One level of the down path: ResBlocks (+ Transformer2D after each), then an optional Downsample.

    Returns the features and the skip tensors saved for the up path (one per ResBlock and one
    after the Downsample).
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        *,
        num_layers,
        attention,
        heads,
        depth,
        add_downsample,
        cfg,
    ):
        super().__init__()
        res = dict(
            temb_channels=4 * cfg.block_out_channels[0],
            groups=cfg.norm_num_groups,
            eps=cfg.norm_eps,
            dropout=cfg.dropout,
        )
        self.resnets = nn.ModuleList(
            ResBlock(in_channels if j == 0 else out_channels, out_channels, **res)
            for j in range(num_layers)
        )
        self.attentions = nn.ModuleList(
            Transformer2D(
                out_channels,
                heads=heads,
                depth=depth,
                context_dim=cfg.cross_attention_dim,
                groups=cfg.norm_num_groups,
                use_linear_projection=cfg.use_linear_projection,
            )
            for _ in range(num_layers if attention else 0)
        )
        self.downsample = Downsample(out_channels) if add_downsample else None

    def forward(self, x, temb, context):
        skips = []
        for j, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if self.attentions:
                x = self.attentions[j](x, context)
            skips.append(x)
        if self.downsample is not None:
            x = self.downsample(x)
            skips.append(x)
        return x, skips


class MidBlock(nn.Module):
    """ResBlock, Transformer2D, ResBlock at the lowest resolution."""

    def __init__(self, channels, *, heads, depth, cfg):
        super().__init__()
        res = dict(
            temb_channels=4 * cfg.block_out_channels[0],
            groups=cfg.norm_num_groups,
            eps=cfg.norm_eps,
            dropout=cfg.dropout,
        )
        self.resnets = nn.ModuleList(
            [ResBlock(channels, channels, **res), ResBlock(channels, channels, **res)]
        )
        self.attentions = nn.ModuleList(
            [
                Transformer2D(
                    channels,
                    heads=heads,
                    depth=depth,
                    context_dim=cfg.cross_attention_dim,
                    groups=cfg.norm_num_groups,
                    use_linear_projection=cfg.use_linear_projection,
                )
            ]
        )

    def forward(self, x, temb, context):
        x = self.resnets[0](x, temb)
        x = self.attentions[0](x, context)
        return self.resnets[1](x, temb)


class UpLevel(nn.Module):
    """One level of the up path: ResBlocks on [features, skip] concatenations (+ Transformer2D), then Upsample."""

    def __init__(
        self,
        in_channels,
        out_channels,
        skip_channels,
        *,
        attention,
        heads,
        depth,
        add_upsample,
        cfg,
    ):
        super().__init__()
        res = dict(
            temb_channels=4 * cfg.block_out_channels[0],
            groups=cfg.norm_num_groups,
            eps=cfg.norm_eps,
            dropout=cfg.dropout,
        )
        self.resnets = nn.ModuleList(
            ResBlock(
                (in_channels if j == 0 else out_channels) + skip, out_channels, **res
            )
            for j, skip in enumerate(skip_channels)
        )
        self.attentions = nn.ModuleList(
            Transformer2D(
                out_channels,
                heads=heads,
                depth=depth,
                context_dim=cfg.cross_attention_dim,
                groups=cfg.norm_num_groups,
                use_linear_projection=cfg.use_linear_projection,
            )
            for _ in range(len(skip_channels) if attention else 0)
        )
        self.upsample = Upsample(out_channels) if add_upsample else None

    def forward(self, x, skips, temb, context):
        for j, resnet in enumerate(self.resnets):
            x = resnet(
                torch.cat([x, skips.pop()], dim=1), temb
            )  # (B, C + C_skip, H, W) -> (B, C_out, H, W)
            if self.attentions:
                x = self.attentions[j](x, context)
        if self.upsample is not None:
            x = self.upsample(x)
        return x


class UNet2DCondition(nn.Module):
    """eps_theta(z_t, t, context): the conditional U-Net of SD / SDXL (Rombach et al. 2022; Podell et al. 2023)."""

    def __init__(self, config=None):
        super().__init__()
        cfg = self.config = config if config is not None else UNetConfig()
        channels, heads, depths = (
            cfg.block_out_channels,
            cfg.heads(),
            cfg.transformer_depths(),
        )
        levels, n = len(channels), cfg.layers_per_block
        temb = 4 * channels[0]
        self.time_embedding = TimestepEmbedding(channels[0], temb)
        if (
            cfg.addition_embed_type == "text_time"
        ):  # SDXL: pooled text embedding + size/crop ids
            self.add_embedding = TimestepEmbedding(
                cfg.projection_class_embeddings_input_dim, temb
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
                    attention=DOWN_TYPES[cfg.down_block_types[i]],
                    heads=heads[i],
                    depth=depths[i],
                    add_downsample=not last,
                    cfg=cfg,
                )
            )
            skip_channels += [channels[i]] * (n + (0 if last else 1))
        self.mid_block = MidBlock(
            channels[-1], heads=heads[-1], depth=depths[-1], cfg=cfg
        )

        self.up_blocks = nn.ModuleList()
        for i in range(levels):  # i = 0 is the lowest resolution
            level = levels - 1 - i
            self.up_blocks.append(
                UpLevel(
                    channels[min(level + 1, levels - 1)],
                    channels[level],
                    [skip_channels.pop() for _ in range(n + 1)],
                    attention=UP_TYPES[cfg.up_block_types[i]],
                    heads=heads[level],
                    depth=depths[level],
                    add_upsample=level > 0,
                    cfg=cfg,
                )
            )
        self.conv_norm_out = nn.GroupNorm(
            cfg.norm_num_groups, channels[0], eps=cfg.norm_eps
        )
        self.conv_out = nn.Conv2d(channels[0], cfg.out_channels, 3, padding=1)

    def time_features(self, t):
        """The sinusoidal features (B, block_out_channels[0]) of the timesteps t (B,), float32."""
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
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(
                f"timestep must be a scalar or have shape ({batch},), got {tuple(t.shape)}"
            )
        features = self.time_features(t)  # (B, C0)
        emb = self.time_embedding(features.to(self.conv_in.weight.dtype))
        if cfg.addition_embed_type != "text_time":
            if text_embeds is not None or time_ids is not None:
                raise ValueError(
                    "text_embeds / time_ids given, but this U-Net has no added conditioning"
                )
            return emb
        if text_embeds is None or time_ids is None:
            raise ValueError(
                "this U-Net (addition_embed_type='text_time', SDXL) needs text_embeds and time_ids"
            )
        width = cfg.projection_class_embeddings_input_dim
        if (
            text_embeds.dim() != 2
            or time_ids.dim() != 2
            or text_embeds.shape[0] != batch
            or time_ids.shape[0] != batch
            or text_embeds.shape[1] + time_ids.shape[1] * cfg.addition_time_embed_dim
            != width
        ):
            raise ValueError(
                f"text_embeds (B, P) and time_ids (B, K) need P + K * {cfg.addition_time_embed_dim} = "
                f"{width}, got {tuple(text_embeds.shape)} and {tuple(time_ids.shape)}"
            )
        id_features = sinusoidal_embedding(
            time_ids.flatten().float(),
            cfg.addition_time_embed_dim,
            flip_sin_to_cos=cfg.flip_sin_to_cos,
            downscale_freq_shift=cfg.freq_shift,
        )
        extra = torch.cat(
            [text_embeds, id_features.reshape(batch, -1).to(text_embeds.dtype)], dim=-1
        )  # (B, width)
        return emb + self.add_embedding(extra)

    def forward(self, sample, timestep, context, *, text_embeds=None, time_ids=None):
        """sample (B, in_channels, H, W), timestep scalar or (B,), context (B, M, cross_attention_dim)."""
        cfg = self.config
        factor = 2 ** (len(cfg.block_out_channels) - 1)
        if sample.dim() != 4 or sample.shape[1] != cfg.in_channels:
            raise ValueError(
                f"sample must be (B, {cfg.in_channels}, H, W), got {tuple(sample.shape)}"
            )
        if sample.shape[2] % factor or sample.shape[3] % factor:
            raise ValueError(
                f"H and W must be divisible by the downsampling factor {factor}, got {tuple(sample.shape[2:])}"
            )
        if (
            context.dim() != 3
            or context.shape[0] != sample.shape[0]
            or context.shape[2] != cfg.cross_attention_dim
        ):
            raise ValueError(
                f"context must be (B={sample.shape[0]}, M, {cfg.cross_attention_dim}), got {tuple(context.shape)}"
            )
        temb = self.embed_time(
            timestep, sample.shape[0], text_embeds=text_embeds, time_ids=time_ids
        )

        x = self.conv_in(sample)  # (B, C0, H, W)
        skips = [x]
        for block in self.down_blocks:
            x, saved = block(x, temb, context)
            skips += saved
        x = self.mid_block(x, temb, context)  # (B, C_last, H / factor, W / factor)
        for block in self.up_blocks:
            x = block(
                x, skips, temb, context
            )  # pops the skips it uses, last saved first
        return self.conv_out(F.silu(self.conv_norm_out(x)))  # (B, out_channels, H, W)


# ---- presets -----------------------------------------------------------------------------

SD15_CONFIG = UNetConfig()  # runwayml/stable-diffusion-v1-5, unet/config.json

SDXL_CONFIG = UNetConfig(  # stabilityai/stable-diffusion-xl-base-1.0, unet/config.json
    sample_size=128,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(320, 640, 1280),
    cross_attention_dim=2048,
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)


def sd15_unet():
    """SD 1.5's UNet (859,520,964 parameters). Build under ``with torch.device("meta"):`` to count only."""
    return UNet2DCondition(SD15_CONFIG)


def sdxl_unet():
    """SDXL base's UNet (2,567,463,684 parameters), with the size/crop ``add_embedding``."""
    return UNet2DCondition(SDXL_CONFIG)


def tiny_config(
    *,
    channels=(32, 64, 64),
    cross_attention_dim=32,
    heads=4,
    layers_per_block=1,
    groups=8,
    in_channels=1,
    sample_size=8,
    text_time=False,
):
    """A small config with SD 1.5's layout (attention at every level but the lowest), for training here.

    ``text_time=True`` adds SDXL's added conditioning (pooled text of width cross_attention_dim
    plus 6 time ids of 8 sinusoid features each); the tests use it against diffusers.
    """
    levels = len(channels)
    extra = (
        dict(
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=cross_attention_dim + 6 * 8,
        )
        if text_time
        else {}
    )
    return UNetConfig(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        down_block_types=("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1),
        block_out_channels=tuple(channels),
        layers_per_block=layers_per_block,
        norm_num_groups=groups,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=heads,
        **extra,
    )


def tiny_unet(**kwargs):
    """``UNet2DCondition(tiny_config(**kwargs))``."""
    return UNet2DCondition(tiny_config(**kwargs))


# ---- checkpoints in diffusers' layout ------------------------------------------------------

# diffusers name pattern -> our name. Data, applied in order by ``checkpoints.rename_key``.
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


def diffusers_to_ours(key):
    """Our parameter name for a diffusers checkpoint key (e.g. ``...attn2.to_out.0.weight``)."""
    return checkpoints.rename_key(key, DIFFUSERS_KEY_MAP)


def load_diffusers_state_dict(model, state_dict):
    """Load a diffusers ``UNet2DConditionModel`` state dict into ``model``; returns ``model``.

    Every key is renamed through ``DIFFUSERS_KEY_MAP``. Refuses, naming the keys: weights the
    model needs but the checkpoint lacks, checkpoint keys the model has no place for, and
    shape mismatches (``checkpoints.load_renamed``). A model built on the meta device
    receives the tensors themselves.
    """
    return checkpoints.load_renamed(model, state_dict, DIFFUSERS_KEY_MAP, "this U-Net")


def config_dict(config):
    """The config as a plain dict of diffusers-named settings (for building diffusers' model)."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()
    }


# ---- looking inside -------------------------------------------------------------------------


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
            maps[name] = module.weights(*inputs).unflatten(
                2, level_shape["hw"]
            )  # (B, heads, H, W, M)

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
