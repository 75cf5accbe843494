"""What each chapter runs in its GPU column: the models, the loops, the data it keeps.

    work = WORKLOADS["ch7"](config.settings("ch7", "gpu"))
    work.models     # name -> (builder, keeps an EMA copy)
    work.loops      # Loop(what, model, run, batch, repeats, train)
    work.resident   # name -> bytes of data kept on the device

A chapter's workload lists what it keeps on the device (data sets) and its loops:
trainings (batch, steps) and inference passes (batch, repeats), on the GPU or, where a
chapter moves a model back to the CPU, on the CPU. Each loop's ``run(model, batch)``
calls the model on zeros of the chapter's shapes; ``oldschool.budgets`` turns the
workloads into memory and time. A new chapter, or a new loop in one, is listed here.
"""

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from . import autoencoder_kl, autoencoders, config, guidance, nets, unet

FLOAT_BYTES = 4


@dataclass
class Loop:
    """One loop of a chapter: ``repeats`` calls of ``run`` on a batch of ``batch``."""

    what: str
    model: str  # a key of Workload.models
    run: object  # run(model, batch) -> output, on zeros
    batch: int
    repeats: int
    train: bool = False


@dataclass
class Workload:
    models: dict  # name -> (builder, keeps an EMA copy)
    loops: list
    resident: dict = field(default_factory=dict)  # name -> bytes kept on the device


def _empty(*shape):
    return torch.zeros(*shape)


def _image_run(shape):
    return lambda m, b: m(_empty(b, *shape))


def _score_run(dim=2):
    return lambda m, b: m(_empty(b, dim), _empty(b))


# The workloads are tables: one loop a line reads better than one argument a line.
# fmt: off
def _ch1(S):
    image, steps = (1, 8, 8), S.seeds * S.steps
    run = _image_run(image)
    return Workload(
        models={
            "AE": (lambda: autoencoders.AE(image, S.latent_dim, S.hidden), False),
            "stochastic AE": (
                lambda: autoencoders.StochasticAE(image, S.latent_dim, S.hidden),
                False,
            ),
        },
        loops=[
            Loop("train AE", "AE", run, S.batch_size, steps, train=True),
            Loop("train stochastic AE", "stochastic AE", run, S.batch_size, steps,
                 train=True),
            Loop("encode all digits", "AE", run, 1797, 2),
        ],
        resident={"digits": 1797 * 64 * FLOAT_BYTES},
    )


def _ch2(S):
    image, S1 = (1, 8, 8), config.settings("ch1", "gpu", False)
    vae_run = lambda m, b: m(_empty(b, *image))[0]
    decode = lambda m, b: m.decode(_empty(b, S.latent_dim))
    sweep = len(S.betas) * S.sweep_seeds * S.sweep_steps
    is_repeats = S.is_images * math.ceil(S.is_samples / 256)
    return Workload(
        models={
            "VAE": (lambda: autoencoders.VAE(image, S.latent_dim, S.hidden), False),
            "AE (ch1)": (
                lambda: autoencoders.AE(image, S1.latent_dim, S1.hidden),
                False,
            ),
            "sweep VAE": (
                lambda: autoencoders.VAE(image, S.sweep_latent_dim, S.sweep_hidden),
                False,
            ),
        },
        loops=[
            Loop("train VAE", "VAE", vae_run, S.batch_size, S.seeds * S.steps,
                 train=True),
            Loop("train AE", "AE (ch1)", _image_run(image), S1.batch_size,
                 S.seeds * S1.steps, train=True),
            Loop("importance sampling", "VAE", decode, 256, is_repeats),
            Loop("beta sweep", "sweep VAE", vae_run, S.batch_size, sweep, train=True),
        ],
        resident={"digits": 1797 * 64 * FLOAT_BYTES},
    )


class _VAEWithLPIPS(nn.Module):
    """A ch3 training step's forward: the autoencoder, then LPIPS(input, output)."""

    def __init__(self, vae, lpips):
        super().__init__()
        self.vae, self.lpips = vae, lpips

    def forward(self, x):
        x_hat, _ = self.vae(x)
        return self.lpips(x, x_hat.clamp(-1, 1)) if self.lpips is not None else x_hat


