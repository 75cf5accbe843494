"""The KL-regularized latent autoencoder of SD, SDXL, SD3 and FLUX (notes 2.2).

One architecture, "KL-f8" (Rombach et al. 2022, "High-Resolution Image Synthesis with
Latent Diffusion Models", sec. 3 and app. G), serves all four model families; they
differ only in the number of latent channels, in whether the two 1x1 "quant"
convolutions are there, and in the weights (hence the latent scaling and shift factors):

    image (B, 3, H, W)
      -> Encoder: conv_in, one level per entry of block_out_channels (ResnetBlocks,
         then a stride-2 conv on every level but the last), mid (ResnetBlock,
         self-attention, ResnetBlock), GroupNorm, SiLU, conv_out to 2 * latent_channels
      -> [quant_conv 1x1] -> mean, logvar: q(z|x) = N(mean, diag(exp(logvar))), eq. (3)
      -> z (B, latent_channels, H/f, W/f), f = 2 ** (len(block_out_channels) - 1)
      -> [post_quant_conv 1x1] -> Decoder: the mirror image, nearest-upsampling + conv.

Settings take the names diffusers uses (``block_out_channels``, ``layers_per_block``,
``latent_channels``, ``norm_num_groups``, ``use_quant_conv``, ...), so a published
config carries over one to one; ``load_diffusers_state_dict`` maps a checkpoint in
diffusers' key layout onto the modules here (the key map is data:
``DIFFUSERS_KEY_MAP``). The loss the real models were trained with (notes eq. (11), as
latent-diffusion implements it) is ``autoencoder_kl_loss.KLAutoencoderLoss``.
"""

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import checks, checkpoints
from .conv_blocks import Downsample, Upsample
from .gaussians import DiagonalGaussian

GROUP_NORM_EPS = 1e-6  # every GroupNorm of the published VAEs uses eps = 1e-6
LOGVAR_RANGE = (-30.0, 20.0)  # latent diffusion clamps the encoder's logvar to this


@dataclass(frozen=True)
class AutoencoderKLConfig:
    """Architecture and latent normalization, named as diffusers' ``AutoencoderKL``."""

    in_channels: int = 3  # image channels in
    out_channels: int = 3  # image channels out
    block_out_channels: tuple = (128, 256, 512, 512)  # channels per resolution level
    layers_per_block: int = 2  # ResnetBlocks per encoder level (decoder: one more)
    latent_channels: int = 4  # channels of z
    norm_num_groups: int = 32  # GroupNorm groups
    use_quant_conv: bool = True  # 1x1 conv on (mean, logvar) after the encoder
    use_post_quant_conv: bool = True  # 1x1 conv on z before the decoder
    scaling_factor: float = 0.18215  # z_diffusion = (z - shift_factor) * scaling_factor
    shift_factor: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "block_out_channels", tuple(self.block_out_channels))
        if not self.block_out_channels:
            raise ValueError("block_out_channels must name at least one level")
        for c in self.block_out_channels:
            checks.number(c, "block_out_channels", low=1, integer=True)
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(
                f"block_out_channels {bad} are not divisible by "
                f"norm_num_groups={self.norm_num_groups}"
            )
        for name in ("in_channels", "out_channels", "layers_per_block"):
            checks.number(getattr(self, name), name, low=1, integer=True)
        checks.number(self.latent_channels, "latent_channels", low=1, integer=True)

    @property
    def downsampling_factor(self):
        """f = 2 ** (levels - 1): a stride-2 conv on each level but the last (KL-f8)."""
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def from_diffusers(cls, config):
        """Our config from a diffusers ``AutoencoderKL`` config dict (a config.json)."""
        unsupported = {
            "down_block_types": lambda v: set(v) == {"DownEncoderBlock2D"},
            "up_block_types": lambda v: set(v) == {"UpDecoderBlock2D"},
            "act_fn": lambda v: v == "silu",
            "mid_block_add_attention": lambda v: v is True,
        }
        for key, ok in unsupported.items():
            if key in config and not ok(config[key]):
                raise ValueError(
                    "this AutoencoderKL supports only the SD/SDXL/SD3/FLUX layout; "
                    f"got {key}={config[key]!r}"
                )
        settings = {k: v for k, v in config.items() if k in cls.__dataclass_fields__}
        if settings.get("shift_factor") is None:  # diffusers writes None for "no shift"
            settings["shift_factor"] = 0.0
        return cls(**settings)


