"""Write the README's GPU budget table: each chapter's GPU column, memory and T4 time from shapes.

    python benchmarks/gpu_budget.py          # rewrites the section between the markers in README.md

The estimates come from ``oldschool.budgets``; the last column, the peak resident memory of
the capped CPU run, from ``_build/gpu-check/report.json`` when ``make gpu-dry`` has written it.
"""

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oldschool import budgets  # noqa: E402

START, END = "<!-- gpu-budget:start -->", "<!-- gpu-budget:end -->"


def measured_peaks():
    """chapter ("ch3") -> peak RSS bytes of the last capped run, if there was one."""
    report = ROOT / "_build" / "gpu-check" / "report.json"
    if not report.exists():
        return {}
    chapters = json.loads(report.read_text())["chapters"]
    return {
        f"ch{int(r['chapter'][2:4])}": r["peak_rss"]
        for r in chapters
        if r.get("peak_rss")
    }


def section():
    rows = budgets.budget_table()
    t4 = budgets.T4
    return "\n".join(
        [
            START,
            f"Computed by `make gpu-budget` ({time.strftime('%Y-%m-%d')}) from the `gpu` columns of "
            "`oldschool/config.py` and the loops listed in `oldschool/workloads.py`; nothing here was run on a GPU.",
            "",
            budgets.readme_table(rows, measured_peaks()),
            "",
            f"Peak: data kept on the GPU + every model's float32 weights (twice with an EMA copy) + the largest "
            f"step (a training step's activations at its batch size, float32, plus gradients and Adam's two "
            f"moments). Time: FLOPs of every Conv2d and Linear call (backward = 2 x forward) at "
            f"{t4['efficiency']:.0%} of the T4's {t4['flops'] / 1e12:.0f} TFLOPS (float16 tensor cores, the "
            f"autocast dtype on a GPU without bf16), plus {t4['launch_seconds'] * 1e6:.0f} us per layer call "
            "(every chapter samples with its networks on the GPU). "
            f"A chapter fits a free Colab T4 when its peak is under {t4['memory_bytes'] / 1e9:.0f} GB; "
            f"`tests/test_budgets.py` fails above {budgets.LIMIT_BYTES / 1e9:.0f} GB. Rough by design: "
            "a factor of two either way.",
            END,
        ]
    )


def main():
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} section")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + section() + tail)
    print("README.md: GPU budget table written")


if __name__ == "__main__":
    main()
