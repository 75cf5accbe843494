"""Find numbers that a run printed and the prose repeats by hand (instead of with glue).

The book's rule: a number a cell produced and the text quotes is pasted with MyST-NB's
``{glue:text}`` role, so the text cannot drift from the output when the code, the seed or
the mode changes. This module finds the exceptions in an *executed* notebook:

    python tests/prose_numbers.py _build/jupyter_execute/book/ch04_diffusion_as_vae.ipynb
    python tests/prose_numbers.py book/errata.md _build/jupyter_execute/book/*.ipynb

A candidate is a decimal number in a markdown cell (``4.12``, ``0.347``, ``1.5e-4``) or a
percentage (``53%``) with at least two significant digits. It is reported when some
output of the notebook (stream, text/plain, text/markdown, text/html) holds a number that
rounds to it at the prose's precision, unless the number is an input rather than a result:
a literal in the notebook's code cells or in the package's source (``0.18215``, ``0.00085``).
Glued values do not appear in the markdown source, so they are never reported. A number
that only looks like a result (a published value the run happens to print, a 95% interval)
is declared in its cell with a comment, which reviewers see: ``<!-- not-a-result: 5.49 95% -->``.
"""

import json
import re
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

NUMBER = re.compile(
    r"(?<![\w.^_{])[-+]?(?:\d+\.\d+|\d+(?=%))(?:[eE][-+]?\d+)?%?(?![\w.]*\d)"
)
ROLE = re.compile(
    r"\{(?:glue|glue:text|glue:any|glue:md|ref|numref|cite|eq|doc)[^}]*\}`[^`]*`"
)
DECLARED = re.compile(r"<!--\s*not-a-result:([^>]*)-->")
SECTION = re.compile(
    r"(?i)\bsections?\s+\d+(?:\.\d+)*(?:\s*(?:,|and|-|to)\s*\d+(?:\.\d+)*)*"
)
HEADING = re.compile(r"^#+ .*$", re.M)
LINK = re.compile(r"\]\([^)]*\)|https?://\S+")
LITERAL = re.compile(
    r"(?<![\w.])\d[\d_]*\.\d+(?:[eE][-+]?\d+)?|(?<![\w.])\d+[eE][-+]?\d+"
)


def _decimal(token):
    try:
        return Decimal(token.rstrip("%").lstrip("+"))
    except InvalidOperation:
        return None


def _significant_digits(token):
    digits = (
        re.sub(r"[eE].*$", "", token.rstrip("%"))
        .lstrip("+-")
        .replace(".", "")
        .lstrip("0")
    )
    return len(digits)


def _places(token):
    """Decimal places of a token, counting an exponent (1.5e-4 has 5)."""
    value = _decimal(token)
    return 0 if value is None else max(0, -value.as_tuple().exponent)


def numbers_in(text):
    """The number tokens of ``text`` (strings, as written)."""
    return NUMBER.findall(text)


def literals_in(code):
    """Decimal literals of source code, as Decimals (underscores removed)."""
    found = set()
    for token in LITERAL.findall(code):
        value = _decimal(token.replace("_", ""))
        if value is not None:
            found.add(value.normalize())
    return found


def package_literals():
    """Decimal literals in ``oldschool/*.py``: published constants the prose may name."""
    found = set()
    for path in (ROOT / "oldschool").glob("*.py"):
        found |= literals_in(path.read_text())
    return found


def output_text(nb):
    """All text the code cells of an executed notebook (a dict) showed."""
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append("".join(out["text"]))
            for mime in ("text/plain", "text/markdown", "text/html"):
                value = out.get("data", {}).get(mime)
                if value:
                    parts.append("".join(value) if isinstance(value, list) else value)
    return "\n".join(parts)


def prose_of(markdown):
    """Markdown without headings, section numbers, glue/ref/cite roles and link targets."""
    return SECTION.sub(" ", HEADING.sub(" ", LINK.sub("]", ROLE.sub(" ", markdown))))


def matches(prose_token, output_tokens):
    """True when some output number rounds to ``prose_token`` at the prose's precision."""
    value = _decimal(prose_token)
    if value is None:
        return False
    percent = prose_token.endswith("%")
    places = _places(prose_token)
    quantum = Decimal(1).scaleb(-places)
    for token in output_tokens:
        if token.endswith("%") != percent:
            continue
        out = _decimal(token)
        if out is None or _places(token) < places:
            continue
        if abs(out).quantize(quantum) == abs(value).quantize(quantum) and (out < 0) == (
            value < 0
        ):
            return True
    return False


def typed_numbers(markdown_cells, outputs, inputs):
    """[(cell index, token)] for numbers in ``markdown_cells`` that ``outputs`` produced.

    markdown_cells: {index: markdown source}; outputs: text the run showed; inputs: a set
    of Decimals that are inputs (literals in code), never reported.
    """
    output_tokens = set(numbers_in(outputs))
    found = []
    for index, markdown in markdown_cells.items():
        declared = set(" ".join(DECLARED.findall(markdown)).replace(",", " ").split())
        for token in numbers_in(prose_of(DECLARED.sub(" ", markdown))):
            value = _decimal(token)
            if (
                value is None
                or _significant_digits(token) < 2
                or value.normalize() in inputs
            ):
                continue
            if token.lstrip("+") in declared:
                continue
            if matches(token, output_tokens):
                found.append((index, token))
    return found


def notebook_typed_numbers(nb, extra_inputs=frozenset()):
    """Typed run numbers of one executed notebook (a dict, as json.load gives it)."""
    code = "\n".join(
        "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
    )
    markdown = {
        i: "".join(c["source"])
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "markdown"
    }
    return typed_numbers(
        markdown, output_text(nb), literals_in(code) | set(extra_inputs)
    )


def page_typed_numbers(markdown, notebooks, extra_inputs=frozenset()):
    """Typed run numbers of a Markdown page (errata, preface) against executed notebooks.

    A page quotes the chapters, so every chapter's outputs count as the run, and every
    chapter's code literals as inputs.
    """
    code = "\n".join(
        "".join(c["source"])
        for nb in notebooks
        for c in nb["cells"]
        if c["cell_type"] == "code"
    )
    outputs = "\n".join(output_text(nb) for nb in notebooks)
    return typed_numbers({0: markdown}, outputs, literals_in(code) | set(extra_inputs))


if __name__ == "__main__":
    names = sys.argv[1:]
    notebooks = {
        n: json.loads(Path(n).read_text()) for n in names if n.endswith(".ipynb")
    }
    status = 0
    for name in names:
        if name.endswith(".md"):
            hits = page_typed_numbers(
                Path(name).read_text(), list(notebooks.values()), package_literals()
            )
        else:
            hits = notebook_typed_numbers(notebooks[name], package_literals())
        for index, token in hits:
            print(
                f"{name}: markdown cell {index}: {token} is a run's output typed into the prose; "
                "glue it"
            )
        status |= bool(hits)
    sys.exit(status)
