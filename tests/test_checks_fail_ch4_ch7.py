"""A sample of chapter 4's checks, fed deliberately broken input: each must fail.

Every helper below repeats the condition of one `assert` of a chapter (named by its label,
see book/checks.md) on inputs the test chooses. Each test runs the check once on the right
input, where it must pass, and once on a broken one (a dropped factor, a flipped sign, an
untrained model, a label that leaks), where it must fail. A check that passed on the broken
input would be an illustration, not a check.
"""

import math

import sympy as sp
import torch

from oldschool import data, gaussians, nets, symbolic, toy
from oldschool import sde as sde_lib
from oldschool.sde import append_dims

VP = sde_lib.VPSDE()


# ---- chapter 4 ----------------------------------------------------------------------------


def elbo_term_holds(weight):
    """ch4-elbo: the KL of one denoising step equals weight(SNR_s, SNR_t) * ||x0 - x0_hat||^2."""
    post_mean, post_var, _, (x_s, x_t_, x0_, x0_hat_, a_s, s_s, a_t, s_t) = (
        symbolic.diffusion_step_kl()
    )
    mean_fn = sp.lambdify((x_t_, x0_, a_s, s_s, a_t, s_t), post_mean)
    var_fn = sp.lambdify((a_s, s_s, a_t, s_t), post_var)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(256, 2, generator=g, dtype=torch.float64)
    s_b, t_b = (
        torch.full((256,), 0.2, dtype=torch.float64),
        torch.full((256,), 0.25, dtype=torch.float64),
    )
    coeffs = [
        append_dims(c, 2)
        for c in (VP.alpha(s_b), VP.sigma(s_b), VP.alpha(t_b), VP.sigma(t_b))
    ]
    x_t, _ = VP.perturb(x0, t_b, generator=g)
    x0_hat = x0 + 0.1 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    logvar = var_fn(*coeffs).log().expand_as(x0)
    kl = gaussians.kl_diagonal(
        mean_fn(x_t, x0, *coeffs), logvar, mean_fn(x_t, x0_hat, *coeffs), logvar
    )
    weighted_se = weight(VP.snr(s_b), VP.snr(t_b)) * (x0 - x0_hat).pow(2).sum(1)
    return torch.allclose(kl, weighted_se, rtol=1e-8, atol=1e-12)


def test_ch4_elbo_check_fails_on_a_dropped_half_and_a_flipped_sign():
    assert elbo_term_holds(lambda snr_s, snr_t: 0.5 * (snr_s - snr_t))
    assert not elbo_term_holds(lambda snr_s, snr_t: snr_s - snr_t)  # the 1/2 dropped
    assert not elbo_term_holds(
        lambda snr_s, snr_t: 0.5 * (snr_t - snr_s)
    )  # sign flipped


def prediction_maps_hold(targets):
    """ch4-param: sympy's maps between the four predictions = nets.eps_and_x0 + ``targets``."""
    maps, (x_t_sym, output, alpha, sigma) = symbolic.prediction_maps()
    g = torch.Generator().manual_seed(2)
    t = 0.01 + 0.98 * torch.rand(200, generator=g, dtype=torch.float64)
    a, s = append_dims(VP.alpha(t), 2), append_dims(VP.sigma(t), 2)
    x_t = torch.randn(200, 2, generator=g, dtype=torch.float64)
    out = torch.randn(200, 2, generator=g, dtype=torch.float64)
    for p in maps:
        eps_hat, x0_hat = nets.eps_and_x0(out, x_t, a, s, p)
        implied = targets(x0_hat, eps_hat, a, s)
        for q in maps:
            expected = sp.lambdify((x_t_sym, output, alpha, sigma), maps[p][q])(
                x_t, out, a, s
            )
            if not torch.allclose(implied[q], expected * torch.ones_like(out)):
                return False
    return True


def test_ch4_parameterization_check_fails_on_a_flipped_sign_in_v():
    assert prediction_maps_hold(nets.targets)

    def flipped_v(x0, eps, a, s):
        return {
            **nets.targets(x0, eps, a, s),
            "v": a * eps + s * x0,
        }  # v = a eps - s x0

    assert not prediction_maps_hold(flipped_v)


def loss_weights_hold(eps_weight):
    """ch4-weights: the sympy weight of each loss times ``eps_weight`` is 1 on the VP grid."""
    w_alpha_sigma, w_snr, (alpha, sigma, snr) = symbolic.loss_weights_vs_snr()
    t = torch.linspace(0.001, 1.0, 100, dtype=torch.float64)
    a, s = VP.alpha(t), VP.sigma(t)
    return all(
        torch.allclose(
            sp.lambdify(snr, w_snr[q])(VP.snr(t))
            * torch.ones_like(t)
            * eps_weight(a, s, q),
            torch.ones_like(t),
        )
        for q in w_snr
    )


