"""Colab readiness that can be checked in a second: floors, constraints, install cells.

The slow half, installing and running every chapter in an environment with Colab's
versions, is scripts/colab_parity.py (`make colab-parity`).
"""

import re
import sys
import tomllib

from packaging.requirements import Requirement

from conftest import ROOT, book_config

sys.path.insert(0, str(ROOT / "scripts"))
import colab_constraints  # noqa: E402
import set_install_cell  # noqa: E402
import tested_with  # noqa: E402

COLAB = ROOT / "colab"


def normalized(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_runtime_floors_admit_every_version_colab_ships():
    published = {normalized(k): v for k, v in tested_with.colab_published().items()}
    refused, absent = [], []
    for line in pyproject()["project"]["dependencies"]:
        req = Requirement(line)
        version = published.get(normalized(req.name))
        if version is None:
            absent.append(req.name)
        elif not req.specifier.contains(version, prereleases=True):
            refused.append(f"{req} refuses Colab's {version}")
    assert not refused, refused
    assert sorted(absent) == ["lpips", "myst-nb"], (
        f"not on Colab (the install cell adds them): {absent}"
    )


def test_colab_torch_line_is_colab_own():
    header = tested_with.colab_published()
    assert header["python"].startswith("3.13") and header["torch"].startswith("2.11")


def test_every_preinstalled_package_has_colab_pin():
    pins = {
        normalized(k)
        for k in re.findall(
            r"^([\w.\-]+)==", (COLAB / "constraints.txt").read_text(), re.M
        )
    }
    names = [
        normalized(line)
        for line in (COLAB / "preinstalled.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert names and not [n for n in names if n not in pins]


def test_constraints_keep_versions_and_replace_only_torch_stack():
    freeze = [
        "numpy==2.1.3",
        "torch==2.11.0+cu128",
        "triton==3.6.0",
        "nvidia-cublas-cu12==12.8",
        "google-colab @ file:///colabtools/dist/google_colab-1.0.0.tar.gz",
        "ipywidgets==7.7.1",
    ]
    pins = dict(colab_constraints.constraints(freeze))
    assert pins["numpy"] == "2.1.3" and pins["ipywidgets"] == "7.7.1"
    assert pins["torch"] == colab_constraints.TORCH["torch"]
    assert (
        "triton" not in pins
        and "google-colab" not in pins
        and not any(k.startswith("nvidia") for k in pins)
    )


def test_release_tag_names_the_package_version():
    version = pyproject()["project"]["version"]
    assert book_config()["repository"]["ref"] == f"v{version}", (
        "_config.yml repository.ref must be the release tag of pyproject.toml's version"
    )


def test_install_cell_names_url_and_release_once():
    url, ref = book_config()["repository"]["url"], book_config()["repository"]["ref"]
    source = set_install_cell.install_cell_source()
    assert source.count(f'"{url}"') == 1 and f'"{ref}"' in source
    assert (
        "--constraint" in source
        and "--upgrade" not in source
        and "--quiet" not in source
    )
    compile(source, "install cell", "exec")
    assert max(len(line) for line in source.splitlines()) <= 88


def test_tested_with_tables_are_the_records_rendered():
    """README and preface show the table scripts/tested_with.py renders, not a hand edit."""
    body = tested_with.table()
    assert body in (ROOT / "book" / "tested_with.md").read_text(), (
        "run scripts/tested_with.py render"
    )
    readme = (ROOT / "README.md").read_text()
    assert f"{tested_with.START}\n{body}\n{tested_with.END}" in readme, (
        "run scripts/tested_with.py render"
    )
    assert "{include} tested_with.md" in (ROOT / "book" / "intro.md").read_text()
