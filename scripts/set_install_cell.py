"""Write the install cell (the first cell) of every chapter notebook from one template.

The install cell is what a Colab reader runs first. It must leave Colab's environment as it
is: it installs oldschool only when it is not importable, and runs pip with a constraints
file made from the kernel's own installed distributions, so that pip may add what is
missing (lpips, oldschool) but never upgrade or downgrade a package the kernel already
has (Colab imports ipywidgets 7.7.1 when the kernel starts; an upgrade would need a
restart and may break its widget frontend). When that is impossible it stops with pip's
reason and what to do. Then it prints the versions and the device it runs with.

The cell is self-contained (it runs before oldschool exists, so it cannot import a helper).
The repository URL and the release tag come from _config.yml (repository.url, .ref), the
one place they are set. Only the first cell of each notebook is touched; the rest of the
notebook is written back as read.

    python scripts/set_install_cell.py          # rewrite every book/ch*.ipynb
    python scripts/set_install_cell.py --check  # exit 1 if a notebook differs
"""

import argparse
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]

TEMPLATE = """\
# Colab or a fresh kernel: install oldschool, the release this book was built from, when
# it is not importable. pip runs with the kernel's installed versions as constraints: it
# adds what is missing, never changes Colab's torch, numpy, ipywidgets. Safe to re-run.
import importlib.metadata
import subprocess
import sys
import tempfile

REPOSITORY, RELEASE = "{url}", "{ref}"
PACKAGE = f"oldschool @ git+{{REPOSITORY}}@{{RELEASE}}"
try:
    import oldschool
except ImportError:
    kept = {{}}  # name -> version of every installed distribution (the first on sys.path)
    for dist in importlib.metadata.distributions():
        if name := dist.metadata["Name"]:
            kept.setdefault(name.lower().replace("_", "-"), dist.version)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as pins:
        pins.write("\\n".join(f"{{name}}=={{version}}" for name, version in kept.items()))
    pip = [sys.executable, "-m", "pip", "install", "--constraint", pins.name, PACKAGE]
    result = subprocess.run(pip, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"{{result.stdout[-1500:]}}{{result.stderr[-3000:]}}\\n"
            "pip cannot install oldschool without changing a package this kernel "
            f"already has (pip's reason is above); please report it at {{REPOSITORY}}"
            f'/issues. To go on anyway: %pip install "{{PACKAGE}}", then restart.'
        )
    added = {{
        d.metadata["Name"]: d.version
        for d in importlib.metadata.distributions()
        if d.metadata["Name"]
        and d.metadata["Name"].lower().replace("_", "-") not in kept
    }}
    print("installed:", ", ".join(f"{{n}} {{v}}" for n, v in sorted(added.items())))
    importlib.invalidate_caches()
    import oldschool
import ipywidgets
import torch

device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
print(
    f"oldschool {{oldschool.__version__}}, Python {{sys.version.split()[0]}}, "
    f"torch {{torch.__version__}}, ipywidgets {{ipywidgets.__version__}}; "
    f"device: {{device}}"
)"""


def repository():
    """(url, ref) of the repository, from _config.yml."""
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    if not repo.get("url") or not repo.get("ref"):
        raise SystemExit(
            "_config.yml: repository needs `url` and `ref` (the release tag)"
        )
    return repo["url"].rstrip("/"), repo["ref"]


def install_cell_source(url=None, ref=None):
    """The install cell's text for a repository URL and tag (default: _config.yml's)."""
    if url is None or ref is None:
        url, ref = repository()
    return TEMPLATE.format(url=url, ref=ref)


def chapters():
    return sorted((ROOT / "book").glob("ch*.ipynb"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only report notebooks that differ"
    )
    args = parser.parse_args(argv)
    source = install_cell_source()
    stale = []
    for path in chapters():
        nb = nbformat.read(path, as_version=4)
        first = nb.cells[0] if nb.cells else None
        is_install = (
            first is not None
            and first.cell_type == "code"
            and "import oldschool" in first.source
        )
        if (
            is_install
            and first.source == source
            and "remove-cell" in first.metadata.get("tags", [])
        ):
            continue
        stale.append(path.name)
        if args.check:
            continue
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["remove-cell"]})
        cell.pop("id", None)
        if is_install:
            first.source, first.outputs, first.execution_count = source, [], None
            first.metadata["tags"] = sorted(
                set(first.metadata.get("tags", [])) | {"remove-cell"}
            )
        else:
            nb.cells.insert(
                0, nbformat.v4.new_code_cell(source, metadata={"tags": ["remove-cell"]})
            )
        nbformat.write(nb, path)
    verb = "differ" if args.check else "rewritten"
    print(f"{len(stale)} of {len(chapters())} install cells {verb}: {stale}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
