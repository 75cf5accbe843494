"""Shared fixtures: the repository layout, one book build per test session, and the
small inputs several test modules draw (random images, an LPIPS with random weights)."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
BOOK_ENV = {
    "OLDSCHOOL_MODE": "cpu",
    "OLDSCHOOL_PROGRESS": "0",
    "OMP_NUM_THREADS": "1",
}  # as the Makefile


def load_script(relative):
    """A script of the repository (e.g. "benchmarks/gpu_check.py") as a module."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_images(n=2, size=32, seed=0):
    """``n`` RGB images (n, 3, size, size) uniform in [-1, 1], from ``seed``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def random_lpips():
    """LPIPS with random trunk weights (nothing downloads), seeded."""
    from oldschool import perceptual

    return perceptual.LPIPS("alex", pretrained_backbone=False, seed=0)


def toc_files():
    """Every file listed in _toc.yml (root first), as paths relative to the root, without suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


def toc_notebooks():
    return [ROOT / f"{f}.ipynb" for f in toc_files() if (ROOT / f"{f}.ipynb").exists()]


def book_config():
    return yaml.safe_load((ROOT / "_config.yml").read_text())


@pytest.fixture(scope="session")
def built_book():
    """Build the book once (every chapter executed in CPU mode, Sphinx warnings are errors).

    Returns the build log. The executed notebooks land in _build/jupyter_execute and the
    pages in _build/html, where later tests look at them.
    """
    env = {**os.environ, **BOOK_ENV}
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run(
        [str(jupyter_book), "build", str(ROOT), "-W", "-n", "--keep-going"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    log = result.stdout + result.stderr
    (BUILD).mkdir(exist_ok=True)
    (BUILD / "build.log").write_text(log)
    times = re.findall(r"Executed notebook in ([\d.]+) seconds", log)
    print(
        f"\nbook build: exit {result.returncode}; notebook execution times (s): {times}"
    )
    if result.returncode != 0:
        pytest.fail(
            f"jupyter-book build failed (exit {result.returncode}); last lines:\n{log[-6000:]}"
        )
    return log


# Debian's chromium, which every browser test drives through Playwright (no browser download),
# with the flags that keep it off the (closed) network.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium():
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run `make browser` (installs Debian's chromium)"
        )


@pytest.fixture(scope="module")
def browser():
    """Chromium, driven by Playwright; one per module (Playwright's sync API allows one)."""
    from playwright.sync_api import sync_playwright

    require_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def tiny_vae():
    """A random VAE on 2x2 images with a 2-D latent: small enough to integrate p(x) on a grid."""
    import torch

    from oldschool import autoencoders

    torch.manual_seed(0)
    model = (
        autoencoders.VAE(image_shape=(1, 2, 2), latent_dim=2, hidden=16).double().eval()
    )
    x = (
        torch.rand(
            3, 1, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64
        )
        * 2
        - 1
    )
    return model, x


@pytest.fixture
def one_thread():
    """Small 2-D problems gain nothing from threads; on a busy 2-core machine they lose."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
