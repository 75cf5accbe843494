"""oldschool.denoising: the parameterizations' algebra, the denoising loss against the
closed form it must reach on Gaussian data, and chapter 4's checks of them fed broken
input (each must fail; the labels are book/checks.md's)."""

import math

import pytest
import sympy as sp
import torch

from oldschool import denoising, nets, symbolic, toy
from oldschool.sde import VESDE, VPSDE, LinearPath, SubVPSDE, append_dims

# every parameterization on every kind of path: VP (alpha^2 + sigma^2 = 1), VE
# (alpha = 1, sigma up to 50), sub-VP, and the linear path of rectified flow
# (alpha = 1 - t, sigma = t)
PATHS = {"vp": VPSDE(), "ve": VESDE(), "subvp": SubVPSDE(), "linear": LinearPath()}
CASES = [(p, name) for p in denoising.PARAMETERIZATIONS for name in PATHS]


def coefficients(sde, t, ndim=2):
    """alpha, sigma, alpha', sigma' shaped (B, 1)."""
    return tuple(
        append_dims(c(t), ndim)
        for c in (sde.alpha, sde.sigma, sde.d_alpha, sde.d_sigma)
    )


class GaussianOracle(torch.nn.Module):
    """The exact minimizer of the loss when x0 ~ N(0, s0^2 I): E[target | x_t], for any
    parameterization.

    x_t ~ N(0, (alpha^2 s0^2 + sigma^2) I) and E[eps | x_t] = sigma x_t / (alpha^2 s0^2
    + sigma^2).
    """

    def __init__(self, sde, s0, parameterization):
        super().__init__()
        self.sde, self.s0, self.parameterization = sde, s0, parameterization

    def forward(self, x, t):
        alpha, sigma, d_alpha, d_sigma = coefficients(self.sde, t, x.dim())
        var_t = alpha**2 * self.s0**2 + sigma**2
        eps_hat = sigma * x / var_t
        x0_hat = alpha * self.s0**2 * x / var_t
        return denoising.targets(x0_hat, eps_hat, alpha, sigma, d_alpha, d_sigma)[
            self.parameterization
        ]


@pytest.mark.parametrize("parameterization, path", CASES)
def test_eps_and_x0_inverts_targets(parameterization, path):
    g = torch.Generator().manual_seed(1)
    sde = PATHS[path]
    x0, eps = (
        torch.randn(64, 2, generator=g, dtype=torch.float64),
        torch.randn(64, 2, generator=g, dtype=torch.float64),
    )
    t = 0.01 + 0.98 * torch.rand(64, generator=g, dtype=torch.float64)
    alpha, sigma, d_alpha, d_sigma = coefficients(sde, t)
    x_t = alpha * x0 + sigma * eps
    output = denoising.targets(x0, eps, alpha, sigma, d_alpha, d_sigma)[
        parameterization
    ]
    eps_back, x0_back = denoising.eps_and_x0(
        output, x_t, alpha, sigma, parameterization, d_alpha, d_sigma
    )
    torch.testing.assert_close(eps_back, eps)
    torch.testing.assert_close(x0_back, x0)


@pytest.mark.parametrize("path", PATHS)
def test_v_is_the_angular_velocity_of_the_rescaled_path(path):
    """v = d(x_t / r)/d phi with phi = atan2(sigma, alpha), r = sqrt(alpha^2 + sigma^2),
    by the chain rule."""
    sde = PATHS[path]
    g = torch.Generator().manual_seed(2)
    x0, eps = (
        torch.randn(16, 2, generator=g, dtype=torch.float64),
        torch.randn(16, 2, generator=g, dtype=torch.float64),
    )
    t = torch.linspace(0.05, 0.95, 16, dtype=torch.float64)
    h = 1e-6

    def rescaled(t):
        alpha, sigma = coefficients(sde, t)[:2]
        return (alpha * x0 + sigma * eps) / torch.sqrt(alpha**2 + sigma**2)

    def phi(t):
        return torch.atan2(sde.sigma(t), sde.alpha(t))

    dx_dphi = (rescaled(t + h) - rescaled(t - h)) / append_dims(
        phi(t + h) - phi(t - h), 2
    )
    torch.testing.assert_close(
        denoising.targets(x0, eps, *coefficients(sde, t))["v"],
        dx_dphi,
        rtol=1e-5,
        atol=1e-6,
    )
    dx_dt = (
        coefficients(sde, t + h)[0] * x0
        + coefficients(sde, t + h)[1] * eps
        - coefficients(sde, t - h)[0] * x0
        - coefficients(sde, t - h)[1] * eps
    ) / (2 * h)
    torch.testing.assert_close(
        denoising.targets(x0, eps, *coefficients(sde, t))["velocity"],
        dx_dt,
        rtol=1e-5,
        atol=1e-6,
    )


