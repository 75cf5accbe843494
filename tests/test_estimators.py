"""oldschool.estimators: chapter 1's gradient estimators and their exact variances."""

import math

import pytest
import torch

from oldschool import estimators


def _variance_se(samples):
    """Standard error of the sample variance: sqrt((m4 - var^2) / n)."""
    centered = samples - samples.mean()
    var = centered.pow(2).mean()
    return math.sqrt((centered.pow(4).mean() - var**2).item() / len(samples))


@pytest.mark.parametrize("d", [1, 3, 20])
@pytest.mark.parametrize("baseline", [None, 0.0])
def test_quadratic_variances_match_monte_carlo(d, baseline):
    a, sigma, n = -1.3, 0.5, 200_000
    g = torch.Generator().manual_seed(d)
    reparam, reinforce = estimators.quadratic_estimates(
        d, a, sigma, n, baseline, generator=g
    )
    var_reparam, var_reinforce = estimators.quadratic_variances(d, a, sigma, baseline)
    for samples, exact in ((reparam, var_reparam), (reinforce, var_reinforce)):
        assert abs(
            samples.mean().item() - 2 * a
        ) < 5 * samples.std().item() / math.sqrt(n)
        assert abs(samples.var().item() - exact) < 5 * _variance_se(samples)


def test_quadrature_matches_the_quadratic_closed_form():
    a, sigma = -1.3, 0.5
    f, df = (lambda z: (z - 2.0) ** 2), (lambda z: 2 * (z - 2.0))  # mu = 0.7: a = -1.3
    for baseline in (0.0, a**2 + sigma**2):
        grad, var_r, var_s = estimators.exact_gradient_and_variances(
            f, df, 0.7, sigma, baseline
        )
        assert math.isclose(grad, 2 * a, rel_tol=1e-8)
        exact_r, exact_s = estimators.quadratic_variances(1, a, sigma, baseline)
        assert math.isclose(var_r, exact_r, rel_tol=1e-8) and math.isclose(
            var_s, exact_s, rel_tol=1e-8
        )


def test_score_function_variance_grows_linearly_with_dimension():
    a, sigma = -1.3, 0.5
    v = [estimators.quadratic_variances(d, a, sigma)[1] for d in (1, 2, 3)]
    assert math.isclose(v[2] - v[1], v[1] - v[0]) and math.isclose(
        v[1] - v[0], 4 * a**2 + 2 * sigma**2
    )
    assert all(
        estimators.quadratic_variances(d, a, sigma)[0] == 4 * sigma**2
        for d in (1, 10, 100)
    )


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"d must lie in \[1, inf\], got 0"):
        estimators.quadratic_variances(0, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"sigma must lie in \(0, inf\], got 0.0"):
        estimators.score_function_gradient(lambda z: z, torch.zeros(3), 0.0, 0.0)


# The chapters' checks, shown failing on broken input (see book/checks.md) ---------


def _variance_se(samples):
    centered = samples - samples.mean()
    return math.sqrt(
        (centered.pow(4).mean() - centered.pow(2).mean() ** 2).item() / len(samples)
    )


def _mc_matches(samples, mean, variance):
    """ch1 (ch1-variance, ch1-dimension): Monte Carlo mean and variance within 4
    standard errors."""
    n = len(samples)
    return abs(samples.mean().item() - mean) < 4 * samples.std().item() / math.sqrt(
        n
    ) and abs(samples.var().item() - variance) < 4 * _variance_se(samples)


def test_ch1_score_function_check_fails_with_a_flipped_sign():
    a, sigma, d, n = -1.3, 0.5, 4, 20_000
    g = torch.Generator().manual_seed(0)
    _, reinforce = estimators.quadratic_estimates(d, a, sigma, n, 0.0, generator=g)
    exact_var = estimators.quadratic_variances(d, a, sigma, 0.0)[1]
    assert _mc_matches(reinforce, 2 * a, exact_var)
    assert not _mc_matches(-reinforce, 2 * a, exact_var)  # score (mu - z) / sigma^2


def test_ch1_dimension_check_fails_with_a_dropped_term():
    """Drop the closed form's (d - 1) Var R term: Monte Carlo disagrees at d = 16."""
    a, sigma, d, n = -1.3, 0.5, 16, 20_000
    _, score_b = estimators.quadratic_estimates(
        d, a, sigma, n, generator=torch.Generator().manual_seed(1)
    )
    right = estimators.quadratic_variances(d, a, sigma)[1]
    wrong = right - (d - 1) * (4 * a**2 * sigma**2 + 2 * sigma**4) / sigma**2
    assert _mc_matches(score_b, 2 * a, right)
    assert not _mc_matches(score_b, 2 * a, wrong)


def test_ch1_reparameterized_check_fails_with_a_missing_half_in_the_std():
    """A sample with std = exp(logvar), not exp(logvar / 2), gives a biased d/dsigma."""
    mu, sigma, n = 0.7, 0.5, 20_000
    eps = torch.randn(
        n, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    log_sigma = torch.full(
        (n,), math.log(sigma), dtype=torch.float64, requires_grad=True
    )
    for std_of, ok in ((lambda ls: ls.exp(), True), (lambda ls: (2 * ls).exp(), False)):
        z = mu + std_of(log_sigma) * eps
        (grad,) = torch.autograd.grad((z**2).sum(), log_sigma)
        per_sample = grad / sigma  # d/dsigma, as the chapter computes it
        se = per_sample.std().item() / math.sqrt(n)
        assert (abs(per_sample.mean().item() - 2 * sigma) < 4 * se) == ok
