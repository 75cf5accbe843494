"""Throughput of the exact-score Euler-Maruyama sampler: particle-steps per second.

Runs ``samplers.euler_maruyama`` on the VP SDE with the exact score of the 2-D example
mixture of chapters 5-6 (``gaussian_mixture.example_mixture``), for several numbers of particles, and
reports particles x steps / seconds (median over repeats, after one warm-up run). CPU
always; a CUDA GPU too when one is present:

    .venv/bin/python benchmarks/em_throughput.py
    .venv/bin/python benchmarks/em_throughput.py --particles 1000 100000 --steps 200 --threads 1

The score is a mixture of K Gaussians, so each step costs O(particles x K x D^2).
"""

import argparse
import statistics
import time

import torch

from oldschool import gaussian_mixture, samplers
from oldschool.sde import VPSDE


def time_run(device, particles, steps, repeats, dtype=torch.float32):
    """Median seconds of one ``steps``-step run on ``particles`` points (after a warm-up run)."""
    mixture, sde = gaussian_mixture.example_mixture(), VPSDE()
    score_fn = mixture.score_fn(sde)
    generator = torch.Generator(device).manual_seed(0)
    x = sde.prior_sample(
        (particles, 2), generator=generator, device=device, dtype=dtype
    )
    samplers.euler_maruyama(sde, score_fn, x, 5, generator=generator)  # warm-up
    seconds = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = samplers.euler_maruyama(sde, score_fn, x, steps, generator=generator)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    assert torch.isfinite(out).all()
    return statistics.median(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--particles", type=int, nargs="+", default=[1_000, 10_000, 100_000]
    )
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice)",
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    devices = [torch.device("cpu")] + (
        [torch.device("cuda")] if torch.cuda.is_available() else []
    )
    print(
        f"exact-score Euler-Maruyama, VP SDE, 4-component 2-D mixture, {args.steps} steps; "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    for device in devices:
        name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
        for n in args.particles:
            seconds = time_run(device, n, args.steps, args.repeats)
            print(
                f"{name:>24s}  {n:>9,d} particles: {seconds:8.3f} s  "
                f"{n * args.steps / seconds / 1e6:8.2f} M particle-steps/s"
            )


if __name__ == "__main__":
    main()
