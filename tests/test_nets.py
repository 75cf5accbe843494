"""Tests of oldschool.nets: time embeddings against diffusers, the parameterizations' algebra,
and the denoising loss against the closed form it must reach on Gaussian data."""

import math

import pytest
import torch

from oldschool import nets
from oldschool.sde import VESDE, VPSDE, LinearPath, SubVPSDE

# every parameterization on every kind of path: VP (alpha^2 + sigma^2 = 1), VE (alpha = 1,
# sigma up to 50), sub-VP, and the linear path of rectified flow (alpha = 1 - t, sigma = t)
PATHS = {"vp": VPSDE(), "ve": VESDE(), "subvp": SubVPSDE(), "linear": LinearPath()}
CASES = [(p, name) for p in nets.PARAMETERIZATIONS for name in PATHS]


def coefficients(sde, t, ndim=2):
    """alpha, sigma, alpha', sigma' shaped (B, 1)."""
    return tuple(
        nets.append_dims(c(t), ndim)
        for c in (sde.alpha, sde.sigma, sde.d_alpha, sde.d_sigma)
    )


class GaussianOracle(torch.nn.Module):
    """The exact minimizer of the loss when x0 ~ N(0, s0^2 I): E[target | x_t], for any parameterization.

    x_t ~ N(0, (alpha^2 s0^2 + sigma^2) I) and E[eps | x_t] = sigma x_t / (alpha^2 s0^2 + sigma^2).
    """

    def __init__(self, sde, s0, parameterization):
        super().__init__()
        self.sde, self.s0, self.parameterization = sde, s0, parameterization

    def forward(self, x, t):
        alpha, sigma, d_alpha, d_sigma = coefficients(self.sde, t, x.dim())
        var_t = alpha**2 * self.s0**2 + sigma**2
        eps_hat = sigma * x / var_t
        x0_hat = alpha * self.s0**2 * x / var_t
        return nets.targets(x0_hat, eps_hat, alpha, sigma, d_alpha, d_sigma)[
            self.parameterization
        ]


# ---------------------------------------------------------------- embeddings


@pytest.mark.parametrize("dim", [2, 7, 32, 320])
@pytest.mark.parametrize(
    "flip_sin_to_cos, downscale_freq_shift", [(False, 1.0), (True, 0.0), (True, 1.0)]
)
@pytest.mark.parametrize(
    "scale, max_period", [(1.0, 10000.0), (1000.0, 10000.0), (1.0, 100.0)]
)
def test_sinusoidal_matches_diffusers(
    dim, flip_sin_to_cos, downscale_freq_shift, scale, max_period
):
    embeddings = pytest.importorskip("diffusers.models.embeddings")
    if dim == 2 and downscale_freq_shift == 1.0:
        pytest.skip(
            "one frequency with shift 1 divides by zero (diffusers returns nan)"
        )
    t = torch.tensor([0.0, 0.001, 0.5, 1.0, 17.0, 999.0])
    ours = nets.sinusoidal_embedding(
        t,
        dim,
        flip_sin_to_cos=flip_sin_to_cos,
        downscale_freq_shift=downscale_freq_shift,
        scale=scale,
        max_period=max_period,
    )
    theirs = embeddings.get_timestep_embedding(
        t,
        dim,
        flip_sin_to_cos=flip_sin_to_cos,
        downscale_freq_shift=downscale_freq_shift,
        scale=scale,
        max_period=max_period,
    )
    assert ours.shape == theirs.shape == (6, dim)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-5)


