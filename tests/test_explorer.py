"""The live explorer's JavaScript (oldschool/explorer.js) against oldschool in Chromium.

explorer.js is a second implementation of sde.py's paths, the mixture's exact score and
the samplers. Run in headless Chromium (Debian's, as tests/test_browser.py), given the
same points, times and noise as the Python side, it must agree to 1e-6 relative (both
are float64). Then a page made of the explorer's cell output, with the network closed,
must redraw when any control moves.
"""

import math

import pytest
import torch

from explorer_page import explorers, moved_controls_problems
from oldschool import explorer, gaussian_mixture, ode_solvers, samplers, sde, widgets
from oldschool.sde import VESDE, VPSDE, SubVPSDE

RTOL = 1e-6

PATHS = {  # (Python path, the same path in JavaScript)
    "VP default": (VPSDE(0.1, 20.0), "VPSDE(0.1, 20.0)"),
    "VP other": (VPSDE(0.5, 10.0), "VPSDE(0.5, 10.0)"),
    "sub-VP": (SubVPSDE(0.1, 20.0), "SubVPSDE(0.1, 20.0)"),
    "VE default": (VESDE(0.01, 50.0), "VESDE(0.01, 50.0)"),
    "VE other": (VESDE(0.002, 20.0), "VESDE(0.002, 20.0)"),
}
PATHS["linear"] = (sde.LinearPath(), "LinearPath()")  # chapter 8's path
TIMES = [1e-3, 0.01, 0.1, 0.37, 0.5, 0.9, 1.0]


@pytest.fixture(scope="module")
def page(browser):
    """A blank page, offline, with explorer.js loaded as the explorer inlines it."""
    context = browser.new_context()
    context.route("**/*", lambda route: route.abort("internetdisconnected"))
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_content("<!doctype html><html><body></body></html>")
    page.add_script_tag(content=explorer.js_source())
    page.errors = errors
    yield page
    context.close()


def _close(js, py, what):
    js = torch.tensor(js, dtype=torch.float64).reshape(py.shape)
    scale = py.abs().max().item()
    torch.testing.assert_close(
        js, py, rtol=RTOL, atol=RTOL * scale, msg=lambda m: f"{what}: {m}"
    )


@pytest.mark.browser
@pytest.mark.parametrize("name", PATHS)
def test_path_coefficients_match(page, name):
    """alpha, sigma, lam, f, g2 and g of each path, at times from t_min to T."""
    path, js_path = PATHS[name]
    js = page.evaluate(
        f"""ts => {{
        const p = OldschoolExplorer.{js_path};
        return Object.fromEntries(['alpha', 'sigma', 'lam', 'f', 'g2', 'g']
            .map(k => [k, ts.map(t => p[k](t))])
            .concat([['prior_std', p.prior_std], ['T', p.T]]));
    }}""",
        [t for t in TIMES if t <= path.T],
    )
    t = torch.tensor([t for t in TIMES if t <= path.T], dtype=torch.float64)
    for key in ("alpha", "sigma", "lam", "f", "g2", "g"):
        _close(
            js[key],
            getattr(path, key)(t).double() * torch.ones_like(t),
            f"{name} {key}",
        )
    assert js["prior_std"] == path.prior_std and js["T"] == path.T


@pytest.mark.browser
@pytest.mark.parametrize("name", PATHS)
def test_exact_score_matches(page, name):
    """The diffused mixture's score at random points and several times, as
    gaussian_mixture.GaussianMixture."""
    path, js_path = PATHS[name]
    mixture = gaussian_mixture.example_mixture()
    gen = torch.Generator().manual_seed(1)
    for t in (1e-3, 0.05, 0.3, path.T):
        tt = torch.tensor(t, dtype=torch.float64)
        spread = 1.5 * math.sqrt(
            float(path.alpha(tt)) ** 2 + float(path.sigma(tt)) ** 2
        )
        x = spread * torch.randn(64, 2, generator=gen, dtype=torch.float64)  # (64, 2)
        js = page.evaluate(
            f"""([mixture, x, t]) => Array.from(OldschoolExplorer.score(
            mixture, OldschoolExplorer.{js_path}, t, new Float64Array(x),
            new Float64Array(x.length)))""",
            [explorer.mixture_json(mixture), x.flatten().tolist(), t],
        )
        _close(js, mixture.score(x, t, path), f"{name} score at t={t}")


def _noise_like(gen, shape, count):
    """The normals a torch sampler draws from ``gen``, in order: one (B, 2) tensor per
    call."""
    return [
        torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(count)
    ]


def _run_js(page, js_path, sampler, x, noise, steps, t_min):
    """Run a JS sampler from x with the given noise; returns the states after every
    step."""
    return page.evaluate(
        f"""([mixture, x, noise, steps, t_min, sampler]) => {{
        const E = OldschoolExplorer, path = E.{js_path}, states = [];
        const opts = {{t_min: t_min, t_end: undefined,
                      noise: i => new Float64Array(noise[i]),
                      callback: (i, t, xi) => states.push([t, ...xi])}};
        if (sampler === 'forward_euler_maruyama')
            E.forward_euler_maruyama(path, new Float64Array(x), steps, opts);
        else E[sampler](
            path, E.score_fn(mixture, path), new Float64Array(x), steps, opts);
        return states;
    }}""",
        [
            explorer.mixture_json(gaussian_mixture.example_mixture()),
            x.flatten().tolist(),
            [z.flatten().tolist() for z in noise],
            steps,
            t_min,
            sampler,
        ],
    )


