"""The README's map of the package: each module of ``oldschool`` and its idea.

The idea is the first line of the module's docstring, so the map cannot drift from the
code. ``python scripts/package_map.py`` rewrites the block between the markers in
README.md; ``tests/test_layout.py`` fails when the block is stale.
"""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- package map: begin -->", "<!-- package map: end -->"


def first_line(path):
    doc = ast.get_docstring(ast.parse(path.read_text()))
    if not doc:
        raise SystemExit(f"{path.name} has no module docstring")
    return doc.split("\n\n")[0].replace("\n", " ")


def table():
    rows = ["| module | what it holds |", "|---|---|"]
    for path in sorted((ROOT / "oldschool").glob("*.py")):
        if path.stem == "__init__":
            continue
        rows.append(f"| `{path.stem}` | {first_line(path)} |")
    return "\n".join(rows)


def block():
    return f"{BEGIN}\n{table()}\n{END}"


def main():
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    readme.write_text(text[:start] + block() + text[stop:])


if __name__ == "__main__":
    sys.exit(main())