def test_sinusoidal_module_and_errors():
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    module = nets.SinusoidalEmbedding(
        16, flip_sin_to_cos=True, downscale_freq_shift=0.0
    )
    out = module(t)
    assert out.dtype == torch.float64 and out.shape == (5, 16)
    torch.testing.assert_close(
        out,
        nets.sinusoidal_embedding(
            t, 16, flip_sin_to_cos=True, downscale_freq_shift=0.0
        ),
    )
    # sin^2 + cos^2 = 1 for every frequency
    torch.testing.assert_close(
        out[:, :8] ** 2 + out[:, 8:] ** 2, torch.ones(5, 8, dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="1-D tensor"):
        nets.sinusoidal_embedding(torch.zeros(3, 1), 16)
    with pytest.raises(ValueError, match="dim"):
        nets.sinusoidal_embedding(torch.zeros(3), 1)
    with pytest.raises(ValueError, match="no frequency range"):
        nets.sinusoidal_embedding(torch.zeros(3), 2, downscale_freq_shift=1.0)


def test_gaussian_fourier_embedding():
    a = nets.GaussianFourierEmbedding(
        32, scale=16.0, generator=torch.Generator().manual_seed(0)
    )
    b = nets.GaussianFourierEmbedding(
        32, scale=16.0, generator=torch.Generator().manual_seed(0)
    )
    assert list(a.parameters()) == [] and "w" in dict(
        a.named_buffers()
    )  # fixed, not trained
    torch.testing.assert_close(a.w, b.w)
    t = torch.rand(10)
    out = a(t)
    assert out.shape == (10, 32)
    torch.testing.assert_close(out[:, :16] ** 2 + out[:, 16:] ** 2, torch.ones(10, 16))
    torch.testing.assert_close(out[:, :16], torch.sin(2 * math.pi * t[:, None] * a.w))
    with pytest.raises(ValueError, match="even"):
        nets.GaussianFourierEmbedding(31)


# ---------------------------------------------------------------- the network


def test_score_mlp_shapes_init_and_gradients():
    torch.manual_seed(0)
    model = nets.ScoreMLP(dim=3, hidden=32, layers=2, embed_dim=16)
    x, t = torch.randn(5, 3), torch.rand(5)
    out = model(x, t)
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # zero-initialized last layer
    torch.nn.init.normal_(model.x_out.weight)
    out = model(x, t)
    assert not torch.allclose(out, model(x, t.flip(0)))  # depends on t
    out.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    fourier = nets.ScoreMLP(
        dim=2, embed_dim=8, time_embedding=nets.GaussianFourierEmbedding(8)
    )
    assert fourier(torch.randn(4, 2), torch.rand(4)).shape == (4, 2)
    double = nets.ScoreMLP(dim=2).double()
    assert (
        double(
            torch.randn(4, 2, dtype=torch.float64), torch.rand(4, dtype=torch.float64)
        ).dtype
        == torch.float64
    )


def test_score_mlp_errors():
    model = nets.ScoreMLP(dim=2, hidden=8, layers=1, embed_dim=4)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        model(torch.randn(4, 3), torch.rand(4))
    with pytest.raises(ValueError, match=r"t must have shape \(4,\)"):
        model(torch.randn(4, 2), torch.rand(4, 1))
    with pytest.raises(ValueError, match="hidden"):
        nets.ScoreMLP(hidden=0)


# ---------------------------------------------------------------- parameterizations


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
    output = nets.targets(x0, eps, alpha, sigma, d_alpha, d_sigma)[parameterization]
    eps_back, x0_back = nets.eps_and_x0(
        output, x_t, alpha, sigma, parameterization, d_alpha, d_sigma
    )
    torch.testing.assert_close(eps_back, eps)
    torch.testing.assert_close(x0_back, x0)


@pytest.mark.parametrize("path", PATHS)
def test_v_is_the_angular_velocity_of_the_rescaled_path(path):
    """v = d(x_t / r)/d phi with phi = atan2(sigma, alpha), r = sqrt(alpha^2 + sigma^2), by the chain rule."""
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

    dx_dphi = (rescaled(t + h) - rescaled(t - h)) / nets.append_dims(
        phi(t + h) - phi(t - h), 2
    )
    torch.testing.assert_close(
        nets.targets(x0, eps, *coefficients(sde, t))["v"], dx_dphi, rtol=1e-5, atol=1e-6
    )
    dx_dt = (
        coefficients(sde, t + h)[0] * x0
        + coefficients(sde, t + h)[1] * eps
        - coefficients(sde, t - h)[0] * x0
        - coefficients(sde, t - h)[1] * eps
    ) / (2 * h)
    torch.testing.assert_close(
        nets.targets(x0, eps, *coefficients(sde, t))["velocity"],
        dx_dt,
        rtol=1e-5,
        atol=1e-6,
    )


def test_velocity_on_the_linear_path_is_noise_minus_data():
    lin = LinearPath()
    x0, eps = torch.randn(8, 2), torch.randn(8, 2)
    t = torch.rand(8) * 0.9
    torch.testing.assert_close(
        nets.targets(x0, eps, *coefficients(lin, t))["velocity"], eps - x0
    )
    alpha, sigma, d_alpha, d_sigma = coefficients(lin, t)
    torch.testing.assert_close(
        nets.eps_weight(alpha, sigma, "velocity", d_alpha, d_sigma), alpha**2
    )


@pytest.mark.parametrize("parameterization, path", CASES)
def test_eps_weighting_makes_every_parameterization_the_eps_mse(parameterization, path):
    """The same (imperfect) eps-predictor written in five parameterizations: weighted losses agree."""
    sde = PATHS[path]
    torch.manual_seed(0)
    eps_model = nets.ScoreMLP(dim=2, hidden=16, layers=1, embed_dim=8).double()
    torch.nn.init.normal_(eps_model.x_out.weight, std=0.3)

    def as_parameterization(x, t):
        alpha, sigma, d_alpha, d_sigma = coefficients(sde, t)
        eps_hat = eps_model(x, t)
        x0_hat = (x - sigma * eps_hat) / alpha
        return nets.targets(x0_hat, eps_hat, alpha, sigma, d_alpha, d_sigma)[
            parameterization
        ]

    x0 = torch.randn(256, 2, dtype=torch.float64)
    loss_eps, parts_eps = nets.dsm_loss(
        eps_model, x0, sde, "eps", generator=torch.Generator().manual_seed(3)
    )
    loss, parts = nets.dsm_loss(
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
    """On x0 ~ N(0, s0^2 I) the loss at fixed t bottoms out at Var(target | x_t), known in closed form."""
    sde, s0, n = PATHS[path], 0.5, 100_000
    g = torch.Generator().manual_seed(2)
    x0 = s0 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    oracle = GaussianOracle(sde, s0, parameterization)
    for t_value in (0.05, 0.3, 0.8):
        t = torch.full((n,), t_value, dtype=torch.float64)
        loss, parts = nets.dsm_loss(
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
        expected = var_eps / nets.eps_weight(
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
        worse, _ = nets.dsm_loss(
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
    score_fn = nets.score_fn_from_model(
        GaussianOracle(sde, s0, parameterization), sde, parameterization
    )
    var_t = nets.append_dims(sde.alpha(t) ** 2 * s0**2 + sde.sigma(t) ** 2, 2)
    torch.testing.assert_close(score_fn(x, t), -x / var_t)  # grad log N(0, var_t I)
    with pytest.raises(ValueError, match=r"t must have shape \(32,\)"):
        score_fn(x, t[:3])


def test_dsm_loss_trains_and_samples_times_in_range():
    sde = VPSDE()
    model = nets.ScoreMLP(hidden=16, layers=1, embed_dim=8)
    seen = []

    def spy(x, t):
        seen.append(t)
        return model(x, t)

    loss, parts = nets.dsm_loss(
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
        nets.eps_and_x0(x0, x0, 1.0, 0.5, "velocity")
    with pytest.raises(ValueError, match="needs d_alpha and d_sigma"):
        nets.eps_weight(torch.ones(3), torch.ones(3), "velocity")
    with pytest.raises(ValueError, match=r"t must lie in \[0, T"):
        nets.dsm_loss(model, x0, LinearPath(), t=torch.full((8,), 0.9999))
    with pytest.raises(ValueError, match="parameterization must be one of"):
        nets.dsm_loss(model, x0, VPSDE(), "noise")
    with pytest.raises(ValueError, match="parameterization must be one of"):
        nets.score_fn_from_model(model, VPSDE(), "epsilon")
    with pytest.raises(ValueError, match="weighting"):
        nets.dsm_loss(model, x0, VPSDE(), weighting="snr")
    with pytest.raises(ValueError, match=r"t must lie in \[0, T"):
        nets.dsm_loss(model, x0, VPSDE(), t=torch.full((8,), 1.5))
    with pytest.raises(ValueError, match="expected"):
        nets.dsm_loss(lambda x, t: x[:, :1], x0, VPSDE())
    with pytest.raises(ValueError, match="t_min must be in"):
        nets.dsm_loss(model, x0, VPSDE(), t_min=1.0)


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
        errors = nets.prediction_errors(
            model, x0, sde, t, generator=torch.Generator().manual_seed(5)
        )
        assert set(errors) == set(nets.PARAMETERIZATIONS)
        path = [c(t[:1]) for c in (sde.alpha, sde.sigma, sde.d_alpha, sde.d_sigma)]
        for q, error in errors.items():  # MSE_q * (eps-MSE per unit of q-MSE) = eps-MSE
            torch.testing.assert_close(
                error * nets.eps_weight(path[0], path[1], q, *path[2:])[0],
                errors["eps"],
            )
        _, parts = nets.dsm_loss(
            model, x0, sde, t=t, generator=torch.Generator().manual_seed(5)
        )
        torch.testing.assert_close(errors["eps"], parts["mse_eps"])
        torch.testing.assert_close(errors["x0"], parts["mse_x0"])
