"""A sample of chapters 1-3's checks, shown failing on deliberately broken input.

Each test runs the same comparison a chapter cell asserts (see book/checks.md), once on the
correct input, where it passes, and once on input with one thing broken (a dropped factor,
a flipped sign, an untrained model), where it must fail. A check that passes both ways would
not be a check.
"""

import math

import sympy as sp
import torch

from oldschool import (
    autoencoders,
    data,
    estimators,
    seeds,
    symbolic,
)


def _variance_se(samples):
    centered = samples - samples.mean()
    return math.sqrt(
        (centered.pow(4).mean() - centered.pow(2).mean() ** 2).item() / len(samples)
    )


def _mc_matches(samples, mean, variance):
    """ch1 (ch1-variance, ch1-dimension): Monte Carlo mean and variance within 4 standard errors."""
    n = len(samples)
    return abs(samples.mean().item() - mean) < 4 * samples.std().item() / math.sqrt(
        n
    ) and abs(samples.var().item() - variance) < 4 * _variance_se(samples)


# ch1 -------------------------------------------------------------------------------------


def test_ch1_score_function_check_fails_with_a_flipped_sign():
    a, sigma, d, n = -1.3, 0.5, 4, 20_000
    g = torch.Generator().manual_seed(0)
    _, reinforce = estimators.quadratic_estimates(d, a, sigma, n, 0.0, generator=g)
    exact_var = estimators.quadratic_variances(d, a, sigma, 0.0)[1]
    assert _mc_matches(reinforce, 2 * a, exact_var)
    assert not _mc_matches(-reinforce, 2 * a, exact_var)  # score (mu - z) / sigma^2


def test_ch1_dimension_check_fails_with_a_dropped_term():
    """Drop the (d - 1) Var R term of the closed form: Monte Carlo disagrees at d = 16."""
    a, sigma, d, n = -1.3, 0.5, 16, 20_000
    _, score_b = estimators.quadratic_estimates(
        d, a, sigma, n, generator=torch.Generator().manual_seed(1)
    )
    right = estimators.quadratic_variances(d, a, sigma)[1]
    wrong = right - (d - 1) * (4 * a**2 * sigma**2 + 2 * sigma**4) / sigma**2
    assert _mc_matches(score_b, 2 * a, right)
    assert not _mc_matches(score_b, 2 * a, wrong)


def test_ch1_reparameterized_check_fails_with_a_missing_half_in_the_std():
    """A sample with std = exp(logvar) instead of exp(logvar / 2) gives a biased d/dsigma."""
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


def test_ch1_training_check_fails_on_an_untrained_model():
    images = data.digits()
    baseline = (images - images.mean(0)).pow(2).flatten(1).sum(1).mean().item()
    torch.manual_seed(0)
    untrained = autoencoders.AE(tuple(images.shape[1:]), latent_dim=2, hidden=64)
    with torch.no_grad():
        mse = (images - untrained(images)).pow(2).flatten(1).sum(1).mean().item()
    assert (
        not mse < 0.5 * baseline
    )  # the chapter asserts every trained seed passes this


def test_ch1_shrink_claim_fails_when_sigma_did_not_move():
    start = [math.log(1.0), math.log(1.01), math.log(0.99)]
    assert seeds.compare(
        start, [math.log(0.004), math.log(0.005), math.log(0.003)]
    ).holds
    assert not seeds.compare(
        start, [math.log(1.0), math.log(0.98), math.log(1.02)]
    ).holds


# ch2 -------------------------------------------------------------------------------------


def test_ch2_eq9_check_fails_with_a_dropped_half():
    kl_1d, (mu_q, sigma_q, mu_p, sigma_p) = symbolic.kl_gaussians_1d()
    eq9 = kl_1d.subs({mu_p: 0, sigma_p: 1})
    right = (mu_q**2 + sigma_q**2 - sp.log(sigma_q**2) - 1) / 2
    wrong = mu_q**2 + sigma_q**2 - sp.log(sigma_q**2) - 1  # the notes' eq. (10) bracket
    assert sp.simplify(sp.expand_log(eq9 - right, force=True)) == 0
    assert sp.simplify(sp.expand_log(eq9 - wrong, force=True)) != 0


def test_ch2_bound_check_fails_with_a_dropped_factor(tiny_vae):
    """ELBO <= log p(x) (quadrature) holds; with the 1/(2 sigma^2) dropped (eq. (10)'s way) it breaks."""
    model, x = tiny_vae
    sigma = 0.2
    log_px = autoencoders.grid_log_likelihood(model, x, sigma, half_width=7.0, n=301)
    g = torch.Generator().manual_seed(2)
    elbo = autoencoders.elbo_per_image(
        model, x, sigma=sigma, n_samples=2000, generator=g
    )
    with torch.no_grad():
        q = model.encode(x)
        squared = torch.stack(
            [
                (x - model.decode(q.sample(generator=g))).pow(2).flatten(1).sum(1)
                for _ in range(2000)
            ]
        ).mean(0)  # E_q ||x - x_hat||^2, (B,)
    dropped = (
        elbo + squared / (2 * sigma**2) - squared
    )  # the squared error not divided by 2 sigma^2
    assert torch.all(elbo < log_px)
    assert not torch.all(dropped < log_px)


def test_ch2_amortization_claim_fails_without_fitting(tiny_vae):
    model, x = tiny_vae
    g = torch.Generator().manual_seed(3)
    fitted = autoencoders.fit_posterior(
        model, x, sigma=0.5, steps=300, n_samples=16, generator=g
    )
    elbo_enc = autoencoders.elbo_per_image(
        model, x, sigma=0.5, n_samples=4000, generator=g
    )
    elbo_fit = autoencoders.elbo_per_image(
        model, x, sigma=0.5, n_samples=4000, generator=g, posterior=fitted
    )
    assert seeds.compare(elbo_fit.tolist(), elbo_enc.tolist()).holds
    unfitted = autoencoders.fit_posterior(
        model, x, sigma=0.5, steps=0, generator=g
    )  # = the encoder
    elbo_unfit = autoencoders.elbo_per_image(
        model, x, sigma=0.5, n_samples=4000, generator=g, posterior=unfitted
    )
    assert not seeds.compare(elbo_unfit.tolist(), elbo_enc.tolist()).holds


# ch3 -------------------------------------------------------------------------------------


def test_ch3_forward_variance_check_fails_without_the_square_root():
    z = 5.0 * torch.randn(200_000, generator=torch.Generator().manual_seed(5))
    eps = torch.randn(200_000, generator=torch.Generator().manual_seed(6))
    a_T = 0.0047
    x = z.double()
    for coefficient, ok in ((math.sqrt(a_T), True), (a_T, False)):
        x = (coefficient * z + math.sqrt(1 - a_T) * eps).double()
        se = math.sqrt(((x - x.mean()).pow(4).mean() - x.var() ** 2).item() / x.numel())
        assert (abs(x.var().item() - (a_T * z.var().item() + 1 - a_T)) < 4 * se) == ok


def test_ch3_channel_claim_fails_on_one_noisy_seed_set():
    """The earlier edition's 4 vs 16 channels result: +0.53, +1.34, -0.36 dB is not a finding."""
    gains = [0.53, 1.34, -0.36]
    assert not seeds.compare(gains, [0.0, 0.0, 0.0]).holds
    assert seeds.compare([0.9, 1.1, 1.0], [0.0, 0.0, 0.0]).holds