def test_velocity_on_the_linear_path_is_noise_minus_data():
    lin = LinearPath()
    x0, eps = torch.randn(8, 2), torch.randn(8, 2)
    t = torch.rand(8) * 0.9
    torch.testing.assert_close(
        denoising.targets(x0, eps, *coefficients(lin, t))["velocity"], eps - x0
    )
    alpha, sigma, d_alpha, d_sigma = coefficients(lin, t)
    torch.testing.assert_close(
        denoising.eps_weight(alpha, sigma, "velocity", d_alpha, d_sigma),
        alpha**2,
    )


@pytest.mark.parametrize("parameterization, path", CASES)
def test_eps_weighting_makes_every_parameterization_the_eps_mse(parameterization, path):
    """An imperfect eps-predictor in five parameterizations: weighted losses agree."""
    sde = PATHS[path]
    torch.manual_seed(0)
    eps_model = nets.ScoreMLP(dim=2, hidden=16, layers=1, embed_dim=8).double()
    torch.nn.init.normal_(eps_model.x_out.weight, std=0.3)

    def as_parameterization(x, t):
        alpha, sigma, d_alpha, d_sigma = coefficients(sde, t)
        eps_hat = eps_model(x, t)
        x0_hat = (x - sigma * eps_hat) / alpha
        return denoising.targets(x0_hat, eps_hat, alpha, sigma, d_alpha, d_sigma)[
            parameterization
        ]

    x0 = torch.randn(256, 2, dtype=torch.float64)
    loss_eps, parts_eps = denoising.dsm_loss(
        eps_model, x0, sde, "eps", generator=torch.Generator().manual_seed(3)
    )
    loss, parts = denoising.dsm_loss(
        as_parameterization,
        x0,
        sde,
        parameterization,
        weighting="eps",
        generator=torch.Generator().manual_seed(3),
    )
    torch.testing.assert_close(loss, loss_eps)
    torch.testing.assert_close(
        parts["mse_eps"], loss_eps
    )  # the eps-MSE part is the eps loss itself
    torch.testing.assert_close(parts["mse_x0"], parts_eps["mse_x0"])


@pytest.mark.parametrize("parameterization, path", CASES)
def test_dsm_loss_of_the_oracle_is_the_posterior_variance(parameterization, path):
    """On x0 ~ N(0, s0^2 I) the loss at fixed t bottoms out at Var(target | x_t), a
    closed form."""
    sde, s0, n = PATHS[path], 0.5, 100_000
    g = torch.Generator().manual_seed(2)
    x0 = s0 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    oracle = GaussianOracle(sde, s0, parameterization)
    for t_value in (0.05, 0.3, 0.8):
        t = torch.full((n,), t_value, dtype=torch.float64)
        loss, parts = denoising.dsm_loss(
            oracle,
            x0,
            sde,
            parameterization,
            t=t,
            generator=torch.Generator().manual_seed(4),
        )
        alpha, sigma, d_alpha, d_sigma = (
            c(t[0]) for c in (sde.alpha, sde.sigma, sde.d_alpha, sde.d_sigma)
        )
        var_eps = (
            alpha**2 * s0**2 / (alpha**2 * s0**2 + sigma**2)
        )  # Var(eps | x_t) per coordinate
        expected = var_eps / denoising.eps_weight(
            alpha, sigma, parameterization, d_alpha, d_sigma
        )
        assert abs(float(loss) / float(expected) - 1) < 0.02, (
            t_value,
            float(loss),
            float(expected),
        )
        assert abs(float(parts["mse_eps"]) / float(var_eps) - 1) < 0.02
        # a worse model does worse on the same noise
        shift = 0.5 * float(expected) ** 0.5  # adds 0.25 expected to the loss
        worse, _ = denoising.dsm_loss(
            lambda x, t: oracle(x, t) + shift,
            x0,
            sde,
            parameterization,
            t=t,
            generator=torch.Generator().manual_seed(4),
        )
        assert worse > 1.15 * loss


