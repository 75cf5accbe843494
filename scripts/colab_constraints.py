"""Write colab/constraints.txt from Colab's published package list (pip-freeze.gpu.txt).

Colab publishes the packages of its runtimes in the public repository googlecolab/backend-info
(pip-freeze.txt for the CPU runtime, pip-freeze.gpu.txt for the GPU one). This script turns
one of those files into a pip constraints file: every `name==version` line is kept, with
three changes, each for a reason this machine imposes:

- torch and torchvision: Colab's builds (2.11.0+cu128 for Python 3.13) are replaced by the
  releases that lie on this machine's disk for Python 3.11 (TORCH below), so that CI does not
  download several GB on every run;
- torch's own CUDA and compiler packages (nvidia-*, cuda-*, triton) are dropped: the torch
  above brings the ones it was built with; so is setuptools, which it needs newer (>=77);
- lines that name a URL instead of a version (Colab's own builds) are dropped, and so are
  the few whose Colab version has no release for Python 3.11 (NOT_FOR_PY311): pip then
  takes the newest release that does, and the parity job reports it.

Usage: python scripts/colab_constraints.py PIP_FREEZE_FILE SOURCE_NOTE COLAB_PYTHON_VERSION \
           > colab/constraints.txt
"""

import re
import sys

TORCH = {"torch": "2.14.1", "torchvision": "0.29.1"}  # on disk here, for Python 3.11
NOT_FOR_PY311 = {"tifffile"}  # Colab's release requires Python >= 3.12
DROPPED = re.compile(r"^(nvidia-|cuda-|triton$|setuptools$)")


def constraints(freeze_lines):
    """(name, version) pairs of a pip freeze, with the changes the module docstring lists."""
    pins = []
    for line in freeze_lines:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        if not match:
            continue  # a comment, or `name @ URL`
        name, version = match.groups()
        key = name.lower().replace("_", "-")
        if DROPPED.match(key) or key in TORCH or key in NOT_FOR_PY311:
            continue
        pins.append((name, version))
    pins += sorted(TORCH.items())
    return sorted(pins, key=lambda p: p[0].lower())


def colab_torch(freeze_lines):
    """Colab's own torch and torchvision lines (`name==version`), which constraints() replaces."""
    return [
        line.strip()
        for line in freeze_lines
        if re.match(r"(torch|torchvision)==", line.strip())
    ]


def main(path, source, python):
    lines = open(path).read().splitlines()
    print(f"# Colab's published package versions ({source}), as pip constraints.")
    print(
        "# Written by scripts/colab_constraints.py: torch/torchvision are this machine's on-disk"
    )
    print(
        "# releases for Python 3.11; torch's CUDA packages, setuptools, URL-pinned lines and"
    )
    print(
        f"# {', '.join(sorted(NOT_FOR_PY311))} (no release for Python 3.11) are left out."
    )
    print(f"# Colab itself: python=={python} " + " ".join(colab_torch(lines)))
    for name, version in constraints(lines):
        print(f"{name}=={version}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
