"""What is left of the old mixed file: the mixture's moments, class posterior and CFG
pieces, which test ``toy.GaussianMixture`` (their home is tests/test_toy.py)."""

import torch

from oldschool import toy
from oldschool.sde import VPSDE

MIXTURE = toy.example_mixture()


def test_mixture_moments_conditional_and_tilt():
    gen = torch.Generator().manual_seed(5)
    mean, cov = MIXTURE.moments()
    x = MIXTURE.sample(200_000, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(mean, x.mean(0), rtol=0, atol=5e-3)
    torch.testing.assert_close(cov, torch.cov(x.T), rtol=0, atol=5e-3)
    # p(c | x) over all classes sums to one
    logs = torch.stack([MIXTURE.class_log_posterior(x[:100], [k]) for k in range(4)])
    torch.testing.assert_close(logs.exp().sum(0), torch.ones(100, dtype=torch.float64))
    # w = 0 tilt is p itself; w = 1 tilt is p(x | c) (Bayes): its mean is the class mean
    tilted = MIXTURE.sample_tilted(20000, [2], 1.0, generator=gen)
    torch.testing.assert_close(tilted.mean(0), MIXTURE.means[2], rtol=0, atol=0.02)
    # at scale 1, CFG's score is the conditional score exactly, at every t
    sde = VPSDE()
    t = torch.full((100,), 0.4, dtype=torch.float64)
    guided = MIXTURE.guided_score_fn(sde, [2], 1.0)(x[:100], t)
    torch.testing.assert_close(guided, MIXTURE.conditional([2]).score(x[:100], t, sde))