def test_ch4_weight_check_fails_on_a_dropped_square():
    assert loss_weights_hold(nets.eps_weight)
    assert not loss_weights_hold(lambda a, s, q: nets.eps_weight(a, s, q).sqrt())


def ratios_hold(model):
    """ch4-equivalent: MSE_q / MSE_eps from nets.prediction_errors = the sympy weights."""
    _, w_snr, (_, _, snr) = symbolic.loss_weights_vs_snr()
    x0 = data.toy_2d("moons", 512, generator=torch.Generator().manual_seed(4))
    for t in (0.05, 0.5, 1.0):
        errors = nets.prediction_errors(
            model,
            x0,
            VP,
            torch.full((512,), t),
            "eps",
            generator=torch.Generator().manual_seed(10),
        )
        snr_t = VP.snr(torch.tensor(t, dtype=torch.float64))
        for q in w_snr:  # the four of chapter 4 (prediction_errors also has "velocity")
            w = float(sp.lambdify(snr, w_snr[q])(snr_t))
            if not math.isclose(
                errors[q].item() / errors["eps"].item(), w, rel_tol=1e-3
            ):
                return False
    return True


def test_ch4_ratio_check_checks_the_code_not_the_training(monkeypatch):
    torch.manual_seed(0)
    untrained = nets.ScoreMLP(dim=2, hidden=32, layers=2, embed_dim=16)
    torch.nn.init.normal_(untrained.x_out.weight, std=0.1)  # a nonzero untrained output
    assert ratios_hold(
        untrained
    )  # any network passes: this is a check of prediction_errors
    targets = nets.targets

    def x0_with_a_dropped_factor(x0, eps, a, s, *derivatives):
        return {**targets(x0, eps, a, s, *derivatives), "x0": 0.5 * x0}

    monkeypatch.setattr(nets, "targets", x0_with_a_dropped_factor)
    assert not ratios_hold(untrained)


def beats_control(trained, control, x_eval, batches=16):
    """ch4-train: held-out eps-MSE of ``trained`` below ``control``'s by > 5 standard errors."""
    mse = {"trained": [], "control": []}
    with torch.no_grad():
        for k, x0 in enumerate(x_eval.chunk(batches)):
            for name, net in (("trained", trained), ("control", control)):
                g = torch.Generator().manual_seed(5 + k)
                mse[name].append(nets.dsm_loss(net, x0, VP, generator=g)[0].item())
    gain = torch.tensor(mse["control"]) - torch.tensor(mse["trained"])
    return bool(gain.mean() > 5 * gain.std() / math.sqrt(len(gain)))


def test_ch4_training_check_fails_for_an_untrained_model():
    x_eval = data.toy_2d("moons", 2048, generator=torch.Generator().manual_seed(4))
    untrained = nets.ScoreMLP(dim=2, hidden=32, layers=2, embed_dim=16)

    mean, var = x_eval.mean(0), x_eval.var(0)

    def linear_denoiser(
        x_t, t
    ):  # the best eps-prediction for a Gaussian fit of the data
        a, s = append_dims(VP.alpha(t), 2), append_dims(VP.sigma(t), 2)
        return s * (x_t - a * mean) / (a**2 * var + s**2)

    assert beats_control(linear_denoiser, untrained, x_eval)
    assert not beats_control(
        untrained, nets.ScoreMLP(dim=2, hidden=32, layers=2, embed_dim=16), x_eval
    )


def far_from_prior(samples, prior, n=500):
    """ch4-sample: samples nearer the data than the prior by > 5 standard errors (sliced W2)."""
    fresh = [
        data.toy_2d("moons", n, generator=torch.Generator().manual_seed(100 + k))
        for k in range(6)
    ]
    g = torch.Generator().manual_seed(9)
    gap = torch.tensor(
        [
            toy.sliced_wasserstein(prior, f, generator=g)
            - toy.sliced_wasserstein(samples, f, generator=g)
            for f in fresh
        ]
    )
    return bool(gap.mean() > 5 * gap.std() / math.sqrt(len(gap)))


def test_ch4_sample_check_fails_when_the_sampler_returns_its_start():
    prior = torch.randn(500, 2, generator=torch.Generator().manual_seed(6))
    good = data.toy_2d("moons", 500, generator=torch.Generator().manual_seed(7))
    assert far_from_prior(good, prior)
    assert not far_from_prior(
        torch.randn(500, 2, generator=torch.Generator().manual_seed(8)), prior
    )
