"""The book as a whole: layout rules, and the build that executes every chapter.

The first tests are quick checks on the sources. The ones marked ``book`` build the
book once (see conftest.built_book): every notebook in _toc.yml runs top to bottom in a
fresh kernel in CPU mode, any cell error or Sphinx warning fails the build, and then the
executed notebooks are searched for warnings that a reader would see.
"""

import json
import re
import sys

import nbformat
import pytest

from conftest import BUILD, ROOT, book_config, toc_files, toc_notebooks

sys.path.insert(0, str(ROOT / "scripts"))
from set_install_cell import install_cell_source  # noqa: E402

NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def test_every_notebook_is_in_the_toc():
    listed = {ROOT / f"{f}.ipynb" for f in toc_files()}
    missing = [nb.name for nb in NOTEBOOKS if nb not in listed]
    assert not missing, f"notebooks not listed in _toc.yml: {missing}"


def test_every_toc_entry_exists():
    missing = [f for f in toc_files() if not any((ROOT / f"{f}{ext}").exists() for ext in (".md", ".ipynb"))]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(nb.cells)
             if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them with jupyter nbconvert --clear-output"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_starts_with_the_install_cell(path):
    """The first cell is scripts/set_install_cell.py's template, with _config.yml's URL and tag."""
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    url, ref = book_config()["repository"]["url"], book_config()["repository"]["ref"]
    assert first.cell_type == "code", f"{path.name}: the first cell must be the install cell"
    assert "remove-cell" in first.metadata.get("tags", []), f"{path.name}: tag the install cell 'remove-cell'"
    assert f'"{url}", "{ref}"' in first.source, f"{path.name}: the install cell must install {url} at {ref}"
    assert first.source == install_cell_source(), \
        f"{path.name}: an old install cell; run `python scripts/set_install_cell.py`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_reads_sizes_from_config(path):
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    assert re.search(r"config\.settings\(\"ch\d+\"\)", code), f"{path.name}: read sizes with config.settings('chN')"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_checks_end_in_asserts(path):
    nb = nbformat.read(path, as_version=4)
    asserts = sum(cell.source.count("assert ") for cell in nb.cells if cell.cell_type == "code")
    assert asserts >= 3, f"{path.name}: only {asserts} asserts; every derivation cell ends in one"


def _equation_table_refs():
    return set(re.findall(r"\{ref\}`([^`]+)`", (ROOT / "book" / "intro.md").read_text()))


def test_preface_equation_table_covers_every_equation():
    text = (ROOT / "book" / "intro.md").read_text()
    rows = re.findall(r"^\| \((\d+)\)(?:-\((\d+)\))? \|", text, flags=re.M)
    covered = set()
    for first, last in rows:
        covered.update(range(int(first), int(last or first) + 1))
    assert covered >= set(range(1, 20)), f"equations missing from the preface table: {sorted(set(range(1, 20)) - covered)}"


# --- the build ------------------------------------------------------------------------------

STDERR_NOISE = re.compile(r"(Traceback|Error|Warning|warn)", re.I)


@pytest.mark.book
def test_book_builds_with_every_chapter_executed(built_book):
    assert (BUILD / "html" / "index.html").exists()
    for nb in toc_notebooks():
        page = BUILD / "html" / nb.relative_to(ROOT).with_suffix(".html")
        assert page.exists(), f"no page for {nb.name}"


@pytest.mark.book
@pytest.mark.parametrize("path", toc_notebooks(), ids=lambda p: p.name)
def test_executed_chapter_has_no_errors_or_warnings(built_book, path):
    executed = BUILD / "jupyter_execute" / path.relative_to(ROOT)
    assert executed.exists(), f"{path.name} was not executed by the build"
    nb = json.loads(executed.read_text())
    problems = []
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            if out["output_type"] == "error":
                problems.append(f"cell {i}: {out['ename']}: {out['evalue']}")
            elif out["output_type"] == "stream" and out["name"] == "stderr":
                text = "".join(out["text"])
                if STDERR_NOISE.search(text):
                    problems.append(f"cell {i} stderr: {text[:300]}")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


@pytest.mark.book
@pytest.mark.parametrize("path", toc_notebooks(), ids=lambda p: p.name)
def test_chapter_figures_are_in_the_page(built_book, path):
    executed = json.loads((BUILD / "jupyter_execute" / path.relative_to(ROOT)).read_text())
    figures = sum("image/png" in out.get("data", {}) for cell in executed["cells"] for out in cell.get("outputs", []))
    assert figures >= 1, f"{path.name} produced no figure (is MPLBACKEND set to a non-inline backend?)"