@pytest.mark.browser
@pytest.mark.parametrize(
    "sampler", ["euler_maruyama", "ode_euler", "ode_heun", "forward_euler_maruyama"]
)
@pytest.mark.parametrize(
    "name",
    ["VP default", "sub-VP", "VE default"] + (["linear"] if "linear" in PATHS else []),
)
def test_sampler_steps_match(page, name, sampler):
    """A few steps of each sampler from the same start with the same noise: every state
    agrees."""
    path, js_path = PATHS[name]
    mixture, steps, t_min, seed = gaussian_mixture.example_mixture(), 6, 1e-3, 3
    if sampler == "forward_euler_maruyama":
        x = mixture.sample(
            16, generator=torch.Generator().manual_seed(0), dtype=torch.float64
        )
    else:
        x = path.prior_sample(
            (16, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64
        )
    noise = _noise_like(torch.Generator().manual_seed(seed), x.shape, steps)
    ts, xs = [], []
    record = lambda i, t, xi: (ts.append(float(t)), xs.append(xi.clone()))  # noqa: E731
    gen = torch.Generator().manual_seed(
        seed
    )  # the same stream the noise above was drawn from
    if sampler == "forward_euler_maruyama":
        samplers.forward_euler_maruyama(path, x, steps, callback=record, generator=gen)
    else:
        ode_solvers.SAMPLERS[sampler](
            path,
            mixture.score_fn(path),
            x,
            steps,
            t_min=t_min,
            callback=record,
            generator=gen,
        )
    js = _run_js(page, js_path, sampler, x, noise, steps, t_min)
    assert len(js) == steps + 1
    for i, state in enumerate(js):
        _close(
            [state[0]],
            torch.tensor([ts[i]], dtype=torch.float64),
            f"{name} {sampler} t_{i}",
        )
        _close(state[1:], xs[i], f"{name} {sampler} x after step {i}")
    assert not page.errors


@pytest.mark.browser
def test_parity_fails_for_a_wrong_path(page):
    """The comparison can fail: a VP path with another beta_max does not pass for the
    default."""
    with pytest.raises(AssertionError):
        path, _ = PATHS["VP default"]
        x = path.prior_sample(
            (16, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64
        )
        noise = _noise_like(torch.Generator().manual_seed(3), x.shape, 4)
        js = _run_js(page, "VPSDE(0.1, 19.5)", "euler_maruyama", x, noise, 4, 1e-3)
        out = samplers.euler_maruyama(
            path,
            gaussian_mixture.example_mixture().score_fn(path),
            x,
            4,
            generator=torch.Generator().manual_seed(3),
        )
        _close(js[-1][1:], out, "wrong path")


def test_defaults_sit_on_their_grids():
    """Every explorer and widget default is one of its slider's values (no snap on
    load)."""
    for name, grid in explorer.GRIDS.items():
        assert explorer.DEFAULTS[name] in grid, name
    assert explorer.DEFAULTS["kind"] in explorer.SDE_KINDS
    assert explorer.DEFAULTS["sampler"] in explorer.JS_SAMPLERS


def test_output_is_self_contained():
    """One HTML output: the inlined script (no "</script>" inside it), the JSON, no
    URL."""
    html = explorer.live_explorer(
        gaussian_mixture.example_mixture(), view="sde_vs_ode"
    )._repr_html_()
    assert "</script" not in explorer.js_source().lower()
    assert html.count("<script>") == 2 and "src=" not in html and "http" not in html
    assert '"view": "sde_vs_ode"' in html


def test_bad_arguments_are_named():
    mixture = gaussian_mixture.example_mixture()
    with pytest.raises(ValueError, match="beta_max"):
        explorer.live_explorer(mixture, beta_max=21.0)
    with pytest.raises(ValueError, match="kinds"):
        explorer.live_explorer(mixture, kinds=("VP", "cosine"))
    with pytest.raises(ValueError, match="view"):
        explorer.live_explorer(mixture, view="ode")
    with pytest.raises(ValueError, match="unknown controls"):
        explorer.live_explorer(mixture, betamax=20.0)
    with pytest.raises(ValueError, match="2-D"):
        explorer.live_explorer(widgets)


@pytest.fixture(scope="module")
def explorer_page(browser, tmp_path_factory):
    """A page holding both explorers' cell outputs, opened from a file, network
    closed."""
    mixture = gaussian_mixture.example_mixture()
    html = "".join(
        explorer.live_explorer(mixture, view=v)._repr_html_() for v in explorer.VIEWS
    )
    folder = tmp_path_factory.mktemp("explorer-page")
    (folder / "index.html").write_text(
        f"<!doctype html><html><body>{html}</body></html>"
    )
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    blocked, errors = [], []
    page.route(
        "**/*",
        lambda r: (
            r.continue_()
            if r.request.url.startswith("file://")
            else (blocked.append(r.request.url), r.abort("internetdisconnected"))
        ),
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto((folder / "index.html").as_uri())
    page.blocked, page.errors = blocked, errors
    yield page
    page.close()


@pytest.mark.browser
def test_every_control_redraws(explorer_page):
    """Both views: moving each control changes the drawing; a non-change does not
    redraw."""
    roots = explorers(explorer_page)
    assert len(roots) == 2
    problems = []
    for i, root in enumerate(roots):
        problems += moved_controls_problems(root, f"explorer {i}")
    assert not problems, "\n".join(problems)
    assert not explorer_page.errors and not explorer_page.blocked
