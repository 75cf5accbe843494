"""oldschool.samplers: time grids, the check at the door, every sampler recovering a
known mixture, Tweedie's last step, callbacks and NFE, and peers in diffusers."""

import pytest
import torch

from oldschool import dpm_solvers, gaussian_mixture, metrics, ode_solvers, samplers
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


CASES = [(name, sde) for sde in ("vp", "ve") for name in sorted(ode_solvers.SAMPLERS)]
CASES += [("euler_maruyama", "subvp"), ("ode_heun", "subvp")]
SDES = {"vp": VPSDE(), "ve": VESDE(), "subvp": SubVPSDE()}
PATHS = {
    "vp": VPSDE(),
    "subvp": SubVPSDE(),
    "ve": VESDE(),
    "sd": DiscreteVP.stable_diffusion(),
}


@pytest.mark.parametrize("name, sde_name", CASES)
def test_exact_score_recovers_the_mixture(name, sde_name):
    sde = SDES[sde_name]
    gen = torch.Generator().manual_seed(0)
    n = 2000
    x = sde.prior_sample((n, 2), generator=gen)
    steps = STEPS.get(name, 100)
    ts = samplers.time_grid(sde, steps, schedule=SCHEDULE.get(name, "uniform"), like=x)
    out = ode_solvers.SAMPLERS[name](sde, MIXTURE.score_fn(sde), x, ts, generator=gen)
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
    """Data N(mu, c^2 I) on (B, 1, 4, 4) 'images': the score is linear, samples must
    match mu and c.

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
    out = ode_solvers.SAMPLERS[name](sde, score, x, 500, generator=gen)
    assert out.shape == (1000, 1, 4, 4)
    assert abs(out.mean().item() - mu) < 0.01
    assert abs(out.std().item() / c - 1) < 0.04


@pytest.mark.parametrize("schedule", samplers.SCHEDULES)
@pytest.mark.parametrize("path", sorted(PATHS))
def test_grid_endpoints_monotone_and_exact_mapping(path, schedule):
    sde = PATHS[path]
    ts = samplers.time_grid(sde, 12, t_min=2e-3, schedule=schedule)
    assert ts.shape == (13,) and ts.dtype == torch.float64
    assert float(ts[0]) == sde.T and float(ts[-1]) == 2e-3
    assert (ts[1:] < ts[:-1]).all()
    lam = sde.lam(ts)
    if schedule == "logsnr":  # equal steps in lam: the map lam -> t is exact
        steps = lam[1:] - lam[:-1]
        torch.testing.assert_close(steps, steps.mean().expand(12), rtol=1e-7, atol=1e-9)
    elif schedule == "edm":  # equal steps in (sigma / alpha)^(1/7)
        root = samplers.noise_levels(sde, ts) ** (1 / 7)
        steps = root[1:] - root[:-1]
        torch.testing.assert_close(steps, steps.mean().expand(12), rtol=1e-7, atol=1e-9)
    else:
        steps = ts[1:] - ts[:-1]
        torch.testing.assert_close(steps, steps.mean().expand(12))


@pytest.mark.parametrize("path", ["vp", "subvp", "ve"])
def test_t_of_lam_inverts_lam(path):
    sde = PATHS[path]
    t = torch.linspace(1e-3, 1.0, 200, dtype=torch.float64)
    torch.testing.assert_close(sde.t_of_lam(sde.lam(t)), t, rtol=1e-9, atol=1e-12)


def test_grid_and_int_agree_and_bad_grids_fail():
    sde = VPSDE()
    x = sde.prior_sample((50, 2), generator=torch.Generator().manual_seed(0))
    score = MIXTURE.score_fn(sde)
    by_int = dpm_solvers.dpm_solver_2m(sde, score, x, 8, t_min=0.01)
    by_grid = dpm_solvers.dpm_solver_2m(
        sde, score, x, samplers.time_grid(sde, 8, t_min=0.01)
    )
    torch.testing.assert_close(by_int, by_grid)
    with pytest.raises(ValueError, match="strictly decreasing"):
        samplers.ddim(sde, score, x, torch.tensor([0.5, 0.6, 0.1]))
    with pytest.raises(ValueError, match="t_min is for an int"):
        samplers.ddim(sde, score, x, samplers.time_grid(sde, 4), t_min=0.1)
    with pytest.raises(ValueError, match="schedule must be one of"):
        samplers.time_grid(sde, 4, schedule="cosine")
    with pytest.raises(ValueError, match="final"):
        samplers.euler_maruyama(sde, score, x, 4, final="none")


def test_final_denoise_is_one_tweedie_step():
    """Gaussian data N(0, c^2): "denoise" runs the same chain as "noise" (same
    generator), then maps its end point x to E[x0 | x] = alpha c^2 x / (alpha^2 c^2 +
    sigma^2), for one more evaluation; "mean" differs from "noise" only in the last
    step's noise."""
    sde, c, t_min = VPSDE(), 0.05, 0.05

    def score(x, t):
        a, s = sde.alpha(t)[:, None], sde.sigma(t)[:, None]
        return -x / (a**2 * c**2 + s**2)

    x = sde.prior_sample(
        (2000, 1), generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    runs = {}
    for final in samplers.FINAL_STEPS:
        counted = samplers.CountingScore(score)
        runs[final] = samplers.euler_maruyama(
            sde,
            counted,
            x,
            50,
            t_min=t_min,
            final=final,
            generator=torch.Generator().manual_seed(4),
        )
        assert counted.calls == 50 + (final == "denoise")
    t = torch.tensor(t_min, dtype=torch.float64)
    a, s = float(sde.alpha(t)), float(sde.sigma(t))
    torch.testing.assert_close(
        runs["denoise"], a * c**2 / (a**2 * c**2 + s**2) * runs["noise"]
    )
    assert runs["mean"].var() < runs["noise"].var()


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
    ode_solvers.ode_heun(sde, counted, x, 7)
    assert counted.calls == 14
    counted = samplers.CountingScore(MIXTURE.score_fn(sde))
    samplers.predictor_corrector(sde, counted, x, 7, corrector_steps=2)
    assert counted.calls == 21
    seen.clear()
    ode_solvers.ode_rk45(
        sde, MIXTURE.score_fn(sde), x, 4, callback=lambda i, t, xi: seen.append(i)
    )
    assert seen == [0, 1, 2, 3, 4]


def test_input_errors():
    sde = VPSDE()
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="steps must lie in"):
        ode_solvers.ode_euler(sde, MIXTURE.score_fn(sde), x, 0)
    with pytest.raises(ValueError, match="need 0 < t_min"):
        samplers.ddim(sde, MIXTURE.score_fn(sde), x, 5, t_min=0.0)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        ode_solvers.ode_heun(
            sde, MIXTURE.score_fn(sde), torch.zeros(4, 2, dtype=torch.long), 5
        )
    with pytest.raises(ValueError, match="eta"):
        samplers.ddim(sde, MIXTURE.score_fn(sde), x, 5, eta=2.0)
    with pytest.raises(ValueError, match="snr"):
        samplers.predictor_corrector(sde, MIXTURE.score_fn(sde), x, 5, snr=-1.0)
    with pytest.raises(ValueError, match=r"ts must lie in \[0, T"):
        samplers.ddim(sde, MIXTURE.score_fn(sde), x, torch.tensor([1.5, 0.5, 0.1]))
    with pytest.raises(ValueError, match=r"x must be a batch shaped \(B, \.\.\.\)"):
        samplers.euler_maruyama(sde, MIXTURE.score_fn(sde), torch.zeros(4), 5)


def _eps_model(sd, score_fn):
    """A diffusers-style noise predictor eps(x, timestep) from a score: eps = -s(t)
    score."""

    def eps(x, timestep):
        t = torch.full((x.shape[0],), (int(timestep) + 1) / sd.num_steps, dtype=x.dtype)
        return -sd.sigma(t)[:, None] * score_fn(x, t)

    return eps


def test_ddim_and_ancestral_match_diffusers_schedulers():
    """On the SD schedule, 49 of 50 'trailing' diffusers steps land on our grid 1.0,
    0.98, ..., 0.02."""
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
