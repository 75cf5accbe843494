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
    missing = [
        f
        for f in toc_files()
        if not any((ROOT / f"{f}{ext}").exists() for ext in (".md", ".ipynb"))
    ]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} carry outputs; clear them with jupyter nbconvert --clear-output"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_starts_with_the_install_cell(path):
    """The first cell is scripts/set_install_cell.py's template, with _config.yml's URL and tag."""
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    url, ref = book_config()["repository"]["url"], book_config()["repository"]["ref"]
    assert first.cell_type == "code", (
        f"{path.name}: the first cell must be the install cell"
    )
    assert "remove-cell" in first.metadata.get("tags", []), (
        f"{path.name}: tag the install cell 'remove-cell'"
    )
    assert f'"{url}", "{ref}"' in first.source, (
        f"{path.name}: the install cell must install {url} at {ref}"
    )
    assert first.source == install_cell_source(), (
        f"{path.name}: an old install cell; run `python scripts/set_install_cell.py`"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_reads_sizes_from_config(path):
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    assert re.search(r"config\.settings\(\"ch\d+\"\)", code), (
        f"{path.name}: read sizes with config.settings('chN')"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_checks_end_in_asserts(path):
    nb = nbformat.read(path, as_version=4)
    asserts = sum(
        cell.source.count("assert ") for cell in nb.cells if cell.cell_type == "code"
    )
    assert asserts >= 3, (
        f"{path.name}: only {asserts} asserts; every derivation cell ends in one"
    )


def _equation_table_refs():
    return set(
        re.findall(r"\{ref\}`([^`]+)`", (ROOT / "book" / "intro.md").read_text())
    )


def test_preface_equation_table_covers_every_equation():
    text = (ROOT / "book" / "intro.md").read_text()
    rows = re.findall(r"^\| \((\d+)\)(?:-\((\d+)\))? \|", text, flags=re.M)
    covered = set()
    for first, last in rows:
        covered.update(range(int(first), int(last or first) + 1))
    assert covered >= set(range(1, 20)), (
        f"equations missing from the preface table: {sorted(set(range(1, 20)) - covered)}"
    )


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
    executed = json.loads(
        (BUILD / "jupyter_execute" / path.relative_to(ROOT)).read_text()
    )
    figures = sum(
        "image/png" in out.get("data", {})
        for cell in executed["cells"]
        for out in cell.get("outputs", [])
    )
    assert figures >= 1, (
        f"{path.name} produced no figure (is MPLBACKEND set to a non-inline backend?)"
    )


# --- numbers in the prose come from the run (glue), not from the author's keyboard -----------


def _synthetic_notebook(markdown, printed, code='x = fit(lr=0.003)\nprint(f"{x:.3f}")'):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(code)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed)]
    nb.cells = [cell, nbformat.v4.new_markdown_cell(markdown)]
    return json.loads(nbformat.writes(nb))


def test_typed_run_number_is_caught_on_a_synthetic_notebook():
    from prose_numbers import notebook_typed_numbers

    printed = "implied x0-MSE 4.123, Var(x0) 0.347, accuracy 53%\n"
    assert notebook_typed_numbers(
        _synthetic_notebook("The MSE is 4.123 here.", printed)
    ) == [(1, "4.123")]
    assert notebook_typed_numbers(
        _synthetic_notebook("about 4.12, against 0.35", printed)
    ) == [(1, "4.12"), (1, "0.35")]  # rounded copies are still copies
    assert notebook_typed_numbers(
        _synthetic_notebook("53% of the samples", printed)
    ) == [(1, "53%")]
    glued = "The MSE is {glue:text}`mse:.3g` against {glue:text}`var:.3f`."
    assert notebook_typed_numbers(_synthetic_notebook(glued, printed)) == []
    # inputs are not results: a learning rate written in the code, one-digit numbers, links
    assert (
        notebook_typed_numbers(
            _synthetic_notebook("with lr 0.003 and 0.3 of the data", "0.003 0.3")
        )
        == []
    )
    assert (
        notebook_typed_numbers(
            _synthetic_notebook("[v4.12](https://x.org/4.12)", printed)
        )
        == []
    )
    assert (
        notebook_typed_numbers(
            _synthetic_notebook("Sections 4.1 and 4.12 of the notes", printed)
        )
        == []
    )
    # a number declared in its cell as not a result (a published value the run also prints)
    declared = "<!-- not-a-result: 4.123 -->\nThe published value is 4.123."
    assert notebook_typed_numbers(_synthetic_notebook(declared, printed)) == []
    # a number the run did not print is not reported (the prose may quote a paper)
    assert (
        notebook_typed_numbers(_synthetic_notebook("SD's factor 0.18215", printed))
        == []
    )


@pytest.mark.book
@pytest.mark.parametrize("path", toc_notebooks(), ids=lambda p: p.name)
def test_no_run_number_is_typed_into_a_chapter(built_book, path):
    from prose_numbers import notebook_typed_numbers, package_literals

    executed = json.loads(
        (BUILD / "jupyter_execute" / path.relative_to(ROOT)).read_text()
    )
    hits = notebook_typed_numbers(executed, package_literals())
    assert not hits, (
        f"{path.name}: numbers from the run typed into the prose (glue them): {hits}"
    )


def test_typed_run_number_on_a_page_is_caught_against_the_chapters():
    from prose_numbers import page_typed_numbers

    chapter = _synthetic_notebook("", "implied x0-MSE 4.123\n")
    assert page_typed_numbers("the MSE is 4.12 in chapter 4", [chapter]) == [
        (0, "4.12")
    ]
    glued = "the MSE is {glue:text}`ch04.ipynb::mse:.2f` in chapter 4"
    assert page_typed_numbers(glued, [chapter]) == []


@pytest.mark.book
@pytest.mark.parametrize("page", ["intro.md", "errata.md", "checks.md"])
def test_no_run_number_is_typed_into_a_page(built_book, page):
    from prose_numbers import package_literals, page_typed_numbers

    executed = [
        json.loads((BUILD / "jupyter_execute" / nb.relative_to(ROOT)).read_text())
        for nb in toc_notebooks()
    ]
    hits = page_typed_numbers(
        (ROOT / "book" / page).read_text(), executed, package_literals()
    )
    assert not hits, (
        f"{page}: numbers from a chapter's run typed into the prose (glue them): {hits}"
    )