def _group_norm(channels, groups):
    return nn.GroupNorm(groups, channels, eps=GROUP_NORM_EPS)


class ResnetBlock(nn.Module):
    """x + conv(SiLU(norm(conv(SiLU(norm(x)))))); a 1x1 skip conv if C changes."""

    def __init__(self, in_channels, out_channels, groups):
        super().__init__()
        self.norm1 = _group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _group_norm(out_channels, groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else None
        )

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        h = self.conv2(F.silu(self.norm2(h)))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return skip + h


class SelfAttention(nn.Module):
    """Single-head self-attention over the H*W positions of a feature map, residual."""

    def __init__(self, channels, groups):
        super().__init__()
        self.norm = _group_norm(channels, groups)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, H*W, C): a token per pixel
        q, k, v = self.to_q(h), self.to_k(h), self.to_v(h)  # (B, H*W, C) each
        h = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v
        h = self.to_out(h).transpose(1, 2).reshape(B, C, H, W)
        return x + h


class MidBlock(nn.Module):
    """ResnetBlock, self-attention, ResnetBlock at the lowest resolution."""

    def __init__(self, channels, groups):
        super().__init__()
        self.resnet1 = ResnetBlock(channels, channels, groups)
        self.attention = SelfAttention(channels, groups)
        self.resnet2 = ResnetBlock(channels, channels, groups)

    def forward(self, x):
        return self.resnet2(self.attention(self.resnet1(x)))


class Level(nn.Module):
    """ResnetBlocks at one resolution, then an optional down- or upsampling."""

    def __init__(self, in_channels, out_channels, n_resnets, groups, resample=None):
        super().__init__()
        channels = [in_channels] + [out_channels] * n_resnets
        self.resnets = nn.ModuleList(
            ResnetBlock(a, b, groups) for a, b in zip(channels[:-1], channels[1:])
        )
        self.downsample = (
            Downsample(out_channels, pad_bottom_right=True)
            if resample == "down"
            else None
        )
        self.upsample = Upsample(out_channels) if resample == "up" else None

    def forward(self, x):
        for resnet in self.resnets:
            x = resnet(x)
        if self.downsample is not None:
            x = self.downsample(x)
        if self.upsample is not None:
            x = self.upsample(x)
        return x


class Encoder(nn.Module):
    """x (B, C_in, H, W) -> (mean, logvar) stacked: (B, 2 * C_z, H/f, W/f)."""

    def __init__(self, cfg):
        super().__init__()
        chans, groups = cfg.block_out_channels, cfg.norm_num_groups
        self.conv_in = nn.Conv2d(cfg.in_channels, chans[0], 3, padding=1)
        self.levels = nn.ModuleList(
            Level(
                chans[max(i - 1, 0)],
                chans[i],
                cfg.layers_per_block,
                groups,
                resample="down" if i < len(chans) - 1 else None,
            )
            for i in range(len(chans))
        )
        self.mid = MidBlock(chans[-1], groups)
        self.norm_out = _group_norm(chans[-1], groups)
        self.conv_out = nn.Conv2d(chans[-1], 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.levels:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """z (B, C_z, h, w) -> x_hat (B, C_out, h*f, w*f).

    Each level has layers_per_block + 1 ResnetBlocks, one more than the encoder's.
    """

    def __init__(self, cfg):
        super().__init__()
        chans = cfg.block_out_channels[::-1]  # lowest resolution first
        groups = cfg.norm_num_groups
        self.conv_in = nn.Conv2d(cfg.latent_channels, chans[0], 3, padding=1)
        self.mid = MidBlock(chans[0], groups)
        self.levels = nn.ModuleList(
            Level(
                chans[max(i - 1, 0)],
                chans[i],
                cfg.layers_per_block + 1,
                groups,
                resample="up" if i < len(chans) - 1 else None,
            )
            for i in range(len(chans))
        )
        self.norm_out = _group_norm(chans[-1], groups)
        self.conv_out = nn.Conv2d(chans[-1], cfg.out_channels, 3, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for level in self.levels:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    """KL-f8: ``encode(x) -> DiagonalGaussian``, ``decode(z) -> x_hat`` (notes 2.2).

    Build it from an ``AutoencoderKLConfig`` or from keyword settings (diffusers'
    names): ``AutoencoderKL(block_out_channels=(32, 64), norm_num_groups=8)``.
    """

    def __init__(self, config=None, **settings):
        super().__init__()
        cfg = (
            AutoencoderKLConfig(**settings)
            if config is None
            else replace(config, **settings)
        )
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.quant_conv = (
            nn.Conv2d(2 * cfg.latent_channels, 2 * cfg.latent_channels, 1)
            if cfg.use_quant_conv
            else None
        )
        self.post_quant_conv = (
            nn.Conv2d(cfg.latent_channels, cfg.latent_channels, 1)
            if cfg.use_post_quant_conv
            else None
        )
        self.decoder = Decoder(cfg)

    @property
    def scaling_factor(self):
        return self.config.scaling_factor

    @property
    def shift_factor(self):
        return self.config.shift_factor

    def encode(self, x):
        """q(z|x) = N(mean, diag(exp(logvar))) (eq. (3)); each (B, C_z, H/f, W/f)."""
        checks.tensor(x, "x", shape=("B", self.config.in_channels, "H", "W"))
        f = self.config.downsampling_factor
        if x.shape[2] % f or x.shape[3] % f:
            raise ValueError(
                f"image size {tuple(x.shape[2:])} is not divisible by the "
                f"downsampling factor {f}"
            )
        moments = self.encoder(x)  # (B, 2 * latent_channels, H/f, W/f)
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        mean, logvar = moments.chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar.clamp(*LOGVAR_RANGE))

    def decode(self, z):
        """x_hat (B, C_out, h*f, w*f) from latents z (B, latent_channels, h, w)."""
        checks.tensor(z, "z", shape=("B", self.config.latent_channels, "h", "w"))
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)

    def forward(self, x, sample_posterior=True, generator=None):
        """(x_hat, q): the reconstruction from z ~ q(z|x) (or from its mean), and q."""
        posterior = self.encode(x)
        z = (
            posterior.sample(generator=generator)
            if sample_posterior
            else posterior.mode()
        )
        return self.decode(z), posterior


