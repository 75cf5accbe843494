"""The package's layout: tests mirror the modules, and the README's map is current."""

import pytest

from conftest import ROOT, load_script

MODULES = sorted(
    p.stem for p in (ROOT / "oldschool").glob("*.py") if p.stem != "__init__"
)


def _package_map():
    return load_script("scripts/package_map.py")


@pytest.mark.parametrize("module", MODULES)
def test_every_module_has_its_test_file(module):
    assert (ROOT / "tests" / f"test_{module}.py").exists(), (
        f"oldschool/{module}.py has no tests/test_{module}.py"
    )


def test_the_readme_map_is_current():
    package_map = _package_map()
    assert package_map.block() in (ROOT / "README.md").read_text(), (
        "README.md's package map is stale: run python scripts/package_map.py"
    )
