"""Derivations done by sympy: each function returns the expression a chapter asserts on.

Nothing here types in a known answer: the expressions come out of sympy's own
integration, differentiation and simplification, so a notebook cell can compare
them with the closed forms the notes state (and with the code in ``oldschool``).
"""

import sympy as sp

from . import checks


def gaussian_nll_1d():
    """-log N(x | x_hat, sigma^2) for one coordinate, from the density (notes eq. (4)).

    Returns (expr, (x, x_hat, sigma)). Chapter 1 shows it equals
    (x - x_hat)^2 / (2 sigma^2) + log(sigma) + log(2 pi) / 2.
    """
    x, x_hat = sp.symbols("x x_hat", real=True)
    sigma = sp.symbols("sigma", positive=True)
    density = sp.exp(-((x - x_hat) ** 2) / (2 * sigma**2)) / sp.sqrt(
        2 * sp.pi * sigma**2
    )
    return sp.expand_log(-sp.log(density), force=True), (x, x_hat, sigma)


def gaussian_nll_nd(dim):
    """-log N(x | x_hat, sigma^2 I), eq. (5), in ``dim`` coordinates: a sum of 1-D terms

    Returns (expr, (xs, x_hats, sigma)).
    """
    xs = sp.symbols(f"x1:{dim + 1}", real=True)
    x_hats = sp.symbols(f"xhat1:{dim + 1}", real=True)
    sigma = sp.symbols("sigma", positive=True)
    density = sp.Integer(1)
    for x, x_hat in zip(xs, x_hats):  # independent coordinates: the density factorizes
        density *= sp.exp(-((x - x_hat) ** 2) / (2 * sigma**2)) / sp.sqrt(
            2 * sp.pi * sigma**2
        )
    return sp.expand(sp.expand_log(-sp.log(density), force=True)), (xs, x_hats, sigma)


