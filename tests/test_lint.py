"""The code reads as one: ruff's formatter and pyflakes pass (``make lint``, pyproject.toml).

The formatter's line length (88) is what a rendered code cell shows without a scroll bar, so
the chapters' code cells are formatted with the package. Pyflakes catches unused imports and
names and undefined names.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which(
    "ruff"
)


@pytest.mark.skipif(RUFF is None, reason="ruff is not installed (requirements.txt)")
@pytest.mark.parametrize(
    "command", [["check", "."], ["format", "--check", "."]], ids=["check", "format"]
)
def test_ruff(command):
    result = subprocess.run([RUFF, *command], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, (
        f"ruff {' '.join(command)} failed (run `make lint`):\n{result.stdout[-4000:]}"
    )