def _lpips(net):
    from .perceptual import LPIPS

    return LPIPS(net, pretrained_backbone=False)  # a random trunk: shapes count


def _ch3(S):
    def with_loss():
        vae = autoencoder_kl.small_vae(
            16,
            S.block_out_channels,
            S.layers_per_block,
            S.norm_num_groups,
            initial_logvar=None,
        )
        return _VAEWithLPIPS(vae, _lpips(S.lpips_net) if S.perceptual_weight else None)

    patch, steps = (3, S.patch, S.patch), S.seeds * S.steps
    image = lambda m, b: m(_empty(b, *patch))
    encode = lambda m, b: m.vae.encode(_empty(b, *patch)).mean
    autoencode = lambda m, b: m.vae(_empty(b, *patch))[0]
    crop = lambda m, b: m.vae(_empty(b, 3, 256, 256))[0]
    main = "KL-f4 4 ch, beta 1e-6"
    return Workload(
        models={
            f"KL-f4 {c} ch, beta {beta}": (with_loss, True)
            for c, beta in ((4, "1e-6"), (16, "1e-6"), (4, "1"))
        },
        loops=[
            Loop("train 4 ch", main, image, S.batch_size, steps, train=True),
            Loop("train 16 ch", "KL-f4 16 ch, beta 1e-6", image, S.batch_size, steps,
                 train=True),
            Loop("train beta = 1", "KL-f4 4 ch, beta 1", image, S.batch_size, steps,
                 train=True),
            Loop("evaluate on the validation patches", main, autoencode, S.n_val, 8),
            Loop("encode the training patches", main, encode, min(1024, S.n_train),
                 math.ceil(S.n_train / 1024)),
            Loop("photo crops 256 x 256", main, crop, 1, 6),
        ],
        resident={
            "training patches": S.n_train * math.prod(patch) * FLOAT_BYTES,
            "validation patches": S.n_val * math.prod(patch) * FLOAT_BYTES,
        },
    )


def _score_mlp(S):
    return lambda: nets.ScoreMLP(
        dim=2, hidden=S.hidden, layers=S.layers, embed_dim=S.embed_dim
    )


def _ch4(S):
    run, steps = _score_run(), len(S.seeds) * S.steps
    return Workload(
        models={"ScoreMLP": (_score_mlp(S), True)},
        loops=[
            Loop("train", "ScoreMLP", run, S.batch_size, steps, train=True),
            Loop("sample (DDPM, Euler-Maruyama)", "ScoreMLP", run, S.n_samples,
                 2 * S.sample_steps),
            Loop("errors per noise level", "ScoreMLP", run, 8192, 60),
        ],
        resident={"data": S.n_data * 2 * FLOAT_BYTES},
    )


def _ch5(S):
    run = _score_run()
    return Workload(
        models={"ScoreMLP": (_score_mlp(S), True)},
        loops=[
            Loop("train", "ScoreMLP", run, S.batch_size, S.steps, train=True),
            # the network stays on the GPU; the samplers' points stay on the CPU
            Loop("sample with the learned score", "ScoreMLP", run, S.n_samples,
                 S.sample_steps),
            Loop("loss per noise level", "ScoreMLP", run, 2000, 100),
        ],
        resident={"data": S.n_data * 2 * FLOAT_BYTES},
    )


def _ch6(S):
    run, steps = _score_run(), len(S.seeds) * S.steps
    return Workload(
        models={
            "ScoreMLP eps": (_score_mlp(S), True),
            "ScoreMLP v": (_score_mlp(S), True),
        },
        # three recipes per seed: eps; v with eps-MSE; v with v-MSE. Euler-Maruyama
        # takes 1 call per step, Heun 2
        loops=[
            Loop("train eps", "ScoreMLP eps", run, S.batch_size, steps, train=True),
            Loop("train v", "ScoreMLP v", run, S.batch_size, 2 * steps, train=True),
            # the networks stay on the GPU; the samplers' points stay on the CPU
            Loop("SDE and ODE samples, both nets", "ScoreMLP eps", run,
                 S.n_samples, 2 * 3 * S.sample_steps),
            Loop("RK45 with the learned score", "ScoreMLP v", run, S.n_samples, 300),
        ],
        resident={"data": S.n_data * 2 * FLOAT_BYTES},
    )