def reparameterized_gradient_1d():
    """d/dmu and d/dsigma of E_{eps ~ N(0,1)}[f(mu + sigma eps)], f(z) = z^2, by sympy.

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


# ------------------------------------------------------- chapter 4: diffusion as a VAE


def prediction_maps():
    """eps-, x0-, v- and score-prediction as linear maps of one another (notes sec. 3).

    With x_t = alpha x0 + sigma eps (the fixed encoder q(x_t | x0)),
    v = alpha eps - sigma x0 (Salimans & Ho 2022) and score = -eps / sigma (the score
    of q(x_t | x0), Vincent 2011), a network that outputs any one of the four, together
    with x_t, determines the other three. sympy solves the 2x2 linear system for
    (x0, eps) once per choice of output.

    Returns (maps, (x_t, output, alpha, sigma)) where maps[p][q] is the q-prediction
    implied by an ``output`` of parameterization p. The v maps carry alpha^2 + sigma^2
    in their denominators, which is 1 for a variance-preserving schedule.
    """
    x_t, out = sp.symbols("x_t output", real=True)
    alpha, sigma = sp.symbols("alpha sigma", positive=True)
    x0, eps = sp.symbols("x_0 epsilon", real=True)
    definitions = {
        "eps": eps,
        "x0": x0,
        "v": alpha * eps - sigma * x0,
        "score": -eps / sigma,
    }
    maps = {}
    for p, p_of in definitions.items():
        solution = sp.solve(
            [sp.Eq(x_t, alpha * x0 + sigma * eps), sp.Eq(out, p_of)],
            [x0, eps],
            dict=True,
        )[0]
        maps[p] = {
            q: sp.simplify(q_of.subs(solution)) for q, q_of in definitions.items()
        }
    return maps, (x_t, out, alpha, sigma)


def loss_weights_vs_snr():
    """How the squared error of each parameterization relates to the eps squared error.

    If the implied noise prediction is off by delta, the q-prediction is off by
    (d q / d eps_hat) delta (the maps of ``prediction_maps`` are linear), so
    MSE_q = w_q MSE_eps with w_q = (d q / d eps_hat)^2. Written with
    SNR = alpha^2 / sigma^2 for a variance-preserving schedule
    (alpha^2 = SNR / (1 + SNR), sigma^2 = 1 / (1 + SNR)).
    Kingma et al. 2021 (VDM), Salimans & Ho 2022.

    Returns (w_alpha_sigma, w_snr, (alpha, sigma, snr)): dicts p -> MSE_p / MSE_eps, in
    terms of (alpha, sigma) for any schedule and in terms of the SNR for a VP schedule.
    """
    maps, (x_t, out, alpha, sigma) = prediction_maps()
    snr = sp.symbols("SNR", positive=True)
    w_alpha_sigma = {q: sp.simplify(sp.diff(maps["eps"][q], out) ** 2) for q in maps}
    vp = {alpha: sp.sqrt(snr / (1 + snr)), sigma: sp.sqrt(1 / (1 + snr))}
    w_snr = {q: sp.simplify(w.subs(vp)) for q, w in w_alpha_sigma.items()}
    return w_alpha_sigma, w_snr, (alpha, sigma, snr)


def _gaussian_expectation(expr, x, mean, var):
    """E[expr] for x ~ N(mean, var), when expr is a polynomial of degree <= 2 in x."""
    poly = sp.Poly(sp.expand(expr), x)
    if poly.degree() > 2:
        raise ValueError("only polynomials of degree <= 2 in x are handled")
    moments = {0: 1, 1: mean, 2: mean**2 + var}
    return sum(c * moments[k] for (k,), c in poly.terms())


def diffusion_step_kl():
    """One term of the diffusion ELBO: KL(q(x_s | x_t, x0) || p(x_s | x_t)), s < t, 1-D.

    The forward transition from s to t is q(x_t | x_s) = N(alpha_ts x_s, sigma_ts^2)
    with alpha_ts = alpha_t / alpha_s and sigma_ts^2 = sigma_t^2 - alpha_ts^2 sigma_s^2.
    The posterior q(x_s | x_t, x0) ~ q(x_s | x0) q(x_t | x_s) is found by completing the
    square in x_s; the decoder p(x_s | x_t) is the same Gaussian with x0 replaced by the
    network's x0_hat (Ho et al. 2020, eq. (7); Kingma et al. 2021, eq. (13)). The KL is
    then an expectation of a quadratic, taken with the Gaussian's first two moments.

    Returns (posterior_mean, posterior_var, kl, symbols) with symbols =
    (x_s, x_t, x0, x0_hat, alpha_s, sigma_s, alpha_t, sigma_t).
    Chapter 4 shows kl = (SNR_s - SNR_t) / 2 * (x0 - x0_hat)^2.
    """
    x_s, x_t, x0, x0_hat = sp.symbols("x_s x_t x_0 xhat_0", real=True)
    alpha_s, sigma_s, alpha_t, sigma_t = sp.symbols(
        "alpha_s sigma_s alpha_t sigma_t", positive=True
    )
    alpha_ts = alpha_t / alpha_s
    sigma_ts2 = sigma_t**2 - alpha_ts**2 * sigma_s**2  # positive when SNR_t < SNR_s
    log_joint = -((x_s - alpha_s * x0) ** 2) / (2 * sigma_s**2) - (
        x_t - alpha_ts * x_s
    ) ** 2 / (2 * sigma_ts2)
    quadratic = sp.Poly(sp.expand(log_joint), x_s)  # a x_s^2 + b x_s + c
    a, b = quadratic.coeff_monomial(x_s**2), quadratic.coeff_monomial(x_s)
    posterior_var = sp.simplify(-1 / (2 * a))
    posterior_mean = sp.simplify(b * posterior_var)

    decoder_mean = posterior_mean.subs(x0, x0_hat)
    log_q = -((x_s - posterior_mean) ** 2) / (2 * posterior_var)  # equal variances: the
    log_p = -((x_s - decoder_mean) ** 2) / (2 * posterior_var)  # normalizers cancel
    kl = sp.factor(
        sp.simplify(
            _gaussian_expectation(log_q - log_p, x_s, posterior_mean, posterior_var)
        )
    )
    symbols = (x_s, x_t, x0, x0_hat, alpha_s, sigma_s, alpha_t, sigma_t)
    return posterior_mean, posterior_var, kl, symbols


# --------------------------------------------------- chapter 2: the VAE and the ELBO


def _normal_density(z, mean, std):
    return sp.exp(-((z - mean) ** 2) / (2 * std**2)) / sp.sqrt(2 * sp.pi * std**2)


def _expectation_under(expr, zs, densities):
    """int expr * prod_j density_j dz over R^n, one term and one coordinate at a time.

    ``expr`` is expanded into a sum first; a term that does not contain z_j is
    multiplied by int density_j dz_j, which sympy integrates (to 1) once per coordinate.
    """
    masses = [
        sp.integrate(density, (z, -sp.oo, sp.oo)) for z, density in zip(zs, densities)
    ]
    total = sp.Integer(0)
    for term in sp.Add.make_args(sp.expand(expr)):
        for z, density, mass in zip(zs, densities, masses):
            term = (
                sp.integrate(term * density, (z, -sp.oo, sp.oo))
                if term.has(z)
                else term * mass
            )
        total += term
    return total


def kl_gaussians_1d():
    """KL(N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2)) = int q log(q / p) dz, by sympy.

    sympy takes the logarithm of the two densities, expands it (a quadratic in z) and
    integrates it against q over the real line; no part of the known answer is typed in.
    Notes eq. (9) is the case mu_p = 0, sigma_p = 1; the diffusion chapters use the
    general one. Returns (kl, (mu_q, sigma_q, mu_p, sigma_p)).
    """
    z = sp.symbols("z", real=True)
    mu_q, mu_p = sp.symbols("mu_q mu_p", real=True)
    sigma_q, sigma_p = sp.symbols("sigma_q sigma_p", positive=True)
    q, p = _normal_density(z, mu_q, sigma_q), _normal_density(z, mu_p, sigma_p)
    log_ratio = sp.expand_log(sp.log(q) - sp.log(p), force=True)
    return sp.simplify(_expectation_under(log_ratio, [z], [q])), (
        mu_q,
        sigma_q,
        mu_p,
        sigma_p,
    )


def kl_diagonal_nd(dim):
    """Notes eq. (9): KL(N(mu, diag(sigma^2)) || N(0, I)) in ``dim`` coordinates.

    Both densities are products over the coordinates; sympy takes the log of the
    products, expands it, and integrates against q over all of R^dim (an iterated
    integral, term by term). That the result is a sum of one-coordinate KLs is then
    something to check, not assume. Returns (kl, (mus, sigmas)) with the tuples of
    symbols mu_1.. and sigma_1.. (the encoder's).
    """
    checks.number(dim, "dim", low=1, integer=True)
    zs = sp.symbols(f"z_1:{dim + 1}", real=True)
    mus = sp.symbols(f"mu_1:{dim + 1}", real=True)
    sigmas = sp.symbols(f"sigma_1:{dim + 1}", positive=True)
    q_factors = [_normal_density(z, mu, s) for z, mu, s in zip(zs, mus, sigmas)]
    p_factors = [_normal_density(z, 0, 1) for z in zs]
    log_ratio = sp.expand_log(
        sp.log(sp.Mul(*q_factors)) - sp.log(sp.Mul(*p_factors)), force=True
    )
    return sp.expand(sp.simplify(_expectation_under(log_ratio, zs, q_factors))), (
        mus,
        sigmas,
    )


def negative_elbo_gaussian(data_dim, latent_dim):
    """The loss of notes eq. (8) for one sample z, with all its constants, by sympy.

    -log N(x; x_hat, sigma^2 I) (the decoder of eq. (4), ``gaussian_nll_nd``) plus
    KL(N(mu, diag(sigma_i^2)) || N(0, I)) (the encoder of eq. (3) against the prior,
    ``kl_diagonal_nd``). Chapter 2 compares it with eq. (10), which drops 1/(2 sigma^2)
    and 1/2. Returns (loss, (xs, x_hats, sigma, mus, sigmas)).
    """
    nll, (xs, x_hats, sigma) = gaussian_nll_nd(data_dim)
    kl, (mus, sigmas) = kl_diagonal_nd(latent_dim)
    return nll + kl, (xs, x_hats, sigma, mus, sigmas)


# ------------------------------------------------------------- chapters 5 and 6: SDEs


def _solve_moment_odes(beta, g_squared, t):
    """Solve dm/dt = -beta m / 2, m(0) = 1 and dv/dt = -beta v + g^2, v(0) = 0 (dsolve).

    For dx = -1/2 beta(t) x dt + g(t) dW started at a point x0, E[x_t] = m(t) x0 and
    Var[x_t] = v(t) (Ito: d E[x] = E[f] dt, d Var = 2 Cov(x, f) dt + g^2 dt).
    Returns (m, v).
    """
    m, v = sp.Function("m"), sp.Function("v")
    alpha = sp.dsolve(sp.Eq(m(t).diff(t), -beta * m(t) / 2), m(t), ics={m(0): 1}).rhs
    variance = sp.dsolve(
        sp.Eq(v(t).diff(t), -beta * v(t) + g_squared), v(t), ics={v(0): 0}
    ).rhs
    return sp.simplify(alpha), sp.simplify(variance)


def vp_marginal_moments():
    """VP SDE, notes eq. (15): m(t) and s(t)^2 by dsolve.

    beta(t) = beta_min + t (beta_max - beta_min).

    Returns (m, variance, (t, beta_min, beta_max)); chapter 5 checks
    m = exp(-1/2 int beta) and variance = 1 - m^2 against ``sde.VPSDE``.
    """
    t, beta_min, beta_max = sp.symbols("t beta_min beta_max", positive=True)
    beta = beta_min + t * (beta_max - beta_min)
    m, variance = _solve_moment_odes(beta, beta, t)  # g^2 = beta
    return m, variance, (t, beta_min, beta_max)


def ve_marginal_moments():
    """VE SDE, notes eq. (16): m(t) and s(t)^2 by dsolve.

    sigma(t) = sigma_min (sigma_max / sigma_min)^t.

    Returns (m, variance, (t, sigma_min, sigma_max)); no drift, g^2 = d sigma^2 / dt, so
    m = 1 and variance = sigma(t)^2 - sigma_min^2 (the data point is not blurred at
    t = 0).
    """
    t, sigma_min, sigma_max = sp.symbols("t sigma_min sigma_max", positive=True)
    sigma = sigma_min * (sigma_max / sigma_min) ** t
    m, variance = _solve_moment_odes(sp.Integer(0), sp.diff(sigma**2, t), t)
    if isinstance(
        variance, sp.Piecewise
    ):  # dsolve sets the case sigma_max = sigma_min apart
        variance = variance.args[0].expr
    return m, variance, (t, sigma_min, sigma_max)


def subvp_marginal_moments():
    """Sub-VP SDE (Song et al. 2021, eq. (29)): m(t) and s(t)^2 by dsolve.

    g^2 = beta (1 - exp(-2 B)), B(t) = int_0^t beta.

    In the variable B the moment ODEs have constant coefficients
    (dv/dB = -v + 1 - exp(-2B)), which dsolve handles at once; B(t) is put back
    afterwards. Returns (m, variance, (t, beta_min, beta_max)); the variance comes out
    as (1 - m^2)^2.
    """
    t, beta_min, beta_max = sp.symbols("t beta_min beta_max", positive=True)
    b = sp.symbols("B", positive=True)
    m, variance = _solve_moment_odes(
        sp.Integer(1), 1 - sp.exp(-2 * b), b
    )  # beta = 1 in the variable B
    integral = sp.integrate(beta_min + t * (beta_max - beta_min), (t, 0, t))
    return (
        m.subs(b, integral),
        sp.factor(variance).subs(b, integral),
        (t, beta_min, beta_max),
    )


def fokker_planck_residuals(score_weight=sp.Rational(1, 2)):
    """Fokker-Planck for a 1-D linear SDE and a Gaussian p_t.

    The SDE: dx = -1/2 beta(t) x dt + g(t) dW.

    p_t = N(x | mu(t), v(t)) with mu' = -beta mu / 2 and v' = -beta v + g^2 (the moment
    ODEs), beta and g arbitrary functions of t. Returns
    (sde_residual, ode_residual, (x, t)):

        sde_residual = dp/dt + d/dx(f p) - 1/2 g^2 d^2p/dx^2     (the SDE, eq. (14))
        ode_residual = dp/dt + d/dx[(f - w g^2 d log p/dx) p]    (the ODE, eq. (18))

    both divided by p and simplified. With the score weight w = 1/2 of eq. (18) each is
    0: the Gaussian with those moments solves both equations, and the ODE carries the
    SDE's marginals. Any other w (e.g. 1, the reverse SDE's drift used without its
    noise) does not.
    """
    x, t = sp.symbols("x t", real=True)
    beta, g = sp.Function("beta")(t), sp.Function("g")(t)
    mu, v = sp.Function("mu")(t), sp.Function("v")(t)
    p = sp.exp(-((x - mu) ** 2) / (2 * v)) / sp.sqrt(2 * sp.pi * v)
    f = -beta * x / 2
    moment_odes = {mu.diff(t): -beta * mu / 2, v.diff(t): -beta * v + g**2}
    dp_dt = p.diff(t).subs(moment_odes)
    sde_residual = dp_dt + (f * p).diff(x) - g**2 / 2 * p.diff(x, 2)
    velocity = f - score_weight * g**2 * sp.diff(sp.log(p), x)
    ode_residual = dp_dt + (velocity * p).diff(x)
    return sp.simplify(sde_residual / p), sp.simplify(ode_residual / p), (x, t)


def probability_flow_identity():
    """For ANY density p(x, t), the probability-flow identity:

        d/dx[(f - 1/2 g^2 d log p/dx) p] = d/dx(f p) - 1/2 g^2 d^2 p/dx^2.


    The step of Song et al. 2021 (App. D.1) from the Fokker-Planck equation of the SDE
    to the ODE of notes eq. (18): since p d log p/dx = dp/dx, the diffusion term of the
    FP equation is a drift term. Returns (difference, (x, t)); the difference
    simplifies to 0.
    """
    x, t = sp.symbols("x t", real=True)
    p, f = sp.Function("p")(x, t), sp.Function("f")(x, t)
    g = sp.Function("g")(t)
    ode_flux = ((f - g**2 / 2 * sp.diff(sp.log(p), x)) * p).diff(x)
    sde_flux = (f * p).diff(x) - g**2 / 2 * p.diff(x, 2)
    return sp.simplify(ode_flux - sde_flux), (x, t)


def reverse_sde_residual():
    """The reverse-time SDE of notes eq. (17) has the forward marginals, for ANY p.

    In reverse time tau = T - t, eq. (17) reads dx = [-f + g^2 d log p/dx] dtau + g dW,
    whose Fokker-Planck equation is
        -dp/dt = -d/dx[(-f + g^2 d log p/dx) p] + 1/2 g^2 d^2p/dx^2.
    Replace dp/dt by the forward equation's right-hand side,
    -d/dx(f p) + 1/2 g^2 d^2p/dx^2, and the two sides agree (Anderson 1982). Returns
    (residual, (x, t)); it simplifies to 0.
    """
    x, t = sp.symbols("x t", real=True)
    p, f = sp.Function("p")(x, t), sp.Function("f")(x, t)
    g = sp.Function("g")(t)
    dp_dt = -(f * p).diff(x) + g**2 / 2 * p.diff(x, 2)  # forward Fokker-Planck
    reverse_drift = -f + g**2 * sp.diff(
        sp.log(p), x
    )  # eq. (17) with time running backwards
    residual = -dp_dt - (-(reverse_drift * p).diff(x) + g**2 / 2 * p.diff(x, 2))
    return sp.simplify(residual), (x, t)


def velocity_from_score():
    """Chapter 8: the flow-matching velocity of a Gaussian path is the prob.-flow drift.

    For x_t = alpha(t) x0 + sigma(t) eps with score s = grad log p_t, Tweedie's formulas
    give E[eps | x_t] = -sigma s and E[x0 | x_t] = (x_t + sigma^2 s) / alpha, so the
    marginal velocity u = E[alpha' x0 + sigma' eps | x_t] is linear in (x_t, s). With
    the equivalent SDE's f = alpha'/alpha and g^2 = (sigma^2)' - 2 f sigma^2
    (chapter 5), sympy checks u = f x_t - 1/2 g^2 s, eq. (18)'s drift, for arbitrary
    alpha(t), sigma(t), and then gives f and g^2 of the linear path alpha = 1 - t,
    sigma = t (Liu et al. 2023).

    Returns (difference, (f_linear, g2_linear), t); the difference simplifies to 0.
    """
    t = sp.symbols("t", positive=True)
    x, s = sp.symbols("x s", real=True)
    alpha, sigma = sp.Function("alpha")(t), sp.Function("sigma")(t)
    x0_mean = (x + sigma**2 * s) / alpha  # Tweedie
    eps_mean = -sigma * s
    velocity = alpha.diff(t) * x0_mean + sigma.diff(t) * eps_mean
    f = alpha.diff(t) / alpha
    g2 = (sigma**2).diff(t) - 2 * f * sigma**2
    difference = sp.simplify(velocity - (f * x - g2 / 2 * s))
    linear = {alpha: 1 - t, sigma: t}
    f_linear = sp.simplify(f.subs(linear).doit())
    g2_linear = sp.simplify(g2.subs(linear).doit())
    return difference, (f_linear, g2_linear), t
