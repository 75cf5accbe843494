"""The Colab-parity job: install and run the book the way a Colab reader does.

1. A fresh virtual environment gets the packages Colab preinstalls (colab/preinstalled.txt)
   at Colab's published versions (colab/constraints.txt).
2. The repository is cloned into a scratch folder and its release tag (_config.yml
   repository.ref) is moved onto the commit under test, so the install cell installs this
   commit. The install cell of the chapters (they all carry the same one; see
   scripts/set_install_cell.py) then runs in that environment with its own command, with
   only the repository URL pointed at the clone.
3. Every chapter of _toc.yml is executed top to bottom in that environment (its first cell
   is the install cell again, which must now find oldschool and change nothing).
4. It fails on any install or cell error, and on any package that was installed before the
   install cell and has another version after the install or after the chapters.

The chapters run with CHAPTER_ENV below, the one place that says in which mode the job
runs them. Results (times, added packages, versions) are written to
_build/colab-parity/report.json and the parity column of colab/tested-with.json.

    python scripts/colab_parity.py                    # the whole job (make colab-parity)
    python scripts/colab_parity.py --reuse-venv --chapters ch05   # while developing
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import set_install_cell  # noqa: E402  (the template the chapters' first cells come from)
import tested_with  # noqa: E402

COLAB = ROOT / "colab"
OUT = ROOT / "_build" / "colab-parity"
# How the chapters run in this job. Colab runs them in GPU mode; the capped GPU-settings run
# on the CPU replaces the first entry here once it exists.
CHAPTER_ENV = {
    "OLDSCHOOL_MODE": "cpu",
    "OLDSCHOOL_PROGRESS": "0",
    "OMP_NUM_THREADS": "1",
}
CELL_TIMEOUT = 300  # seconds per cell; a CPU-mode chapter takes a few minutes in all
CHAPTER_TIMEOUT = 900  # seconds per chapter, whatever happens (a hung client included)


def log(message):
    print(f"[colab-parity {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd, timeout=None, **kwargs):
    """Run a command; stop with its output when it fails or outlives `timeout` seconds."""
    try:
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, **kwargs
        )
    except subprocess.TimeoutExpired as expired:  # the kernel follows its parent out
        raise SystemExit(
            f"TIMED OUT after {timeout} s: {' '.join(map(str, cmd))}\n"
            f"{(expired.stderr or b'')[-4000:]}"
        )
    if result.returncode != 0:
        raise SystemExit(
            f"FAILED ({result.returncode}): {' '.join(map(str, cmd))}\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result


def clean_env(venv):
    """The environment a Colab kernel would see: the venv's bin first, no PYTHONPATH."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


def installed(venv):
    """{normalized name: version} of every distribution in the venv."""
    listing = run(
        [venv / "bin" / "python", "-m", "pip", "list", "--format=json"],
        env=clean_env(venv),
    )
    return {normalized(p["name"]): p["version"] for p in json.loads(listing.stdout)}


