"""oldschool.seeds: per-seed summaries and the paired comparison behind "A beats B"."""

import math

import pytest

from oldschool import seeds


def test_summary_matches_the_textbook_formulas():
    s = seeds.summarize([1.0, 2.0, 4.0])
    assert math.isclose(s.mean, 7 / 3) and math.isclose(
        s.sd, math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    )
    assert math.isclose(s.se, s.sd / math.sqrt(3)) and s.n == 3


def test_comparison_needs_the_effect_to_beat_its_standard_error():
    clear = seeds.compare([2.0, 2.1, 1.9], [1.0, 1.05, 0.95])  # +1 with a tiny spread
    assert clear.holds and clear.t > 10
    noisy = seeds.compare(
        [1.53, 2.34, 0.64], [1.0, 1.0, 1.0]
    )  # ch3's 4 vs 16 channels: +0.5 ± 0.85
    assert not noisy.holds
    assert math.isclose(noisy.threshold, 2.920 * noisy.difference.se, rel_tol=1e-3)
    assert not seeds.compare(
        [1.0, 1.1, 0.9], [2.0, 2.0, 2.0]
    ).holds  # the wrong direction never holds


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        seeds.summarize([1.0])
    with pytest.raises(ValueError, match="one value per seed"):
        seeds.compare([1.0, 2.0], [1.0, 2.0, 3.0])


# The chapters' checks, shown failing on broken input (see book/checks.md) ---------


def test_ch1_shrink_claim_fails_when_sigma_did_not_move():
    start = [math.log(1.0), math.log(1.01), math.log(0.99)]
    assert seeds.compare(
        start, [math.log(0.004), math.log(0.005), math.log(0.003)]
    ).holds
    assert not seeds.compare(
        start, [math.log(1.0), math.log(0.98), math.log(1.02)]
    ).holds


def test_ch3_channel_claim_fails_on_one_noisy_seed_set():
    """The earlier edition's 4 vs 16 channels result, +0.53, +1.34, -0.36 dB, is not a
    finding."""
    gains = [0.53, 1.34, -0.36]
    assert not seeds.compare(gains, [0.0, 0.0, 0.0]).holds
    assert seeds.compare([0.9, 1.1, 1.0], [0.0, 0.0, 0.0]).holds
