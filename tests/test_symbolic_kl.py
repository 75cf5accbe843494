"""oldschool.symbolic, chapter 2: the KL of Gaussians and the VAE loss, derived by sympy."""

import math

import pytest
import sympy as sp
import torch

from oldschool import gaussians, symbolic


def test_kl_gaussians_1d_is_the_textbook_closed_form():
    kl, (mu_q, sigma_q, mu_p, sigma_p) = symbolic.kl_gaussians_1d()
    textbook = (
        sp.log(sigma_p / sigma_q)
        + (sigma_q**2 + (mu_q - mu_p) ** 2) / (2 * sigma_p**2)
        - sp.Rational(1, 2)
    )
    assert sp.simplify(sp.expand_log(kl - textbook, force=True)) == 0
    # zero exactly when the two Gaussians are equal, and not otherwise
    assert sp.simplify(kl.subs({mu_p: mu_q, sigma_p: sigma_q})) == 0
    assert kl.subs({mu_q: 1, mu_p: 0, sigma_q: 1, sigma_p: 1}) == sp.Rational(1, 2)


def test_kl_gaussians_1d_agrees_with_oldschool_numerically():
    kl, symbols = symbolic.kl_gaussians_1d()
    f = sp.lambdify(symbols, kl, "math")
    g = torch.Generator().manual_seed(0)
    mean1, mean2 = torch.randn(2, 6, 1, generator=g, dtype=torch.float64)
    logvar1, logvar2 = torch.randn(2, 6, 1, generator=g, dtype=torch.float64)
    ours = gaussians.kl_diagonal(mean1, logvar1, mean2, logvar2)
    from_sympy = [
        f(m1, math.exp(lv1 / 2), m2, math.exp(lv2 / 2))
        for m1, lv1, m2, lv2 in zip(
            mean1[:, 0].tolist(),
            logvar1[:, 0].tolist(),
            mean2[:, 0].tolist(),
            logvar2[:, 0].tolist(),
        )
    ]
    assert torch.allclose(ours, torch.tensor(from_sympy, dtype=torch.float64))


@pytest.mark.parametrize("dim", [1, 3])
def test_kl_diagonal_nd_is_eq9_summed_over_coordinates(dim):
    kl, (mus, sigmas) = symbolic.kl_diagonal_nd(dim)
    eq9 = sp.Rational(1, 2) * sum(
        mu**2 + s**2 - sp.log(s**2) - 1 for mu, s in zip(mus, sigmas)
    )
    assert sp.simplify(sp.expand_log(kl - eq9, force=True)) == 0
    assert kl.free_symbols == set(mus) | set(
        sigmas
    )  # the integration variables are gone


def test_kl_diagonal_nd_is_the_sum_of_one_dimensional_kls():
    kl_1d, (mu_q, sigma_q, mu_p, sigma_p) = symbolic.kl_gaussians_1d()
    kl, (mus, sigmas) = symbolic.kl_diagonal_nd(2)
    total = sum(
        kl_1d.subs({mu_q: mu, sigma_q: s, mu_p: 0, sigma_p: 1})
        for mu, s in zip(mus, sigmas)
    )
    assert sp.simplify(sp.expand_log(kl - total, force=True)) == 0


def test_negative_elbo_has_the_constants_eq10_drops():
    loss, (xs, x_hats, sigma, mus, sigmas) = symbolic.negative_elbo_gaussian(2, 2)
    squared_error = sum((x - xh) ** 2 for x, xh in zip(xs, x_hats))
    bracket = sum(
        mu**2 + s**2 - sp.log(s**2) - 1 for mu, s in zip(mus, sigmas)
    )  # eq. (9) without its 1/2
    const = 2 * sp.log(sigma) + sp.log(2 * sp.pi)
    assert (
        sp.simplify(
            sp.expand_log(
                2 * sigma**2 * (loss - const) - (squared_error + sigma**2 * bracket),
                force=True,
            )
        )
        == 0
    )
    eq10 = squared_error + bracket
    assert sp.solve(
        sp.expand_log(eq10 - 2 * sigma**2 * (loss - const), force=True), sigma
    ) == [1]


def test_kl_diagonal_nd_rejects_bad_dim():
    with pytest.raises(ValueError, match=r"dim must lie in \[1, inf\], got 0"):
        symbolic.kl_diagonal_nd(0)
