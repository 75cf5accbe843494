"""oldschool.samplers: recovery of a known mixture, convergence orders, invertibility, peers in diffusers."""

import math

import pytest
import torch

from oldschool import gaussian_mixture, metrics, samplers
from oldschool.sde import VESDE, VPSDE, DiscreteVP, SubVPSDE

MIXTURE = gaussian_mixture.example_mixture()
STEPS = {
    "ode_euler": 300
}  # Euler on the VE ODE needs more than 100 uniform steps (chapter 6)
# the exponential integrators and EDM-Heun are meant for a grid in the noise level
SCHEDULE = {
    "ddim": "logsnr",
    "dpm_solver_2m": "logsnr",
    "dpm_solver_3m": "logsnr",
    "edm_heun": "edm",
}


pytestmark = pytest.mark.usefixtures("one_thread")


CASES = [(name, sde) for sde in ("vp", "ve") for name in sorted(samplers.SAMPLERS)]
CASES += [("euler_maruyama", "subvp"), ("ode_heun", "subvp")]
SDES = {"vp": VPSDE(), "ve": VESDE(), "subvp": SubVPSDE()}


@pytest.mark.parametrize("name, sde_name", CASES)
def test_exact_score_recovers_the_mixture(name, sde_name):
    sde = SDES[sde_name]
    gen = torch.Generator().manual_seed(0)
    n = 2000
    x = sde.prior_sample((n, 2), generator=gen)
    steps = STEPS.get(name, 100)
    ts = samplers.time_grid(sde, steps, schedule=SCHEDULE.get(name, "uniform"), like=x)
    out = samplers.SAMPLERS[name](sde, MIXTURE.score_fn(sde), x, ts, generator=gen)
    assert out.shape == x.shape and out.dtype == x.dtype
    weights = MIXTURE.responsibilities(out).argmax(1).bincount(minlength=4) / n
    assert (weights - MIXTURE.weights.float()).abs().max() < 0.04, weights
    fresh = MIXTURE.sample(n, generator=gen)
    floor = metrics.sliced_wasserstein(
        MIXTURE.sample(n, generator=gen), fresh, generator=gen
    )
    assert metrics.sliced_wasserstein(out, fresh, generator=gen) < floor + 0.04


@pytest.mark.parametrize(
    "name", ["euler_maruyama", "ode_heun", "ddpm_ancestral", "ddim"]
)
def test_gaussian_data_on_images(name):
    """Data N(mu, c^2 I) on (B, 1, 4, 4) 'images': the score is linear, samples must match mu and c.

    500 steps: with few steps ancestral sampling comes out too narrow (its posterior
    treats the denoised x0_hat as exact), by 9% at 100 steps here.
    """
    mu, c = 0.5, 0.3
    sde = VPSDE()

    def score(x, t):
        m, s = sde.alpha(t), sde.sigma(t)
        m, s = m[:, None, None, None], s[:, None, None, None]
        return -(x - m * mu) / (m**2 * c**2 + s**2)

    gen = torch.Generator().manual_seed(2)
    x = sde.prior_sample((1000, 1, 4, 4), generator=gen)
    out = samplers.SAMPLERS[name](sde, score, x, 500, generator=gen)
    assert out.shape == (1000, 1, 4, 4)
    assert abs(out.mean().item() - mu) < 0.01
    assert abs(out.std().item() / c - 1) < 0.04