def normalized(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned():
    """{normalized name: Colab's version} of the packages of colab/preinstalled.txt."""
    pins = {}
    for line in (COLAB / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[normalized(name)] = version
    names = [
        normalized(line)
        for line in (COLAB / "preinstalled.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    return {name: pins[name] for name in names}


def build_venv(venv, python, reuse):
    """A venv holding Colab's preinstalled packages at Colab's versions; seconds it took."""
    stamp = venv / ".colab-constraints"
    wanted = (COLAB / "constraints.txt").read_text() + (
        COLAB / "preinstalled.txt"
    ).read_text()
    if reuse and stamp.exists() and stamp.read_text() == wanted:
        log(f"reusing {venv}")
        return 0.0
    start = time.time()
    shutil.rmtree(venv, ignore_errors=True)
    run([python, "-m", "venv", venv])
    log(f"installing Colab's preinstalled packages into {venv}")
    run(
        [
            venv / "bin" / "python",
            "-m",
            "pip",
            "install",
            "--quiet",
            "--constraint",
            COLAB / "constraints.txt",
            "--requirement",
            COLAB / "preinstalled.txt",
        ],
        env=clean_env(venv),
    )
    stamp.write_text(wanted)
    return time.time() - start


def uninstall_oldschool(venv):
    """A reused venv may hold oldschool from an earlier run; a Colab runtime does not."""
    run(
        [
            venv / "bin" / "python",
            "-m",
            "pip",
            "uninstall",
            "--yes",
            "--quiet",
            "oldschool",
        ],
        env=clean_env(venv),
    )


def clone_at_release(scratch):
    """A clone of this repository whose release tag points at the commit under test."""
    url, ref = set_install_cell.repository()
    clone = (
        scratch / "repository"
    )  # not "oldschool": that would import as a namespace package
    run(["git", "clone", "--quiet", ROOT, clone])
    run(["git", "-C", clone, "tag", "--force", ref, "HEAD"])
    head = run(["git", "-C", clone, "rev-parse", "--short", "HEAD"]).stdout.strip()
    return clone, url, ref, head


def run_install_cell(venv, clone, url, scratch, check=True):
    """The chapters' install cell, run as a Colab kernel runs it, with the URL at the clone."""
    source = set_install_cell.install_cell_source()
    assert f'"{url}"' in source, "the install cell no longer names the repository URL"
    cell = scratch / "install_cell.py"
    cell.write_text(source.replace(f'"{url}"', f'"file://{clone}"'))
    if not check:
        return subprocess.run(
            [venv / "bin" / "python", cell],
            cwd=scratch,
            env=clean_env(venv),
            capture_output=True,
            text=True,
        )
    return run(
        [venv / "bin" / "python", cell], cwd=scratch, env=clean_env(venv)
    ).stdout.strip()


def release_needing_newer_ipywidgets(clone, ref, scratch):
    """A clone whose release asks for ipywidgets>=8.1, newer than Colab's 7.7.1 (issue 12)."""
    refused = scratch / "repository-refused"
    run(["git", "clone", "--quiet", clone, refused])
    pyproject = refused / "pyproject.toml"
    text, count = re.subn(
        r'"ipywidgets[^"]*"', '"ipywidgets>=8.1"', pyproject.read_text()
    )
    assert count == 1, "pyproject.toml has no ipywidgets requirement to raise"
    pyproject.write_text(text)
    run(
        [
            "git",
            "-C",
            refused,
            "-c",
            "user.name=parity",
            "-c",
            "user.email=parity@localhost",
            "commit",
            "--quiet",
            "-am",
            "ask for ipywidgets>=8.1",
        ]
    )
    run(["git", "-C", refused, "tag", "--force", ref, "HEAD"])
    return refused


def changed(before, after):
    """Packages present before whose version differs (or that are gone) after."""
    return {
        name: (version, after.get(name))
        for name, version in before.items()
        if after.get(name) != version
    }


def chapters(selected):
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [
        entry["file"]
        for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}])
        for entry in part["chapters"]
        if "file" in entry
    ]
    notebooks = [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").exists()]
    if selected:
        notebooks = [
            nb for nb in notebooks if any(nb.name.startswith(s) for s in selected)
        ]
    return notebooks


def execute(venv, notebook, scratch):
    """Execute one chapter in a kernel of the venv; (seconds, first cell's output).

    The kernel (ipykernel and every package) is the venv's; the client that drives it is
    nbconvert from the environment running this script, as on Colab, where the frontend is
    not the kernel's environment. (nbconvert inside the venv, with Colab's jupyter_client
    7.4.9, twice hung here for good after a cell, the kernel idle.)
    """
    spec = scratch / "kernels" / "colab-parity"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [
                    str(venv / "bin" / "python"),
                    "-m",
                    "ipykernel_launcher",
                    "-f",
                    "{connection_file}",
                ],
                "display_name": "Colab parity",
                "language": "python",
                "env": CHAPTER_ENV,
            }
        )
    )
    OUT.mkdir(parents=True, exist_ok=True)
    start = time.time()
    env = {**clean_env(venv), "JUPYTER_PATH": str(scratch)}
    run(
        [
            sys.executable,
            "-m",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            f"--ExecutePreprocessor.timeout={CELL_TIMEOUT}",
            "--ExecutePreprocessor.kernel_name=colab-parity",
            # Unix sockets, not TCP ports: on a machine running many kernels at once, two
            # kernels given the same free port may lose each other's messages
            "--KernelManager.transport=ipc",
            "--output-dir",
            OUT,
            notebook,
        ],
        env=env,
        cwd=notebook.parent,
        timeout=CHAPTER_TIMEOUT,
    )
    seconds = time.time() - start
    executed = json.loads((OUT / notebook.name).read_text())
    first = "".join(
        "".join(o.get("text", "")) for o in executed["cells"][0].get("outputs", [])
    )
    errors = [
        o
        for c in executed["cells"]
        for o in c.get("outputs", [])
        if o["output_type"] == "error"
    ]
    if errors:
        raise SystemExit(
            f"{notebook.name}: {errors[0]['ename']}: {errors[0]['evalue']}"
        )
    return seconds, first.strip()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv-colab")
    parser.add_argument(
        "--python",
        default=shutil.which("python3.11") or sys.executable,
        help="the interpreter of the venv (Colab has 3.13; torch for it is not on disk)",
    )
    parser.add_argument(
        "--reuse-venv",
        action="store_true",
        help="keep a venv built from the same constraints (for development)",
    )
    parser.add_argument(
        "--chapters", nargs="*", help="only these chapters (prefixes, e.g. ch05)"
    )
    args = parser.parse_args(argv)
    venv = args.venv.resolve()
    start = time.time()
    report = {"chapter_env": CHAPTER_ENV, "chapters": {}}

    report["venv_seconds"] = round(build_venv(venv, args.python, args.reuse_venv), 1)
    uninstall_oldschool(venv)
    before = installed(venv)
    drift = {n: (v, before.get(n)) for n, v in pinned().items() if before.get(n) != v}
    if drift:
        raise SystemExit(f"the venv does not hold Colab's versions: {drift}")

    with tempfile.TemporaryDirectory(prefix="colab-parity-") as scratch:
        scratch = Path(scratch)
        clone, url, ref, head = clone_at_release(scratch)
        # The control: a release that needs a newer ipywidgets than Colab's must be refused,
        # with the cell's message, and leave every package as it was.
        refused = run_install_cell(
            venv,
            release_needing_newer_ipywidgets(clone, ref, scratch),
            url,
            scratch,
            check=False,
        )
        if (
            refused.returncode == 0
            or "without changing a package" not in refused.stderr
        ):
            raise SystemExit(
                "the install cell did not refuse a release needing ipywidgets>=8.1:\n"
                f"{refused.stdout[-2000:]}{refused.stderr[-3000:]}"
            )
        if changed(before, installed(venv)):
            raise SystemExit(
                f"a refused install changed packages: {changed(before, installed(venv))}"
            )
        log(
            "install cell refused a release needing ipywidgets>=8.1, as it must; nothing changed"
        )
        log(f"install cell: oldschool @ git+file://{clone}@{ref} (commit {head})")
        t0 = time.time()
        report["install_output"] = run_install_cell(venv, clone, url, scratch)
        report["install_seconds"] = round(time.time() - t0, 1)
        log(report["install_output"])
        after_install = installed(venv)
        if changed(before, after_install):
            raise SystemExit(
                f"the install cell changed preinstalled packages: {changed(before, after_install)}"
            )
        report["added"] = {n: v for n, v in after_install.items() if n not in before}
        report["commit"] = head

        for notebook in chapters(args.chapters):
            log(f"executing {notebook.name} with {CHAPTER_ENV}")
            seconds, first = execute(venv, notebook, scratch)
            report["chapters"][notebook.name] = round(seconds, 1)
            log(
                f"{notebook.name}: {seconds:.0f} s; {first.splitlines()[-1] if first else ''}"
            )
            if not first.startswith("oldschool "):
                raise SystemExit(
                    f"{notebook.name}: the install cell printed {first!r}, "
                    "not the versions line of an already installed oldschool"
                )

    after = installed(venv)
    if changed(before, after):
        raise SystemExit(
            f"running the chapters changed packages: {changed(before, after)}"
        )
    report["seconds"] = round(time.time() - start, 1)
    report["load"] = os.getloadavg()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "report.json").write_text(json.dumps(report, indent=1))
    if not args.chapters:  # only a run of every chapter speaks for the book
        tested_with.record(
            "colab-parity",
            venv / "bin" / "python",
            note=f"{len(report['chapters'])} chapters run, {CHAPTER_ENV['OLDSCHOOL_MODE']} mode",
        )
    log(
        f"passed: {len(report['chapters'])} chapters in {report['seconds']:.0f} s "
        f"(venv {report['venv_seconds']:.0f} s, install cell {report['install_seconds']:.0f} s); "
        f"added by the install cell: {report['added']}"
    )


if __name__ == "__main__":
    main()
