"""Deterministic samplers against k-diffusion's, on the exact score: error and time per NFE.

The problem of issue 14 and chapter 6: the example mixture (``gaussian_mixture.example_mixture``) under
``VPSDE(0.1, 20)``, 4000 particles in float64, the probability-flow ODE from one cloud of
prior noise to t = 1e-3, against its exact solution (RK45, tolerance 1e-10) from the same
noise; the error is the mean per-particle distance. Every oldschool sampler runs on every
grid of ``samplers.SCHEDULES``; every fixed-NFE deterministic sampler of k-diffusion runs
on its "karras" and "exponential" grids (``dpm_fast`` picks its own), driven by the same
score as a denoiser in the VE form (``solver_study.k_denoiser``). Prints the best of each
side at each NFE and the ratio, then the wall time per score evaluation (CPU; and a CUDA
GPU when there is one):

    .venv/bin/python benchmarks/sampler_accuracy.py
    .venv/bin/python benchmarks/sampler_accuracy.py --particles 1000 --nfe 10 20 --all
"""

import argparse
import time

import torch

from oldschool import gaussian_mixture, solver_study
from oldschool.sde import VPSDE


def seconds_per_nfe(run, nfe, repeats=3):
    """Median wall time of ``run()`` divided by its NFE."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] / nfe


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--particles", type=int, default=4000)
    parser.add_argument("--nfe", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--all", action="store_true", help="print every sampler x grid")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    mixture, sde = gaussian_mixture.example_mixture(), VPSDE(0.1, 20.0)
    score_fn = mixture.score_fn(sde)
    gen = torch.Generator().manual_seed(0)
    x = sde.prior_sample((args.particles, 2), generator=gen, dtype=torch.float64)
    reference = solver_study.exact_solution(sde, score_fn, x)
    k_sampling = solver_study.k_diffusion_sampling()
    if k_sampling is None:
        print(
            "k-diffusion is not installed (pip install --no-deps -r requirements-peers.txt)"
        )
    table = solver_study.peer_table(sde, score_fn, x, reference, args.nfe, k_sampling)

    print(
        f"{args.particles} particles, float64, VPSDE(0.1, 20), t = 1 -> 1e-3, exact score"
    )
    print(
        f"{'NFE':>4} | {'best of oldschool':>40} | {'best of k-diffusion':>36} | ratio"
    )
    for nfe, row in table.items():
        ours, ours_label, theirs, theirs_label = solver_study.best_of_each_side(row)
        print(
            f"{nfe:4d} | {ours:9.2e} {ours_label:>30} | {theirs:9.2e} "
            f"{theirs_label:>26} | {ours / theirs:.2f}"
        )
        no_sde = {
            k: e
            for k, e in row.items()
            if not k.endswith("_sde/exponential") and not k.endswith("_sde/karras")
        }
        _, _, alt, alt_label = solver_study.best_of_each_side(no_sde)
        print(
            f"     | {'':40} | {alt:9.2e} {alt_label:>26} | {ours / alt:.2f}"
            "  (k-diffusion without its eta = 0 SDE samplers)"
        )
        if args.all:
            for key, err in sorted(row.items(), key=lambda kv: kv[1]):
                print(f"       {err:9.2e}  {key}")

    devices = [torch.device("cpu")] + (
        [torch.device("cuda")] if torch.cuda.is_available() else []
    )
    nfe = max(args.nfe)
    for device in devices:
        xd = x.to(device)
        ours = seconds_per_nfe(
            lambda: solver_study.run(
                "dpm_solver_3m_pc", sde, score_fn, xd, nfe, "logsnr"
            ),
            nfe,
        )
        line = f"{device.type}: oldschool dpm_solver_3m_pc {ours * 1e3:.2f} ms per NFE"
        if k_sampling is not None:
            theirs = seconds_per_nfe(
                lambda: solver_study.k_run(
                    k_sampling, "dpmpp_3m_sde", sde, score_fn, xd, nfe, "exponential"
                ),
                nfe,
            )
            line += f"; k-diffusion dpmpp_3m_sde {theirs * 1e3:.2f} ms per NFE"
        print(line + f" ({args.particles} particles, float64)")


if __name__ == "__main__":
    main()