@pytest.mark.parametrize("parameterization, path", CASES)
def test_score_fn_from_model_gives_the_exact_score_of_the_oracle(
    parameterization, path
):
    sde, s0 = PATHS[path], 0.7
    x = torch.randn(32, 2, dtype=torch.float64)
    t = 0.01 + 0.98 * torch.rand(32, dtype=torch.float64)
    score_fn = denoising.score_fn_from_model(
        GaussianOracle(sde, s0, parameterization), sde, parameterization
    )
    var_t = append_dims(sde.alpha(t) ** 2 * s0**2 + sde.sigma(t) ** 2, 2)
    torch.testing.assert_close(score_fn(x, t), -x / var_t)  # grad log N(0, var_t I)
    # per step the score function trusts its sampler; the model's forward is the door
    model = nets.ScoreMLP(dim=2, hidden=8, layers=1, embed_dim=4).double()
    with pytest.raises(ValueError, match=r"t must have shape \(32,\)"):
        denoising.score_fn_from_model(model, sde, parameterization)(x, t[:3])


def test_dsm_loss_trains_and_samples_times_in_range():
    sde = VPSDE()
    model = nets.ScoreMLP(hidden=16, layers=1, embed_dim=8)
    seen = []

    def spy(x, t):
        seen.append(t)
        return model(x, t)

    loss, parts = denoising.dsm_loss(
        spy,
        torch.randn(512, 2),
        sde,
        t_min=0.25,
        generator=torch.Generator().manual_seed(0),
    )
    assert seen[0].min() >= 0.25 and seen[0].max() <= 1.0 and seen[0].std() > 0.1
    assert set(parts) == {"mse_eps", "mse_x0"} and loss.requires_grad
    loss.backward()
    assert model.x_out.weight.grad.abs().sum() > 0


def test_dsm_loss_errors():
    x0 = torch.randn(8, 2)
    model = nets.ScoreMLP(hidden=8, layers=1, embed_dim=4)
    with pytest.raises(ValueError, match="needs d_alpha and d_sigma"):
        denoising.eps_and_x0(x0, x0, 1.0, 0.5, "velocity")
    with pytest.raises(ValueError, match="needs d_alpha and d_sigma"):
        denoising.eps_weight(torch.ones(3), torch.ones(3), "velocity")
    with pytest.raises(ValueError, match=r"t must lie in \[0, T"):
        denoising.dsm_loss(model, x0, LinearPath(), t=torch.full((8,), 0.9999))
    with pytest.raises(ValueError, match="parameterization must be one of"):
        denoising.dsm_loss(model, x0, VPSDE(), "noise")
    with pytest.raises(ValueError, match="parameterization must be one of"):
        denoising.score_fn_from_model(model, VPSDE(), "epsilon")
    with pytest.raises(ValueError, match="weighting"):
        denoising.dsm_loss(model, x0, VPSDE(), weighting="snr")
    with pytest.raises(ValueError, match=r"t must lie in \[0, T"):
        denoising.dsm_loss(model, x0, VPSDE(), t=torch.full((8,), 1.5))
    with pytest.raises(ValueError, match="expected"):
        denoising.dsm_loss(lambda x, t: x[:, :1], x0, VPSDE())
    with pytest.raises(ValueError, match="t_min must be in"):
        denoising.dsm_loss(model, x0, VPSDE(), t_min=1.0)


@pytest.mark.parametrize(
    "sde", [VPSDE(), VESDE(), LinearPath()], ids=["VP", "VE", "linear"]
)
def test_prediction_errors_are_one_error_weighted_by_the_snr(sde):
    torch.manual_seed(0)
    model = nets.ScoreMLP(dim=2, hidden=16, layers=1, embed_dim=8).double()
    torch.nn.init.normal_(model.x_out.weight, std=0.3)
    x0 = torch.randn(512, 2, dtype=torch.float64)
    for t_value in (0.05, 0.5, 0.95):
        t = torch.full((512,), t_value, dtype=torch.float64)
        errors = denoising.prediction_errors(
            model, x0, sde, t, generator=torch.Generator().manual_seed(5)
        )
        assert set(errors) == set(denoising.PARAMETERIZATIONS)
        path = [c(t[:1]) for c in (sde.alpha, sde.sigma, sde.d_alpha, sde.d_sigma)]
        for q, error in errors.items():  # MSE_q * (eps-MSE per unit of q-MSE) = eps-MSE
            torch.testing.assert_close(
                error * denoising.eps_weight(path[0], path[1], q, *path[2:])[0],
                errors["eps"],
            )
        _, parts = denoising.dsm_loss(
            model, x0, sde, t=t, generator=torch.Generator().manual_seed(5)
        )
        torch.testing.assert_close(errors["eps"], parts["mse_eps"])
        torch.testing.assert_close(errors["x0"], parts["mse_x0"])


