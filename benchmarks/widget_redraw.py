"""Redraw time of the kernel widgets (``oldschool.widgets``), per control.

Builds each explorer as a chapter does (exact score, default settings, 1,000 particles), then
moves every control to a neighbouring value on its grid and back, and reports the kernel's
time per redraw (the callback: simulation, figure, PNG), median and range per control, as
wall-clock time and as this process's CPU time (on a loaded machine the wall time is the CPU
time plus the wait for a core; on a quiet one they agree). What the browser adds (the comm
message, drawing the PNG) is not in it. One torch thread, as in the book build:

    .venv/bin/python benchmarks/widget_redraw.py
    .venv/bin/python benchmarks/widget_redraw.py --repeats 5 --views sde

The target (issue 17) is a median under 200 ms at default settings on CPU.
"""

import argparse
import os
import statistics
import time

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

from oldschool import gaussian_mixture, trajectory_figure, widgets  # noqa: E402


def neighbour(control):
    """A value next to the control's current one (the next option, or the previous at the end)."""
    if hasattr(control, "options"):
        values = [o[1] if isinstance(o, tuple) else o for o in control.options]
        i = values.index(control.value)
        return values[i + 1] if i + 1 < len(values) else values[i - 1]
    return control.value + 1 if control.value < control.max else control.value - 1


def time_controls(view, repeats):
    """{control: [(wall, cpu) seconds per redraw]} for one view, and the time of the first draw."""
    mixture = gaussian_mixture.example_mixture()
    start = time.perf_counter()
    explorer = widgets.KernelExplorer(
        mixture,
        learned=(
            trajectory_figure.make_sde("VP"),
            mixture.score_fn(trajectory_figure.make_sde("VP")),
        ),
        view=view,
    )
    first = time.perf_counter() - start
    times = {}
    for name, control in explorer.controls.items():
        if name == "process":
            continue  # it moves the sampler list; the sampler row covers its redraws
        if name.startswith("sigma"):
            explorer.controls["kind"].value = "VE"
        elif name.startswith("beta"):
            explorer.controls["kind"].value = "VP"
        default = control.value
        times[name] = []
        for _ in range(repeats):
            for value in (neighbour(control), default):
                count = len(explorer.times)
                wall, cpu = time.perf_counter(), time.process_time()
                control.value = value
                times[name].append(
                    (time.perf_counter() - wall, time.process_time() - cpu)
                )
                assert len(explorer.times) == count + 1, f"{name}: one move, one redraw"
        count = len(explorer.times)
        control.value = default  # the same value again: no redraw
        assert len(explorer.times) == count, f"{name}: an unchanged value redrew"
    explorer.controls["kind"].value = "VP"
    return first, times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--views", nargs="+", default=["sde", "sde_vs_ode"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    print(
        f"kernel widget redraw, 1,000 particles, exact score; torch {torch.__version__}, 1 thread, "
        f"{os.cpu_count()} CPUs, load average {load:.1f}"
    )
    for view in args.views:
        first, times = time_controls(view, args.repeats)
        wall = [w for ts in times.values() for w, _ in ts]
        cpu = [c for ts in times.values() for _, c in ts]
        print(
            f"\n{view}: first draw {1000 * first:.0f} ms (figure built once); all controls: median "
            f"{1000 * statistics.median(wall):.0f} ms wall, {1000 * statistics.median(cpu):.0f} ms CPU "
            f"over {len(wall)} redraws"
        )
        for name, ts in times.items():
            w = [1000 * x for x, _ in ts]
            c = [1000 * y for _, y in ts]
            print(
                f"  {name:>10s}: median {statistics.median(w):5.0f} ms wall (min {min(w):4.0f}, max "
                f"{max(w):4.0f}), {statistics.median(c):5.0f} ms CPU, n={len(ts)}"
            )


if __name__ == "__main__":
    main()
