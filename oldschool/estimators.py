"""Two Monte Carlo estimators of a gradient through sampling, and their variances.

Chapter 1.

For z ~ q = N(mu, sigma^2 I) and a function f, the gradient g = d/dmu_1 E_q[f(z)] can be
estimated per sample in two unbiased ways:

* reparameterized (notes eq. (6); Kingma & Welling 2014): z = mu + sigma * eps, and
  g_hat = d f(mu + sigma * eps) / d mu_1, which autograd computes;
* score function / REINFORCE (Williams 1992; Mohamed et al. 2020, sec. 4):
  g_hat = (f(z) - b) * d/dmu_1 log q(z) = (f(z) - b) (z_1 - mu_1) / sigma^2, with a
  constant baseline b (b = 0 is the plain estimator; any constant keeps it unbiased,
  since E_q[d log q] = 0, and b = E_q[f] is the usual choice).

``exact_gradient_and_variances`` gives, for a 1-D f, the exact gradient and both
estimators' exact per-sample variances by quadrature, so the Monte Carlo numbers the
chapter prints can be checked. ``quadratic_variances`` gives them in closed form for
f(z) = ||z - c||^2 in d dimensions, where the score-function variance grows linearly
in d and the reparameterized one does not depend on d.
"""

import math

import torch
from scipy import integrate

from . import checks


def score_function_gradient(f, z, mu, sigma, baseline=0.0):
    """Per-sample REINFORCE estimates of d/dmu_1 E[f(z)], z ~ N(mu, sigma^2 I): (n,).

    z: samples (n,) for a 1-D q or (n, d); f maps them to (n,).
    baseline: the constant b.
    """
    checks.number(sigma, "sigma", low=0, low_open=True)
    z1 = z if z.dim() == 1 else z[:, 0]  # the coordinate we differentiate against
    mu1 = mu if isinstance(mu, (int, float)) else mu[..., 0]
    return (f(z) - baseline) * (z1 - mu1) / sigma**2  # (f - b) * d log q / d mu_1


def _expect(h, mu, sigma):
    """E[h(z)], z ~ N(mu, sigma^2), by quadrature over eps in [-12, 12] (scipy)."""
    density = lambda e: math.exp(-e * e / 2) / math.sqrt(2 * math.pi)
    return integrate.quad(lambda e: h(mu + sigma * e) * density(e), -12, 12, limit=200)[
        0
    ]


def exact_gradient_and_variances(f, df, mu, sigma, baseline=0.0):
    """(gradient, var reparameterized, var score function) for a 1-D f, by quadrature.

    f, df: the function and its derivative, on floats. gradient = E[f'(z)];
    var reparameterized = Var[f'(z)];
    var score function = Var[(f(z) - b)(z - mu)/sigma^2].
    """
    gradient = _expect(df, mu, sigma)
    var_reparam = _expect(lambda z: df(z) ** 2, mu, sigma) - gradient**2
    second = _expect(
        lambda z: ((f(z) - baseline) * (z - mu) / sigma**2) ** 2, mu, sigma
    )
    return gradient, var_reparam, second - gradient**2


def quadratic_variances(d, a, sigma, baseline=None):
    """Exact per-sample variances for f(z) = ||z - c||^2, z ~ N(mu, sigma^2 I_d).

    With mu - c = a 1, returns (var reparameterized, var score function) of the
    estimates of d/dmu_1 E[f] = 2a.
    baseline: the constant b, or None for b = E[f] = d (a^2 + sigma^2).
    With u_i = a + sigma eps_i, f = u_1^2 + R, R = sum_{i>1} u_i^2 independent of eps_1:
        E[g^2] sigma^2 = E[u_1^4 eps^2] + 2 E[u_1^2 eps^2] (E R - b)
                         + Var R + (E R - b)^2,
    E[u^4 eps^2] = a^4 + 18 a^2 sigma^2 + 15 sigma^4, E[u^2 eps^2] = a^2 + 3 sigma^2,
    E R = (d - 1)(a^2 + sigma^2), Var R = (d - 1)(4 a^2 sigma^2 + 2 sigma^4).
    With b = E[f] this is 8 a^2 + 10 sigma^2 + (d - 1)(4 a^2 + 2 sigma^2): linear in d.
    The reparameterized estimate 2 (z_1 - c_1) has variance 4 sigma^2 for every d.
    """
    checks.number(d, "d", low=1, integer=True)
    checks.number(sigma, "sigma", low=0, low_open=True)
    s2 = sigma**2
    if baseline is None:
        baseline = d * (a**2 + s2)
    mean_r, var_r = (d - 1) * (a**2 + s2), (d - 1) * (4 * a**2 * s2 + 2 * s2**2)
    u4e2, u2e2 = a**4 + 18 * a**2 * s2 + 15 * s2**2, a**2 + 3 * s2
    second = (
        u4e2 + 2 * u2e2 * (mean_r - baseline) + var_r + (mean_r - baseline) ** 2
    ) / s2
    return 4 * s2, second - (2 * a) ** 2


def quadratic_estimates(d, a, sigma, n, baseline=None, generator=None):
    """Monte Carlo per-sample estimates (reparameterized, score function): (n,) each.

    In float64, in the setting of ``quadratic_variances``: mu = 0, c = -a,
    f(z) = ||z - c||^2, gradient 2a.
    baseline: a constant, or None for the mean of f over a second, independent batch.
    """
    mu = torch.zeros(
        n, d, dtype=torch.float64, requires_grad=True
    )  # one copy per sample
    c = torch.full((d,), -a, dtype=torch.float64)
    f = lambda z: (z - c).pow(2).sum(-1)  # (n,)
    eps = torch.randn(n, d, generator=generator, dtype=torch.float64)
    z = mu + sigma * eps  # eq. (6), (n, d)
    (per_sample,) = torch.autograd.grad(
        f(z).sum(), mu
    )  # row s: the gradient of sample s
    if baseline is None:
        spare = torch.randn(n, d, generator=generator, dtype=torch.float64)
        baseline = f(sigma * spare).mean().item()
    reinforce = score_function_gradient(f, z.detach(), mu.detach(), sigma, baseline)
    return per_sample[:, 0], reinforce
