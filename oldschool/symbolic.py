"""Derivations done by sympy: each function returns the expression a chapter asserts on.

Nothing here types in a known answer: the expressions come out of sympy's own
integration, differentiation and simplification, so a notebook cell can compare
them with the closed forms the notes state (and with the code in ``oldschool``).
"""

import sympy as sp


def gaussian_nll_1d():
    """-log N(x | x_hat, sigma^2) for one coordinate, from the density (notes eq. (4)).

    Returns (expr, (x, x_hat, sigma)). Chapter 1 shows it equals
    (x - x_hat)^2 / (2 sigma^2) + log(sigma) + log(2 pi) / 2.
    """
    x, x_hat = sp.symbols("x x_hat", real=True)
    sigma = sp.symbols("sigma", positive=True)
    density = sp.exp(-((x - x_hat) ** 2) / (2 * sigma**2)) / sp.sqrt(2 * sp.pi * sigma**2)
    return sp.expand_log(-sp.log(density), force=True), (x, x_hat, sigma)


def gaussian_nll_nd(dim):
    """-log N(x | x_hat, sigma^2 I) in ``dim`` coordinates, as a sum of the 1-D terms (eq. (5)).

    Returns (expr, (xs, x_hats, sigma)).
    """
    xs = sp.symbols(f"x1:{dim + 1}", real=True)
    x_hats = sp.symbols(f"xhat1:{dim + 1}", real=True)
    sigma = sp.symbols("sigma", positive=True)
    density = sp.Integer(1)
    for x, x_hat in zip(xs, x_hats):  # independent coordinates: the density factorizes
        density *= sp.exp(-((x - x_hat) ** 2) / (2 * sigma**2)) / sp.sqrt(2 * sp.pi * sigma**2)
    return sp.expand(sp.expand_log(-sp.log(density), force=True)), (xs, x_hats, sigma)


def reparameterized_gradient_1d():
    """d/dmu and d/dsigma of E_{eps ~ N(0,1)}[f(mu + sigma eps)] for f(z) = z^2, by integration.

    Returns (grad_mu, grad_sigma, (mu, sigma)): the exact gradients of
    E[z^2] = mu^2 + sigma^2, obtained by differentiating under the expectation after
    the substitution z = mu + sigma * eps of eq. (6).
    """
    mu = sp.symbols("mu", real=True)
    sigma = sp.symbols("sigma", positive=True)
    eps = sp.symbols("epsilon", real=True)
    normal_pdf = sp.exp(-(eps**2) / 2) / sp.sqrt(2 * sp.pi)
    z = mu + sigma * eps
    grad_mu = sp.integrate(sp.diff(z**2, mu) * normal_pdf, (eps, -sp.oo, sp.oo))
    grad_sigma = sp.integrate(sp.diff(z**2, sigma) * normal_pdf, (eps, -sp.oo, sp.oo))
    return sp.simplify(grad_mu), sp.simplify(grad_sigma), (mu, sigma)
