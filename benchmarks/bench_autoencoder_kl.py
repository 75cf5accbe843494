"""Forward throughput of oldschool's AutoencoderKL against diffusers' on the same config and weights.

    .venv/bin/python benchmarks/bench_autoencoder_kl.py                 # CPU, and CUDA when present
    .venv/bin/python benchmarks/bench_autoencoder_kl.py --preset sdxl --size 256 --batch 1

Builds diffusers.AutoencoderKL with random weights, loads them into oldschool's module with
load_diffusers_state_dict, checks the outputs agree, then times encode (posterior mean) +
decode under torch.no_grad: median of --repeats runs after --warmup runs, images per second.
"""

import argparse
import statistics
import time

import torch

from oldschool import autoencoder_kl

SMALL = dict(
    block_out_channels=(32, 64, 128, 128),
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
)


def build_pair(preset, device, dtype):
    import diffusers

    if preset == "small":
        settings = dict(SMALL)
    else:
        with torch.device("meta"):
            cfg = autoencoder_kl.PRESETS[preset]().config
        settings = dict(
            block_out_channels=cfg.block_out_channels,
            layers_per_block=cfg.layers_per_block,
            latent_channels=cfg.latent_channels,
            norm_num_groups=cfg.norm_num_groups,
            use_quant_conv=cfg.use_quant_conv,
            use_post_quant_conv=cfg.use_post_quant_conv,
        )
    n = len(settings["block_out_channels"])
    torch.manual_seed(0)
    theirs = diffusers.AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        **settings,
    )
    ours = autoencoder_kl.AutoencoderKL(**settings)
    autoencoder_kl.load_diffusers_state_dict(ours, theirs.state_dict())
    ours, theirs = ours.to(device).eval(), theirs.to(device).eval()
    if (
        dtype != torch.float32
    ):  # (diffusers warns about any .to(dtype) call, so only when needed)
        ours, theirs = ours.to(dtype), theirs.to(dtype)
    return ours, theirs


def timed(fn, device, warmup, repeats):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset", default="small", choices=["small", *autoencoder_kl.PRESETS]
    )
    parser.add_argument("--size", type=int, default=128, help="image height and width")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--devices",
        nargs="*",
        default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []),
    )
    args = parser.parse_args()

    print(
        f"preset {args.preset}, images {args.batch} x 3 x {args.size} x {args.size}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads"
    )
    for device in args.devices:
        dtypes = [torch.float32] + ([torch.bfloat16] if device == "cuda" else [])
        for dtype in dtypes:
            ours, theirs = build_pair(args.preset, device, dtype)
            x = (
                torch.rand(
                    args.batch, 3, args.size, args.size, device=device, dtype=dtype
                )
                * 2
                - 1
            )
            with torch.no_grad():
                a = ours.decode(ours.encode(x).mean)
                b = theirs.decode(theirs.encode(x).latent_dist.mean).sample
                rel = ((a - b).abs().max() / b.abs().max()).item()
                t_ours = timed(
                    lambda: ours.decode(ours.encode(x).mean),
                    device,
                    args.warmup,
                    args.repeats,
                )
                t_theirs = timed(
                    lambda: theirs.decode(theirs.encode(x).latent_dist.mean).sample,
                    device,
                    args.warmup,
                    args.repeats,
                )
            name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
            print(
                f"{name:<24}{str(dtype):<16} oldschool {args.batch / t_ours:8.2f} img/s   "
                f"diffusers {args.batch / t_theirs:8.2f} img/s   ratio {t_theirs / t_ours:5.2f}   "
                f"max rel. diff {rel:.1e}"
            )


if __name__ == "__main__":
    main()
