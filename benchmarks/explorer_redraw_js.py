"""Redraw time of the live JavaScript explorer (``oldschool.explorer``) in headless Chromium.

Opens a page holding the explorer's cell output (no kernel, network closed) and moves its
controls as a reader does (a notch down and back up); every redraw stores its time (simulation
and canvases, measured in the page with ``performance.now()``). Reported: the median per
control over the redraws that land on the chosen size,
1,000 particles x 200 steps by default (issue 17's target: under 100 ms on an ordinary
laptop), and the time of the simulation alone (``OldschoolExplorer.simulate``). Debian's
chromium (`make browser`):

    .venv/bin/python benchmarks/explorer_redraw_js.py
    .venv/bin/python benchmarks/explorer_redraw_js.py --steps 100 --particles 1000 --repeats 5
"""

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from explorer_page import control_names, explorers, move, set_kind  # noqa: E402

from oldschool import explorer, gaussian_mixture  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]

SIMULATE = r"""([mixture, s, repeats]) => {
    const times = [];
    for (let r = 0; r < repeats; r++) {
        const start = performance.now();
        OldschoolExplorer.simulate(mixture, Object.assign({}, s, {beta_max: [15, 20][r % 2]}));
        times.push(performance.now() - start);
    }
    return times;
}"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=200, choices=explorer.GRIDS["steps"]
    )
    parser.add_argument(
        "--particles", type=int, default=1000, choices=explorer.GRIDS["n_points"]
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    mixture = gaussian_mixture.example_mixture()
    print(
        f"live explorer redraw in Chromium, {args.particles} particles x {args.steps} steps; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        html = "".join(
            explorer.live_explorer(
                mixture, view=v, steps=args.steps, n_points=args.particles
            )._repr_html_()
            for v in explorer.VIEWS
        )
        page_file = Path(folder) / "index.html"
        page_file.write_text(f"<!doctype html><html><body>{html}</body></html>")
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=FLAGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.route(
            "**/*",
            lambda r: (
                r.continue_()
                if r.request.url.startswith("file://")
                else r.abort("internetdisconnected")
            ),
        )
        page.goto(page_file.as_uri())
        for view, root in zip(explorer.VIEWS, explorers(page)):
            times = {}
            for name in control_names(root):
                set_kind(root, {"sigma_min": "VE", "sigma_max": "VE"}.get(name, "VP"))
                times[name] = []
                for _ in range(
                    args.repeats
                ):  # a notch down, then back up: time the redraws
                    for direction in (-1, 1):  # that land on the benchmarked size
                        after = move(root, name, direction)
                        s = after["setting"]
                        if s["steps"] == args.steps and s["n_points"] == args.particles:
                            times[name].append(after["ms"])
            every = [t for ts in times.values() for t in ts]
            settings = {
                "view": view,
                **explorer.DEFAULTS,
                "steps": args.steps,
                "n_points": args.particles,
                "n_paths": 20,
                "t_min": 1e-3,
            }
            sim = page.evaluate(
                SIMULATE,
                [explorer.mixture_json(mixture), settings, 2 * args.repeats + 1],
            )
            print(
                f"\n{view}: median redraw {statistics.median(every):.0f} ms over {len(every)} moves "
                f"(the simulation alone, VP: median {statistics.median(sim):.0f} ms)"
            )
            for name, ts in times.items():
                print(
                    f"  {name:>10s}: median {statistics.median(ts):5.0f} ms  (min {min(ts):4.0f}, "
                    f"max {max(ts):4.0f}, n={len(ts)})"
                )
        browser.close()


if __name__ == "__main__":
    main()