def _errors(sampler, sde, x, reference, step_counts):
    return [
        (sampler(sde, MIXTURE.score_fn(sde), x, n) - reference)
        .norm(dim=1)
        .mean()
        .item()
        for n in step_counts
    ]


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_convergence_orders(sde):
    """On the exact-score ODE (no score error): Euler's error halves, Heun's quarters, when steps double."""
    x = sde.prior_sample(
        (100, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    reference = samplers.ode_rk45(
        sde, MIXTURE.score_fn(sde), x, 1, rtol=1e-10, atol=1e-10
    )
    euler = _errors(samplers.ode_euler, sde, x, reference, [100, 200])
    heun = _errors(samplers.ode_heun, sde, x, reference, [200, 400])
    assert 0.7 < math.log2(euler[0] / euler[1]) < 1.3, euler
    assert 1.7 < math.log2(heun[0] / heun[1]) < 2.4, heun
    stats = {}
    rk45 = samplers.ode_rk45(
        sde, MIXTURE.score_fn(sde), x, 1, rtol=1e-6, atol=1e-6, stats=stats
    )
    assert (rk45 - reference).norm(dim=1).mean() < 1e-4 and 0 < stats["nfev"] < 1000


def test_probability_flow_round_trip():
    sde = VPSDE()
    data = MIXTURE.sample(
        200, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    score = MIXTURE.score_fn(sde)
    noise, info = samplers.solve_probability_flow(
        sde, score, data, 1e-3, sde.T, rtol=1e-9, atol=1e-9
    )
    assert (
        info["nfev"] > 0 and abs(noise.std().item() - 1) < 0.15
    )  # data -> (roughly) N(0, I)
    back, _ = samplers.solve_probability_flow(
        sde, score, noise, sde.T, 1e-3, rtol=1e-9, atol=1e-9
    )
    assert (back - data).abs().max() < 1e-5


def test_callback_generator_and_nfe():
    sde = VPSDE()
    seen = []
    x = sde.prior_sample((10, 2), generator=torch.Generator().manual_seed(0))
    counted = samplers.CountingScore(MIXTURE.score_fn(sde))
    a = samplers.euler_maruyama(
        sde,
        counted,
        x,
        7,
        generator=torch.Generator().manual_seed(5),
        callback=lambda i, t, xi: seen.append((i, float(t), xi.shape)),
    )
    b = samplers.euler_maruyama(
        sde, MIXTURE.score_fn(sde), x, 7, generator=torch.Generator().manual_seed(5)
    )
    assert torch.equal(a, b) and counted.calls == 7
    assert (
        [s[0] for s in seen] == list(range(8))
        and seen[0][1] == 1.0
        and seen[-1][1] == pytest.approx(1e-3)
    )
    counted = samplers.CountingScore(MIXTURE.score_fn(sde))
    samplers.ode_heun(sde, counted, x, 7)
    assert counted.calls == 14
    counted = samplers.CountingScore(MIXTURE.score_fn(sde))
    samplers.predictor_corrector(sde, counted, x, 7, corrector_steps=2)
    assert counted.calls == 21
    seen.clear()
    samplers.ode_rk45(
        sde, MIXTURE.score_fn(sde), x, 4, callback=lambda i, t, xi: seen.append(i)
    )
    assert seen == [0, 1, 2, 3, 4]


def test_input_errors():
    sde = VPSDE()
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        samplers.ode_euler(sde, MIXTURE.score_fn(sde), x, 0)
    with pytest.raises(ValueError, match="need 0 < t_min"):
        samplers.ddim(sde, MIXTURE.score_fn(sde), x, 5, t_min=0.0)
    with pytest.raises(ValueError, match="floating-point tensor"):
        samplers.ode_heun(
            sde, MIXTURE.score_fn(sde), torch.zeros(4, 2, dtype=torch.long), 5
        )
    with pytest.raises(ValueError, match="eta"):
        samplers.ddim(sde, MIXTURE.score_fn(sde), x, 5, eta=2.0)
    with pytest.raises(ValueError, match="snr"):
        samplers.predictor_corrector(sde, MIXTURE.score_fn(sde), x, 5, snr=-1.0)


def _eps_model(sd, score_fn):
    """A diffusers-style noise predictor eps(x, timestep) from a score: eps = -s(t) score."""

    def eps(x, timestep):
        t = torch.full((x.shape[0],), (int(timestep) + 1) / sd.num_steps, dtype=x.dtype)
        return -sd.sigma(t)[:, None] * score_fn(x, t)

    return eps


def test_ddim_and_ancestral_match_diffusers_schedulers():
    """On the SD schedule, 49 of 50 'trailing' diffusers steps land on our grid 1.0, 0.98, ..., 0.02."""
    diffusers = pytest.importorskip("diffusers")
    sd = DiscreteVP.stable_diffusion()
    score = MIXTURE.score_fn(sd)
    eps_model = _eps_model(sd, score)
    x = sd.prior_sample(
        (64, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    common = dict(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="trailing",
        clip_sample=False,
    )

    ours = samplers.ddim(sd, score, x, 49, t_min=0.02)
    scheduler = diffusers.DDIMScheduler(**common)
    scheduler.set_timesteps(50)
    theirs = x
    for timestep in scheduler.timesteps[:49]:
        theirs = scheduler.step(
            eps_model(theirs, timestep), timestep, theirs, eta=0.0
        ).prev_sample
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)

    states = []
    samplers.ddpm_ancestral(
        sd,
        score,
        x,
        49,
        t_min=0.02,
        generator=torch.Generator().manual_seed(7),
        callback=lambda i, t, xi: states.append(xi),
    )
    scheduler = diffusers.DDPMScheduler(**common, variance_type="fixed_small")
    scheduler.set_timesteps(50)
    theirs, gen = x, torch.Generator().manual_seed(7)
    for timestep in scheduler.timesteps[
        :48
    ]:  # our last step adds no noise; compare before it
        theirs = scheduler.step(
            eps_model(theirs, timestep), timestep, theirs, generator=gen
        ).prev_sample
    torch.testing.assert_close(states[48], theirs, rtol=1e-5, atol=1e-5)
