"""oldschool.sde: marginals against the moment ODEs and simulation, the DDPM schedule,
the reverse process, and the door checks of t."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from oldschool import samplers
from oldschool.sde import (
    VESDE,
    VPSDE,
    DiscreteVP,
    LinearPath,
    SubVPSDE,
    append_dims,
    ddpm_betas,
)

ALL_SDES = [
    VPSDE(),
    SubVPSDE(),
    VESDE(),
    VPSDE(beta_min=0.5, beta_max=5.0),
    DiscreteVP.stable_diffusion(),
]
IDS = ["vp", "subvp", "ve", "vp-mild", "discrete-sd"]


@pytest.mark.parametrize("sde", ALL_SDES[:4], ids=IDS[:4])
def test_marginal_solves_the_moment_odes(sde):
    """d alpha/dt = f alpha, d(sigma^2)/dt = 2 f sigma^2 + g^2: scipy from (1, 0)."""

    def moments(t, y):
        tt = torch.tensor(t, dtype=torch.float64)
        f, g2 = float(sde.f(tt)), float(sde.g2(tt))
        return [f * y[0], 2 * f * y[1] + g2]

    t_eval = np.array([0.05, 0.3, 0.7, 1.0])
    sol = solve_ivp(
        moments, (0.0, 1.0), [1.0, 0.0], t_eval=t_eval, rtol=1e-10, atol=1e-12
    )
    t = torch.tensor(t_eval, dtype=torch.float64)
    np.testing.assert_allclose(sde.alpha(t).numpy(), sol.y[0], rtol=1e-5)
    np.testing.assert_allclose(sde.sigma(t).numpy() ** 2, sol.y[1], rtol=1e-5)


@pytest.mark.parametrize("sde", ALL_SDES, ids=IDS)
def test_moment_odes_hold_pointwise(sde):
    """The same two ODEs by central differences, inside the discrete segments."""
    t = torch.tensor([0.1005, 0.4005, 0.8005], dtype=torch.float64)
    h = 1e-5
    dlog_m = (torch.log(sde.alpha(t + h)) - torch.log(sde.alpha(t - h))) / (2 * h)
    ds2 = (sde.sigma(t + h) ** 2 - sde.sigma(t - h) ** 2) / (2 * h)
    torch.testing.assert_close(dlog_m, sde.f(t), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(
        ds2, 2 * sde.f(t) * sde.sigma(t) ** 2 + sde.g2(t), rtol=1e-6, atol=1e-8
    )


@pytest.mark.parametrize("sde", ALL_SDES[:4], ids=IDS[:4])
def test_euler_maruyama_simulation_matches_marginal(sde):
    gen = torch.Generator().manual_seed(0)
    x0 = torch.full((10000, 2), 0.7)
    xs = {}
    samplers.forward_euler_maruyama(
        sde,
        x0,
        200,
        generator=gen,
        callback=lambda i, t, x: xs.update({i: x}) if i in (50, 200) else None,
    )
    for i, t in ((50, 0.25), (200, 1.0)):
        mean, std = sde.marginal(x0[:1], t)
        emp = xs[i]
        se = float(std) / math.sqrt(len(emp))
        assert (emp.mean(0) - mean[0]).abs().max() < 5 * se + 2e-3 * float(
            mean.abs().max()
        )
        assert abs(emp.std(0).mean().item() / float(std) - 1) < 0.03


def test_known_closed_forms():
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    vp = VPSDE()
    integral = 0.1 * t + 0.5 * t**2 * (20.0 - 0.1)  # int_0^t beta
    torch.testing.assert_close(vp.alpha(t), torch.exp(-0.5 * integral))
    torch.testing.assert_close(
        vp.sigma(t) ** 2 + vp.alpha(t) ** 2, torch.ones(3, dtype=torch.float64)
    )
    sub = SubVPSDE()
    assert (sub.sigma(t[1:]) < vp.sigma(t[1:])).all()
    ve = VESDE()
    torch.testing.assert_close(ve.noise_scale(t), 0.01 * 5000.0**t)
    torch.testing.assert_close(ve.sigma(t) ** 2, ve.noise_scale(t) ** 2 - 0.01**2)


def test_discrete_schedule_matches_diffusers():
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDPMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
    )
    sd = DiscreteVP.stable_diffusion()
    torch.testing.assert_close(
        sd.alpha_bar, scheduler.alphas_cumprod.double(), rtol=1e-5, atol=1e-6
    )
    n = torch.tensor([1, 200, 999, 1000])
    t = n.double() / 1000
    torch.testing.assert_close(sd.alpha(t) ** 2, sd.alpha_bar[n - 1])
    torch.testing.assert_close(
        sd.snr(t), sd.alpha_bar[n - 1] / (1 - sd.alpha_bar[n - 1])
    )
    assert sd.alpha(torch.tensor(0.0)).item() == 1.0


def test_ddpm_betas_kinds_and_errors():
    lin = ddpm_betas(1e-4, 0.02, 1000, "linear")
    assert lin[0].item() == pytest.approx(1e-4) and lin[-1].item() == pytest.approx(
        0.02
    )
    scaled = ddpm_betas(0.00085, 0.012, 1000, "scaled_linear")
    assert torch.allclose(scaled.sqrt().diff(), scaled.sqrt().diff()[0].expand(999))
    with pytest.raises(ValueError, match="kind"):
        ddpm_betas(kind="cosine")
    with pytest.raises(ValueError, match="num_steps"):
        ddpm_betas(num_steps=0)
    with pytest.raises(ValueError, match="every beta"):
        DiscreteVP(torch.tensor([0.1, 1.5]))


@pytest.mark.parametrize("sde", ALL_SDES, ids=IDS)
def test_time_is_validated(sde):
    """marginal and perturb are the doors; the coefficients trust their callers."""
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"t must lie in \[0, T"):
        sde.marginal(x, torch.tensor([0.5, 1.2, 0.1]))
    with pytest.raises(ValueError, match=r"t must lie in \[0, T"):
        sde.perturb(x, -0.1)
    with pytest.raises(TypeError, match="t must be a float or a tensor"):
        sde.marginal(x, "0.5")
    with pytest.raises(TypeError, match="floating-point"):
        sde.marginal(x, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="batch size"):
        sde.marginal(x, torch.tensor([0.1, 0.2]))


def test_bad_parameters():
    with pytest.raises(ValueError, match="beta_min < beta_max"):
        VPSDE(beta_min=5.0, beta_max=1.0)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        VESDE(sigma_min=0.0)


@pytest.mark.parametrize("sde", ALL_SDES, ids=IDS)
def test_shapes_dtypes_and_images(sde):
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    t = torch.rand(4, dtype=torch.float64)
    drift, diffusion = sde.sde(x, t)
    assert (
        drift.shape == x.shape
        and diffusion.shape == (4, 1, 1, 1)
        and drift.dtype == torch.float64
    )
    mean, std = sde.marginal(x, t)
    assert mean.shape == x.shape and std.shape == (4, 1, 1, 1)
    x_t, eps = sde.perturb(x, t, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x_t, mean + std * eps)
    assert append_dims(t, 4).shape == (4, 1, 1, 1)


def test_prior_sample_and_log_prob():
    ve = VESDE()
    a = ve.prior_sample((5000, 2), generator=torch.Generator().manual_seed(3))
    b = ve.prior_sample((5000, 2), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.float32
    assert abs(a.std().item() / 50.0 - 1) < 0.05
    z = torch.randn(6, 3, dtype=torch.float64)
    expected = torch.distributions.Normal(0.0, 50.0).log_prob(z).sum(1)
    torch.testing.assert_close(ve.prior_log_prob(z), expected)


def test_reverse_drifts():
    vp = VPSDE()
    x = torch.randn(5, 2, dtype=torch.float64)
    t = torch.full((5,), 0.4, dtype=torch.float64)
    score = lambda x, t: -x * 3.0  # noqa: E731 - any function of (x, t)
    f, g = vp.sde(x, t)
    rev_f, rev_g = vp.reverse(score).sde(x, t)
    torch.testing.assert_close(rev_f, f - g**2 * score(x, t))
    torch.testing.assert_close(rev_g, g)
    ode_f, ode_g = vp.reverse(score, probability_flow=True).sde(x, t)
    torch.testing.assert_close(ode_f, f - 0.5 * g**2 * score(x, t))
    assert (ode_g == 0).all()
    with pytest.raises(ValueError, match="score_fn returned shape"):
        vp.reverse(lambda x, t: x[:, :1]).sde(x, t)


# ----------------------------------------------- every path, the linear one included

PATHS = ALL_SDES + [LinearPath(), LinearPath(t_max=0.9999)]
PATH_IDS = IDS + ["linear", "linear-long"]


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_path_identities(path):
    """alpha' = f alpha, sigma sigma' = g^2 / 2 + f sigma^2, lam = log SNR falling in t
    and t_of_lam(lam) = t, the derivatives against central differences, on every path,
    the linear one included."""
    t = torch.tensor(
        [0.0105, 0.1005, 0.2005, 0.4005, 0.5005, 0.8005, 0.9005, 0.9985, 0.9995],
        dtype=torch.float64,
    )
    h = 1e-6
    alpha, sigma = path.alpha(t), path.sigma(t)
    torch.testing.assert_close(
        path.d_alpha(t),
        (path.alpha(t + h) - path.alpha(t - h)) / (2 * h),
        rtol=1e-5,
        atol=1e-8,
    )
    torch.testing.assert_close(
        path.d_sigma(t),
        (path.sigma(t + h) - path.sigma(t - h)) / (2 * h),
        rtol=1e-5,
        atol=1e-8,
    )
    torch.testing.assert_close(path.d_alpha(t), path.f(t) * alpha)
    torch.testing.assert_close(
        sigma * path.d_sigma(t), path.g2(t) / 2 + path.f(t) * sigma**2
    )
    torch.testing.assert_close(path.lam(t), torch.log(alpha**2 / sigma**2))
    torch.testing.assert_close(path.t_of_lam(path.lam(t)), t, rtol=1e-9, atol=1e-9)
    assert (path.lam(t).diff() < 0).all() and (path.g2(t) > 0).all()


def test_linear_path_closed_forms_and_end_time():
    lin = LinearPath()
    t = torch.tensor([0.0, 0.25, 0.5, 0.999], dtype=torch.float64)
    torch.testing.assert_close(lin.alpha(t), 1 - t)
    torch.testing.assert_close(lin.sigma(t), t)
    torch.testing.assert_close(lin.f(t), -1 / (1 - t))
    torch.testing.assert_close(lin.g2(t), 2 * t / (1 - t))
    assert lin.T == 0.999 and lin.lam(torch.tensor(0.5)).item() == 0.0  # SNR 1 halfway
    with pytest.raises(ValueError, match=r"t must lie in \[0, T=0.999\]"):
        lin.marginal(torch.zeros(2, 2), 1.0)  # f = -1/(1 - t) is infinite there
    with pytest.raises(ValueError, match="t_max"):
        LinearPath(t_max=1.0)


def test_linear_path_marginal_by_simulation():
    """Euler-Maruyama on dx = f x dt + g dW with the linear path's f and g ends at
    (1 - t) x0 + t eps."""
    lin = LinearPath()
    gen = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 2), 0.7, dtype=torch.float64)
    x = samplers.forward_euler_maruyama(lin, x0, 2000, t_end=0.9, generator=gen)
    mean, std = lin.marginal(x0[:1], 0.9)
    assert (x.mean(0) - mean[0]).abs().max() < 5 * float(std) / math.sqrt(len(x)) + 2e-3
    assert abs(x.std(0).mean().item() / float(std) - 1) < 0.02
