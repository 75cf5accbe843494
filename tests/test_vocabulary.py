"""One vocabulary from prose to code: the retired names of the path coefficients stay retired.

Every process is x_t = alpha(t) x0 + sigma(t) eps with log-SNR lam(t) (``oldschool.sde``).
The names it replaced (``mean_coeff``/``std``/``log_mean_coeff``, m/s, VE's ``sigma`` for the
noise scale) and ``eps`` used for an end time must not come back in the package or the chapters;
nor the per-step ``check_time`` and hand-written shape messages that ``oldschool.checks``
replaced (checks at the door).
"""

import re

import pytest

from conftest import ROOT

SOURCES = sorted((ROOT / "oldschool").glob("*.py")) + sorted(
    (ROOT / "book").glob("*.ipynb")
)
RETIRED = {
    r"\bmean_coeff\b": "alpha(t)",
    r"\blog_mean_coeff\b": "log_alpha(t)",
    r"\b(sde|vp|ve|sub|sd|path|schedule)\.std\(": "sigma(t)",
    r"\bdiffusion_coeff\b": "g(t) / g2(t)",
    r"\b((samplers|ode_solvers|dpm_solvers)\.\w+|time_grid|dsm_loss)\([^)]*\beps=": (
        "t_min= (eps is noise, never an end time)"
    ),
    r"\bcheck_time\b": "checks.times at the door (per-step code checks nothing)",
    r"isinstance\(\w+, torch\.Tensor\) else type\(": "checks.describe / checks.tensor",
}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_retired_names(path):
    text = path.read_text()
    found = [
        f"{m.group(0)!r} (use {new})"
        for pattern, new in RETIRED.items()
        for m in re.finditer(pattern, text)
    ]
    assert not found, f"{path.name} uses retired names: {found}"
