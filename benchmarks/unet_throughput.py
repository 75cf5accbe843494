"""Forward throughput of oldschool's UNet2DCondition against diffusers' UNet2DConditionModel.

Both models are built from the same small config and hold the same random weights (loaded
through ``unet.load_diffusers_state_dict``); the script checks that they agree, then times
forward passes (median over repeats, after warm-up) on CPU, and on a CUDA GPU when there is
one, in float32 and bf16:

    .venv/bin/python benchmarks/unet_throughput.py                 # CPU, and CUDA if present
    .venv/bin/python benchmarks/unet_throughput.py --batch 16 --size 64 --repeats 20

diffusers is a test-only dependency (requirements.txt); this script needs it.
"""

import argparse
import statistics
import time

import torch

from oldschool import unet, unet_config


def small_config(sdxl_like):
    """A few-million-parameter config with SD 1.5's layout, or SDXL's (added conditioning, linear projections)."""
    config = unet_config.tiny_config(
        channels=(64, 128, 256),
        layers_per_block=2,
        heads=4,
        cross_attention_dim=128,
        in_channels=4,
        groups=32,
        text_time=sdxl_like,
    )
    if sdxl_like:
        from dataclasses import replace

        config = replace(
            config,
            down_block_types=(
                "DownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
            ),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 4),
            use_linear_projection=True,
        )
    return config


def inputs(config, batch, size, device, dtype, generator):
    sample = torch.randn(batch, config.in_channels, size, size, generator=generator).to(
        device, dtype
    )
    timestep = torch.randint(0, 1000, (batch,), generator=generator).float().to(device)
    context = torch.randn(
        batch, 77, config.cross_attention_dim, generator=generator
    ).to(device, dtype)
    added = {}
    if config.addition_embed_type == "text_time":
        added = dict(
            text_embeds=torch.randn(
                batch, config.cross_attention_dim, generator=generator
            ).to(device, dtype),
            time_ids=torch.tensor(
                [[size * 8.0, size * 8.0, 0.0, 0.0, size * 8.0, size * 8.0]] * batch
            ).to(device, dtype),
        )
    return sample, timestep, context, added


@torch.no_grad()
def median_seconds(fns, device, repeats, warmup=3):
    """Median wall time of each function's call; calls alternate so that load changes hit all alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, seen in zip(fns, times):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seen.append(time.perf_counter() - start)
    return [statistics.median(seen) for seen in times]


def compare(config, device, dtype, batch, size, repeats):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    theirs = UNet2DConditionModel(**unet_config.config_dict(config)).eval()
    ours = unet.load_diffusers_state_dict(
        unet.UNet2DCondition(config), theirs.state_dict()
    ).eval()
    theirs, ours = theirs.to(device, dtype), ours.to(device, dtype)
    sample, timestep, context, added = inputs(
        config, batch, size, device, dtype, torch.Generator().manual_seed(1)
    )

    def run_theirs():
        return theirs(sample, timestep, context, added_cond_kwargs=added or None).sample

    def run_ours():
        return ours(sample, timestep, context, **added)

    with torch.no_grad():
        a, b = run_ours().float(), run_theirs().float()
    error = ((a - b).abs().max() / b.abs().max()).item()
    t_ours, t_theirs = median_seconds([run_ours, run_theirs], device, repeats)
    return error, batch / t_ours, batch / t_theirs


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=32, help="latent height and width")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads (torch's default when omitted)",
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from diffusers.utils import logging

    logging.set_verbosity_error()  # diffusers warns about casting with .to(dtype); both models get the same cast

    runs = [(torch.device("cpu"), torch.float32)]
    if torch.cuda.is_available():
        runs += [
            (torch.device("cuda"), torch.float32),
            (torch.device("cuda"), torch.bfloat16),
        ]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; batch {args.batch}, "
        f"latent {args.size}x{args.size}, median of {args.repeats}"
    )
    print(
        f"{'layout':10} {'device':6} {'dtype':9} {'params':>8} {'rel. error':>10} {'ours /s':>9} {'diffusers /s':>12} {'ratio':>6}"
    )
    for sdxl_like in (False, True):
        config = small_config(sdxl_like)
        n = sum(p.numel() for p in unet.UNet2DCondition(config).parameters())
        for device, dtype in runs:
            error, ours, theirs = compare(
                config, device, dtype, args.batch, args.size, args.repeats
            )
            print(
                f"{'SDXL-like' if sdxl_like else 'SD15-like':10} {device.type:6} {str(dtype)[6:]:9} {n / 1e6:7.1f}M "
                f"{error:10.1e} {ours:9.1f} {theirs:12.1f} {ours / theirs:6.2f}"
            )


if __name__ == "__main__":
    main()