# ---- chapter 4's checks, fed broken input ------------------------------------------

VP = VPSDE()


def prediction_maps_hold(targets):
    """ch4-param: sympy's maps between the four predictions = eps_and_x0 + targets."""
    maps, (x_t_sym, output, alpha, sigma) = symbolic.prediction_maps()
    g = torch.Generator().manual_seed(2)
    t = 0.01 + 0.98 * torch.rand(200, generator=g, dtype=torch.float64)
    a, s = append_dims(VP.alpha(t), 2), append_dims(VP.sigma(t), 2)
    x_t = torch.randn(200, 2, generator=g, dtype=torch.float64)
    out = torch.randn(200, 2, generator=g, dtype=torch.float64)
    for p in maps:
        eps_hat, x0_hat = denoising.eps_and_x0(out, x_t, a, s, p)
        implied = targets(x0_hat, eps_hat, a, s)
        for q in maps:
            expected = sp.lambdify((x_t_sym, output, alpha, sigma), maps[p][q])(
                x_t, out, a, s
            )
            if not torch.allclose(implied[q], expected * torch.ones_like(out)):
                return False
    return True


def test_ch4_parameterization_check_fails_on_a_flipped_sign_in_v():
    assert prediction_maps_hold(denoising.targets)

    def flipped_v(x0, eps, a, s):
        return {
            **denoising.targets(x0, eps, a, s),
            "v": a * eps + s * x0,
        }  # v = a eps - s x0

    assert not prediction_maps_hold(flipped_v)


def loss_weights_hold(eps_weight):
    """ch4-weights: each loss's sympy weight times eps_weight is 1 on the VP grid."""
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
    assert loss_weights_hold(denoising.eps_weight)
    assert not loss_weights_hold(lambda a, s, q: denoising.eps_weight(a, s, q).sqrt())


def ratios_hold(model):
    """ch4-equivalent: MSE_q / MSE_eps from prediction_errors = the sympy weights."""
    _, w_snr, (_, _, snr) = symbolic.loss_weights_vs_snr()
    x0 = toy.sample_2d("moons", 512, generator=torch.Generator().manual_seed(4))
    for t in (0.05, 0.5, 1.0):
        errors = denoising.prediction_errors(
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
    targets = denoising.targets

    def x0_with_a_dropped_factor(x0, eps, a, s, *derivatives):
        return {**targets(x0, eps, a, s, *derivatives), "x0": 0.5 * x0}

    monkeypatch.setattr(denoising, "targets", x0_with_a_dropped_factor)
    assert not ratios_hold(untrained)


def beats_control(trained, control, x_eval, batches=16):
    """ch4-train: held-out eps-MSE of ``trained`` below ``control``'s by > 5 SE."""
    mse = {"trained": [], "control": []}
    with torch.no_grad():
        for k, x0 in enumerate(x_eval.chunk(batches)):
            for name, net in (("trained", trained), ("control", control)):
                g = torch.Generator().manual_seed(5 + k)
                mse[name].append(denoising.dsm_loss(net, x0, VP, generator=g)[0].item())
    gain = torch.tensor(mse["control"]) - torch.tensor(mse["trained"])
    return bool(gain.mean() > 5 * gain.std() / math.sqrt(len(gain)))


def test_ch4_training_check_fails_for_an_untrained_model():
    x_eval = toy.sample_2d("moons", 2048, generator=torch.Generator().manual_seed(4))
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


class _Elsewhere(torch.nn.Module):
    """Weights on another device (meta stands in for a GPU); records what it is fed and
    answers a CPU tensor, as a GPU network's output moved back would be."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(1, device="meta"))
        self.seen = []

    def forward(self, x, t):
        self.seen.append((x.device.type, t.device.type))
        return torch.ones(tuple(x.shape))


def test_score_fn_feeds_the_network_on_its_own_device():
    """A network trained on the GPU samples CPU points: inputs go to its weights'
    device, the score comes back on x's (a plain function just follows x)."""
    sde, x, t = VPSDE(), torch.zeros(4, 2), torch.full((4,), 0.5)
    model = _Elsewhere()
    score = denoising.score_fn_from_model(model, sde, "eps")(x, t)
    assert model.seen == [("meta", "meta")]
    assert score.device == x.device
    torch.testing.assert_close(score, -torch.ones(4, 2) / sde.sigma(t)[:, None])
    seen = []
    denoising.score_fn_from_model(
        lambda x, t: seen.append(x.device.type) or torch.zeros_like(x), sde
    )(x, t)
    assert seen == ["cpu"]