# ---- presets: the published models, and small ones to train here --------------------


def sd_vae():
    """Stable Diffusion 1.x/2.x VAE (KL-f8, 4 latent channels); 83,653,863 weights."""
    return AutoencoderKL(scaling_factor=0.18215)


def sdxl_vae():
    """SDXL VAE: SD's architecture retrained (batch 256, EMA); scaling 0.13025."""
    return AutoencoderKL(scaling_factor=0.13025)


def sd3_vae():
    """SD3 VAE: 16 latent channels, no quant convs; latents (z - 0.0609) * 1.5305."""
    return AutoencoderKL(
        latent_channels=16,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=1.5305,
        shift_factor=0.0609,
    )


def flux_vae():
    """FLUX.1 VAE: SD3's architecture, retrained; latents (z - 0.1159) * 0.3611."""
    return AutoencoderKL(
        latent_channels=16,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=0.3611,
        shift_factor=0.1159,
    )


def small_vae(
    latent_channels=4,
    block_out_channels=(16, 32, 32),
    layers_per_block=1,
    norm_num_groups=8,
    initial_logvar=None,
    image_channels=3,
):
    """A small KL autoencoder to train here; f = 2**(levels - 1) (3 levels: KL-f4).

    Scaling factor left at 1. initial_logvar: None (the default) keeps PyTorch's
    default initialization; a number sets the starting log-variance of q(z|x) (the bias
    of the layer that outputs it), a stated departure a chapter must then justify.
    image_channels: 3 for colour images, 1 for grey ones (the digits of chapter 9).
    """
    model = AutoencoderKL(
        block_out_channels=block_out_channels,
        layers_per_block=layers_per_block,
        latent_channels=latent_channels,
        norm_num_groups=norm_num_groups,
        scaling_factor=1.0,
        in_channels=image_channels,
        out_channels=image_channels,
    )
    if initial_logvar is not None:
        last = (
            model.quant_conv if model.quant_conv is not None else model.encoder.conv_out
        )
        with torch.no_grad():
            # channels C..2C of the moments are the log-variance
            last.bias[latent_channels:] = initial_logvar
    return model


PRESETS = {"sd": sd_vae, "sdxl": sdxl_vae, "sd3": sd3_vae, "flux": flux_vae}


def parameter_table(model):
    """Parameter counts: encoder, decoder (both without attention), attention, quant."""
    counts = {"encoder": 0, "decoder": 0, "attention": 0, "quant convs": 0}
    for name, p in model.named_parameters():
        if ".attention." in name:
            counts["attention"] += p.numel()
        elif name.startswith(("quant_conv", "post_quant_conv")):
            counts["quant convs"] += p.numel()
        else:
            counts[name.split(".")[0]] += p.numel()
    counts["total"] = sum(counts.values())
    return counts


