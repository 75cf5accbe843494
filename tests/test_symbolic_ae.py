import math

import sympy as sp
import torch

from oldschool import gaussians, symbolic


def test_gaussian_nll_is_squared_error_plus_constant():
    expr, (x, x_hat, sigma) = symbolic.gaussian_nll_1d()
    assert (
        sp.simplify(
            expr
            - ((x - x_hat) ** 2 / (2 * sigma**2) + sp.log(sigma * sp.sqrt(2 * sp.pi)))
        )
        == 0
    )
    # and it agrees with the code on numbers
    value = float(expr.subs({x: 0.3, x_hat: -0.2, sigma: 0.7}))
    ours = gaussians.gaussian_nll(
        torch.tensor([[0.3]]), torch.tensor([[-0.2]]), 2 * math.log(0.7)
    )
    assert math.isclose(value, ours.item(), rel_tol=1e-6)


def test_nd_nll_is_a_sum_of_1d_terms():
    expr, (xs, x_hats, sigma) = symbolic.gaussian_nll_nd(3)
    one, (x, x_hat, s) = symbolic.gaussian_nll_1d()
    total = sum(one.subs({x: a, x_hat: b, s: sigma}) for a, b in zip(xs, x_hats))
    assert sp.simplify(expr - total) == 0


def test_reparameterized_gradient_of_second_moment():
    grad_mu, grad_sigma, (mu, sigma) = symbolic.reparameterized_gradient_1d()
    # E[z^2] = mu^2 + sigma^2 for z ~ N(mu, sigma^2)
    assert sp.simplify(grad_mu - sp.diff(mu**2 + sigma**2, mu)) == 0
    assert sp.simplify(grad_sigma - sp.diff(mu**2 + sigma**2, sigma)) == 0