def _ch7(S):
    def model():
        return guidance.class_conditional_unet(S)

    def run(m, b):
        return m(_empty(b, 1, 8, 8), _empty(b), torch.zeros(b, dtype=torch.long))

    net, samples = "class-conditional U-Net", 2 * 10 * S.per_class
    return Workload(
        models={net: (model, True)},
        loops=[
            Loop("train", net, run, S.batch_size, S.steps, train=True),
            Loop("guided DDIM samples", net, run, samples,
                 len(S.guidance_scales) * S.sample_steps),
        ],
        resident={"digits": 1797 * 64 * FLOAT_BYTES},
    )


def _ch8(S):
    run, seeds, net = _score_run(), len(S.seeds), "velocity MLP"
    return Workload(
        models={net: (_score_mlp(S), True)},
        loops=[
            Loop("train: flow matching, more of it, reflow", net, run, S.batch_size,
                 3 * seeds * S.steps, train=True),
            Loop("reflow pairs (Heun)", net, run, S.n_pairs, 2 * seeds * S.pair_steps),
            Loop("samples", net, run, S.n_samples, 3 * seeds * (1 + 2 * S.sample_steps)),
        ],
        resident={"data": S.n_data * 2 * FLOAT_BYTES},
    )


def _ch9(S):
    latent = S.image_size // 4  # KL-f4
    image = (1, S.image_size, S.image_size)
    ema = S.ema_decay is not None

    def vae(channels):
        return lambda: autoencoder_kl.small_vae(
            channels, S.vae_channels, 1, S.vae_groups, image_channels=1
        )

    def denoiser(channels, size, sample):
        return lambda: guidance.ClassConditionalUNet(
            unet.tiny_unet(
                channels=dict(S.unet_sizes)[size],
                heads=S.heads,
                cross_attention_dim=S.context_dim,
                groups=S.unet_groups,
                in_channels=channels,
                sample_size=sample,
            ),
            num_classes=10,
        )

    def run(channels, sample):
        return lambda m, b: m(
            _empty(b, channels, sample, sample),
            _empty(b),
            torch.zeros(b, dtype=torch.long),
        )

    vae_run = lambda m, b: m(_empty(b, *image))[0]
    models = {f"KL-f4 {c} ch": (vae(c), False) for c in S.latent_channels}
    for size, _ in S.unet_sizes:
        for c in S.latent_channels:
            models[f"U-Net {size}, {c} ch"] = (denoiser(c, size, latent), ema)
    models["pixel U-Net"] = (denoiser(1, S.pixel_size, S.image_size), ema)
    samples = 2 * 10 * S.per_class  # classifier-free guidance doubles the batch
    grid = sum(S.grid_steps) * len(S.grid_scales)
    steps = S.seeds * S.steps
    loops = [
        Loop(f"train KL-f4 {c} ch", f"KL-f4 {c} ch", vae_run, S.vae_batch_size,
             S.vae_steps, train=True)
        for c in S.latent_channels
    ]
    for size, _ in S.unet_sizes:
        for c in S.latent_channels:
            name = f"U-Net {size}, {c} ch"
            loops += [
                Loop(f"train {name}", name, run(c, latent), S.batch_size, steps,
                     train=True),
                Loop(f"sample {name}", name, run(c, latent), samples,
                     S.seeds * S.eval_steps),
            ]
    first, c0 = f"U-Net large, {S.latent_channels[0]} ch", S.latent_channels[0]
    loops += [
        Loop("guidance x steps grid", first, run(c0, latent),
             2 * 10 * S.pixel_per_class, grid),
        Loop("train the pixel U-Net (at most as many steps)", "pixel U-Net",
             run(1, S.image_size), S.batch_size, steps, train=True),
    ]
    return Workload(
        models=models,
        loops=loops,
        resident={"images": 70_000 * math.prod(image) * FLOAT_BYTES},
    )


# fmt: on

WORKLOADS = {
    "ch1": _ch1,
    "ch2": _ch2,
    "ch3": _ch3,
    "ch4": _ch4,
    "ch5": _ch5,
    "ch6": _ch6,
    "ch7": _ch7,
    "ch8": _ch8,
    "ch9": _ch9,
}