def shape_trace(model, x):
    """(module name, output shape) of each stage of decode(encode(x)); runs on meta."""
    stages = [("encoder.conv_in", model.encoder.conv_in)]
    stages += [
        (f"encoder.levels.{i}", level) for i, level in enumerate(model.encoder.levels)
    ]
    stages += [
        ("encoder.mid", model.encoder.mid),
        ("encoder.conv_out", model.encoder.conv_out),
    ]
    if model.quant_conv is not None:
        stages.append(("quant_conv", model.quant_conv))
    if model.post_quant_conv is not None:
        stages.append(("post_quant_conv", model.post_quant_conv))
    stages += [
        ("decoder.conv_in", model.decoder.conv_in),
        ("decoder.mid", model.decoder.mid),
    ]
    stages += [
        (f"decoder.levels.{i}", level) for i, level in enumerate(model.decoder.levels)
    ]
    stages.append(("decoder.conv_out", model.decoder.conv_out))
    trace = []
    hooks = [
        module.register_forward_hook(
            lambda m, i, out, name=name: trace.append((name, tuple(out.shape)))
        )
        for name, module in stages
    ]
    try:
        with torch.no_grad():
            model.decode(model.encode(x).mode())
    finally:
        for hook in hooks:
            hook.remove()
    return trace


# ---- loading published weights (diffusers' key layout) ------------------------------

# (pattern in a diffusers checkpoint key, our name), applied in order by
# checkpoints.rename_key. Data, not dispatch.
DIFFUSERS_KEY_MAP = (
    (r"^(encoder|decoder)\.conv_norm_out\.", r"\1.norm_out."),
    (r"^encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.levels.\1.resnets."),
    (
        r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.",
        r"encoder.levels.\1.downsample.",
    ),
    (r"^decoder\.up_blocks\.(\d+)\.resnets\.", r"decoder.levels.\1.resnets."),
    (r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", r"decoder.levels.\1.upsample."),
    (r"\.mid_block\.resnets\.0\.", ".mid.resnet1."),
    (r"\.mid_block\.resnets\.1\.", ".mid.resnet2."),
    (r"\.mid_block\.attentions\.0\.group_norm\.", ".mid.attention.norm."),
    (r"\.mid_block\.attentions\.0\.(to_q|to_k|to_v)\.", r".mid.attention.\1."),
    (r"\.mid_block\.attentions\.0\.to_out\.0\.", ".mid.attention.to_out."),
    # diffusers < 0.14 names the attention projections query/key/value/proj_attn
    (r"\.mid_block\.attentions\.0\.query\.", ".mid.attention.to_q."),
    (r"\.mid_block\.attentions\.0\.key\.", ".mid.attention.to_k."),
    (r"\.mid_block\.attentions\.0\.value\.", ".mid.attention.to_v."),
    (r"\.mid_block\.attentions\.0\.proj_attn\.", ".mid.attention.to_out."),
)


def load_diffusers_state_dict(model, state_dict):
    """Load a state dict in diffusers' ``AutoencoderKL`` layout into ``model``.

    Every key must map onto one of ours with the same shape, and every one of ours must
    be given; otherwise a ValueError lists the missing keys, the unexpected ones and the
    shape mismatches (``checkpoints.load_renamed``). A model built on "meta" receives
    the tensors themselves (no copy). Returns ``model``.
    """
    if not isinstance(model, AutoencoderKL):
        raise TypeError(
            f"model must be an oldschool AutoencoderKL, got {type(model).__name__}"
        )
    try:
        return checkpoints.load_renamed(
            model,
            state_dict,
            DIFFUSERS_KEY_MAP,
            "this AutoencoderKL (diffusers key layout expected)",
        )
    except ValueError as error:
        if any(k.startswith(("encoder.down.", "decoder.up.")) for k in state_dict):
            raise ValueError(
                f"{error}\nThis looks like an original latent-diffusion/FLUX "
                "checkpoint "
                "(encoder.down.N.block...); use the repository's diffusers file "
                "(vae/diffusion_pytorch_model.safetensors)."
            ) from None
        raise


def load_diffusers_file(model, path):
    """Load a diffusers-layout ``.safetensors`` file into ``model`` (no pickle runs)."""
    from safetensors.torch import load_file

    return load_diffusers_state_dict(model, load_file(str(path)))
