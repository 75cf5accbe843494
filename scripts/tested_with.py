"""The "tested with" table: the versions the book was last built and tested with.

Each run that speaks for the book records the versions of its environment here:
`make book` records the CPU build's (.venv), the Colab-parity job its own environment's.
The records live in colab/tested-with.json; from them this script writes the table into
book/tested_with.md (included by the preface) and into README.md between the
`tested-with` markers, beside the versions Colab publishes (colab/constraints.txt).

    python scripts/tested_with.py record cpu-build .venv/bin/python   # then renders
    python scripts/tested_with.py render
"""

import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "colab" / "tested-with.json"
TABLE = ROOT / "book" / "tested_with.md"
README = ROOT / "README.md"
START, END = (
    "<!-- tested-with: start (written by scripts/tested_with.py) -->",
    "<!-- tested-with: end -->",
)
PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "sympy",
    "matplotlib",
    "scikit-image",
    "scikit-learn",
    "ipywidgets",
    "ipykernel",
    "lpips",
    "myst-nb",
    "jupyter-book",
)
COLUMNS = {
    "cpu-build": "CPU build (`make book`)",
    "colab-parity": "Colab parity (`make colab-parity`)",
}

VERSIONS = """
import importlib.metadata as md, json, platform
out = {"python": platform.python_version()}
for name in %r:
    try:
        out[name] = md.version(name)
    except md.PackageNotFoundError:
        out[name] = None
print(json.dumps(out))
"""


def versions(python):
    """{package: version or None} of the environment of the interpreter `python`."""
    result = subprocess.run(
        [str(python), "-c", VERSIONS % (PACKAGES,)],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    return json.loads(result.stdout)


def record(name, python, note=""):
    """Store the versions of `python`'s environment as column `name`, then render."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    records = json.loads(RECORDS.read_text()) if RECORDS.exists() else {}
    records[name] = {
        "versions": versions(python),
        "date": datetime.date.today().isoformat(),
        "commit": commit,
        "note": note,
    }
    RECORDS.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
    render()


def colab_published():
    """{package: version} that Colab publishes (colab/constraints.txt and its header)."""
    text = (ROOT / "colab" / "constraints.txt").read_text()
    pins = dict(re.findall(r"^([\w.\-]+)==(\S+)$", text, flags=re.M))
    pins = {k.lower().replace("_", "-"): v for k, v in pins.items()}
    header = re.search(r"^# Colab itself: (.*)$", text, flags=re.M).group(1)
    pins.update(dict(pair.split("==") for pair in header.split()))
    return pins


def table():
    records = json.loads(RECORDS.read_text()) if RECORDS.exists() else {}
    published = colab_published()
    names = [n for n in COLUMNS if n in records]
    head = ["package", *(COLUMNS[n] for n in names), "Colab (published)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for package in ("python", *PACKAGES):
        cells = [records[n]["versions"].get(package) or "-" for n in names]
        lines.append(
            "| " + " | ".join([package, *cells, published.get(package, "-")]) + " |"
        )
    runs = [
        ", ".join(
            filter(
                None,
                (
                    records[n]["date"],
                    f"commit {records[n]['commit']}",
                    records[n]["note"],
                ),
            )
        )
        for n in names
    ]
    lines.append("| " + " | ".join(["run", *runs, "googlecolab/backend-info"]) + " |")
    return "\n".join(lines)


def render():
    body = table()
    TABLE.write_text(
        "% Written by scripts/tested_with.py from colab/tested-with.json; do not edit.\n\n"
        "**Tested with.** The versions this book was last built and tested with, "
        "recorded by the runs themselves: the CPU build (`make book`), the "
        "Colab-parity job (`make colab-parity`: Colab's published versions, the "
        "install cell, every chapter), and what Colab publishes.\n\n" + body + "\n"
    )
    readme = README.read_text()
    if START in readme:
        before, rest = readme.split(START, 1)
        readme = before + START + "\n" + body + "\n" + END + rest.split(END, 1)[1]
        README.write_text(readme)


if __name__ == "__main__":
    if sys.argv[1] == "record":
        record(sys.argv[2], sys.argv[3], " ".join(sys.argv[4:]))
    else:
        render()
