"""The settings of a conditional U-Net, under diffusers' names (notes 3.2).

    config = UNetConfig(...)            # or SD15_CONFIG, SDXL_CONFIG, tiny_config()
    config = UNetConfig.from_diffusers(json.load(open("unet/config.json")))
    config_dict(config)                       # back to diffusers' keyword arguments

A config is plain data: ``oldschool.unet.UNet2DCondition(config)`` builds the network.
The names are diffusers' (``UNet2DConditionModel``), so a published ``config.json``
carries over one to one. One quirk is kept on purpose: diffusers' ``attention_head_dim``
is the *number of heads* when ``num_attention_heads`` is not given (SD 1.5: 8 heads of
40..160 channels; SDXL: 5/10/20 heads of 64 channels).
"""

from dataclasses import asdict, dataclass, fields

# block type -> has attention
DOWN_TYPES = {"CrossAttnDownBlock2D": True, "DownBlock2D": False}
UP_TYPES = {"CrossAttnUpBlock2D": True, "UpBlock2D": False}

# diffusers settings this U-Net builds only in their default form
_DIFFUSERS_DEFAULTS = {
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


@dataclass(frozen=True)
class UNetConfig:
    """Architectural settings under diffusers' names (defaults: SD 1.5's UNet)."""

    # latent height and width it was trained at (informative only)
    sample_size: int = 64
    in_channels: int = 4
    out_channels: int = 4
    flip_sin_to_cos: bool = True  # timestep features ordered [cos, sin]
    freq_shift: float = 0.0
    down_block_types: tuple = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    up_block_types: tuple = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    # channels per level, highest resolution first
    block_out_channels: tuple = (320, 640, 1280, 1280)
    layers_per_block: int = 2  # ResBlocks per down level (up levels get one more)
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    cross_attention_dim: int = 768  # width D of the context tokens
    # int or one per level; the mid level uses the last
    transformer_layers_per_block: object = 1
    # diffusers: the number of heads unless num_attention_heads is set
    attention_head_dim: object = 8
    num_attention_heads: object = None
    use_linear_projection: bool = False
    # "text_time" for SDXL's pooled-text + size/crop conditioning
    addition_embed_type: str = None
    addition_time_embed_dim: int = None  # sinusoid width per time_id (SDXL: 256)
    # pooled text + 6 time_ids (SDXL: 1280 + 6*256)
    projection_class_embeddings_input_dim: int = None
    dropout: float = 0.0

    def __post_init__(self):
        levels = len(self.block_out_channels)
        if len(self.down_block_types) != levels or len(self.up_block_types) != levels:
            raise ValueError(
                f"need one down and one up block type per level ({levels} levels), "
                f"got {len(self.down_block_types)} and {len(self.up_block_types)}"
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
                    f"block_out_channels {c} is not divisible by norm_num_groups "
                    f"{self.norm_num_groups}"
                )
        if self.addition_embed_type not in (None, "text_time"):
            raise ValueError(
                f"addition_embed_type {self.addition_embed_type!r} is not supported "
                "(None or 'text_time')"
            )
        if self.addition_embed_type == "text_time" and not (
            self.addition_time_embed_dim and self.projection_class_embeddings_input_dim
        ):
            raise ValueError(
                "addition_embed_type='text_time' needs addition_time_embed_dim and "
                "projection_class_embeddings_input_dim"
            )
        self.heads(), self.transformer_depths()  # validate the per-level lists

    def _per_level(self, value, name):
        levels = len(self.block_out_channels)
        value = tuple(value) if isinstance(value, (tuple, list)) else (value,) * levels
        if len(value) != levels:
            raise ValueError(f"{name} has {len(value)} entries for {levels} levels")
        return value

    def heads(self):
        """Attention heads per level (num_attention_heads, else attention_head_dim)."""
        heads = self.num_attention_heads
        heads = self.attention_head_dim if heads is None else heads
        return self._per_level(heads, "num_attention_heads")

    def transformer_depths(self):
        """TransformerBlocks per Transformer2D, per level."""
        return self._per_level(
            self.transformer_layers_per_block, "transformer_layers_per_block"
        )

    @property
    def temb_channels(self):
        """Width of the time embedding each ResBlock gets: 4 block_out_channels[0]."""
        return 4 * self.block_out_channels[0]

    @classmethod
    def from_diffusers(cls, config):
        """A UNetConfig from a diffusers UNet2DConditionModel config (a dict).

        Refuses, naming the setting, what this U-Net does not build.
        """
        config = dict(config)
        for key, value in _DIFFUSERS_DEFAULTS.items():
            if key in config and config[key] != value:
                raise ValueError(
                    f"diffusers setting {key}={config[key]!r} is not built here "
                    f"(only {value!r})"
                )
        names = {f.name for f in fields(cls)}
        kept = {
            k: tuple(v) if isinstance(v, list) else v
            for k, v in config.items()
            if k in names
        }
        return cls(**kept)


def config_dict(config):
    """The config as a plain dict of diffusers-named settings (for diffusers' model)."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()
    }


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
    """A small config with SD 1.5's layout (attention at every level but the lowest).

    ``text_time=True`` adds SDXL's added conditioning (pooled text of width
    cross_attention_dim plus 6 time ids of 8 sinusoid features each); the tests use it
    against diffusers.
    """
    levels = len(channels)
    extra = {}
    if text_time:
        extra = dict(
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=cross_attention_dim + 6 * 8,
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
