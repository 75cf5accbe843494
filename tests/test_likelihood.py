"""oldschool.likelihood: log p through the probability-flow ODE against the mixture's
exact log-density, with the exact and the Hutchinson divergence."""

import math

import pytest
import torch

from oldschool import gaussian_mixture, likelihood
from oldschool.sde import VPSDE

MIXTURE = gaussian_mixture.example_mixture()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("divergence", likelihood.DIVERGENCES)
def test_likelihood_matches_the_exact_log_density(divergence):
    """log p_{t_min}(x) through the ODE, with the exact p_T as the prior, against the
    diffused mixture's closed form; a flipped divergence sign would be off by 2x the
    integral (several nats)."""
    sde, t_min = VPSDE(), 1e-2
    x = MIXTURE.diffused(t_min, sde).sample(
        40, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    exact = MIXTURE.diffused(t_min, sde).log_prob(x)
    p_T = MIXTURE.diffused(sde.T, sde)
    est, info = likelihood.log_likelihood(
        sde,
        MIXTURE.score_fn(sde),
        x,
        t_min=t_min,
        divergence=divergence,
        prior_log_prob=p_T.log_prob,
        generator=torch.Generator().manual_seed(4),
    )
    if divergence == "exact":
        torch.testing.assert_close(est, exact, rtol=0, atol=2e-3)
    else:  # unbiased per point; the error averages out over points
        assert abs(float((est - exact).mean())) < 4 * float(
            (est - exact).std()
        ) / math.sqrt(40)
        assert float((est - exact).abs().mean()) < 2.0
    assert float(info["integral"].abs().mean()) > 1.0
    flipped = info["prior"] - info["integral"]  # the book's check on a flipped sign
    assert float((flipped - exact).abs().mean()) > 1.0


def test_likelihood_names_bad_input():
    sde = VPSDE()
    score = MIXTURE.score_fn(sde)
    with pytest.raises(ValueError, match="divergence must be one of"):
        likelihood.log_likelihood(sde, score, torch.zeros(4, 2), divergence="trace")
    with pytest.raises(ValueError, match=r"x must have shape \(B, D\)"):
        likelihood.log_likelihood(sde, score, torch.zeros(4, 2, 1))
