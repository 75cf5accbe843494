"""Claims that rest on several training runs: mean, spread and a paired comparison.

An empirical claim "A beats B" in the book is a statement about training runs, and one
run is one draw. The chapters train each side with several seeds at equal budgets,
pair the runs by seed (same data order, same initial weights where the models share a
shape) and ask whether the mean difference stands out from its standard error:

    d_s = a_s - b_s,   mean d,   sd = std(d_s),   se = sd / sqrt(n),
    the claim holds when mean d > t_{n-1, level} * se   (a one-sided paired t-test).

With n = 3 seeds the 95% one-sided t quantile is 2.92, so an effect has to be about
three standard errors wide before the book says it is there; where it is not, the
chapter says so (Student 1908; any statistics text, e.g. Wasserman, All of Statistics,
sec. 10.4).
"""

import math
from dataclasses import dataclass

from scipy import stats

from . import checks


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation and standard error of the mean over seeds."""

    mean: float
    sd: float
    se: float
    n: int

    def __str__(self):
        return f"{self.mean:.3g} ± {self.sd:.2g}"


def summarize(values):
    """Summary of per-seed values: mean, sd (n - 1 in the denominator), sd / sqrt(n)."""
    values = [checks.number(float(v), "values") for v in values]
    n = len(values)
    if n < 2:
        raise ValueError(f"values: need at least 2 seeds for a spread, got {n}")
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Summary(mean, sd, sd / math.sqrt(n), n)


@dataclass(frozen=True)
class Comparison:
    """The paired differences a_s - b_s over seeds; is their mean clearly > 0?"""

    difference: Summary
    level: float

    @property
    def threshold(self):
        """t_{n-1, level} * se: how far above 0 the mean difference must be."""
        return stats.t.ppf(self.level, self.difference.n - 1) * self.difference.se

    @property
    def holds(self):
        """mean(a - b) > t_{n-1, level} * se: "A beats B" survives the seeds."""
        return self.difference.mean > self.threshold

    @property
    def t(self):
        """The mean difference in standard errors (inf when all seeds agree exactly)."""
        d = self.difference
        return math.copysign(math.inf, d.mean) if d.se == 0 else d.mean / d.se

    def __str__(self):
        d = self.difference
        return (
            f"{d.mean:+.3g} ± {d.sd:.2g} (se {d.se:.2g}, n = {d.n}, t = {self.t:.1f})"
        )


def compare(a, b, level=0.95):
    """Paired comparison of per-seed values a_s and b_s: does a beat b?

    Same seeds, same order. Returns a ``Comparison`` of d_s = a_s - b_s; ``.holds`` is
    the one-sided paired t-test at ``level``. Larger is better: pass (b, a) to test
    "a is smaller".
    """
    a = [checks.number(float(v), "a") for v in a]
    b = [checks.number(float(v), "b") for v in b]
    if len(a) != len(b):
        raise ValueError(
            f"a and b need one value per seed each, got {len(a)} and {len(b)}"
        )
    if not 0.5 < level < 1.0:
        raise ValueError(f"level must be in (0.5, 1), got {level!r}")
    return Comparison(summarize([x - y for x, y in zip(a, b)]), level)
