"""No hard-coded device: the package's models, losses and samplers run with every input on
the "meta" device (shapes only, no storage), and nothing in the package or the chapters
names a device or dtype it should take from its inputs.

A tensor made on the CPU behind the caller's back (``torch.zeros(n)`` without
``device=x.device``, a schedule table that never moves) meets a meta tensor and raises, just
as it would meet a CUDA tensor on Colab; the meta device finds it on a machine without a GPU.
The checks at the door (``oldschool.checks``) skip the values of meta tensors and keep
their shapes, so no check is patched here: the real entry points run.
"""

import json
import re
from pathlib import Path

import pytest
import torch

from oldschool import (
    autoencoders,
    denoising,
    guidance,
    nets,
    ode_solvers,
    samplers,
    sde,
    unet,
)

ROOT = Path(__file__).resolve().parents[1]
META = torch.device("meta")


def on_meta(build):
    with META:
        return build()


def score_fn_on_meta(schedule):
    model = on_meta(lambda: nets.ScoreMLP(hidden=16, layers=1, embed_dim=8))
    return denoising.score_fn_from_model(model, schedule, "eps")


MODELS = {
    "AE": (
        lambda: autoencoders.AE((1, 8, 8)),
        lambda m: m(torch.empty(3, 1, 8, 8, device=META)),
    ),
    "VAE": (
        lambda: autoencoders.VAE((1, 8, 8)),
        lambda m: m(torch.empty(3, 1, 8, 8, device=META))[0],
    ),
    "ScoreMLP": (
        lambda: nets.ScoreMLP(),
        lambda m: m(torch.empty(3, 2, device=META), torch.empty(3, device=META)),
    ),
    "UNet2DCondition": (
        lambda: unet.tiny_unet(),
        lambda m: m(
            torch.empty(2, 1, 8, 8, device=META),
            torch.empty(2, device=META),
            torch.empty(2, 2, 32, device=META),
        ),
    ),
    "ClassConditionalUNet": (
        lambda: guidance.ClassConditionalUNet(unet.tiny_unet(), num_classes=10),
        lambda m: m(
            torch.empty(2, 1, 8, 8, device=META),
            torch.empty(2, device=META),
            torch.zeros(2, dtype=torch.long, device=META),
        ),
    ),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_models_run_on_meta(name):
    build, run = MODELS[name]
    model = on_meta(build)
    out = run(model)
    assert out.device.type == "meta"


def test_the_published_unet_runs_on_meta():
    sd15 = on_meta(unet.sd15_unet)
    x, t, context = (
        torch.empty(shape, device=META)
        for shape in ((1, 4, 16, 16), (1,), (1, 77, 768))
    )
    out = sd15(x, t, context)
    assert out.device.type == "meta"


@pytest.mark.parametrize(
    "schedule",
    [sde.VPSDE(), sde.VESDE(), sde.SubVPSDE(), sde.DiscreteVP.stable_diffusion()],
    ids=lambda s: type(s).__name__,
)
def test_losses_and_samplers_run_on_meta(schedule):
    model = on_meta(lambda: nets.ScoreMLP(hidden=16, layers=1, embed_dim=8))
    x0 = torch.empty(5, 2, device=META)
    loss, parts = denoising.dsm_loss(model, x0, schedule, "eps")
    assert loss.device.type == "meta"
    score_fn = denoising.score_fn_from_model(model, schedule, "eps")
    x_T = schedule.prior_sample((5, 2), device=META)
    for name in (
        "euler_maruyama",
        "predictor_corrector",
        "ode_euler",
        "ode_heun",
        "ddpm_ancestral",
        "ddim",
    ):
        if name in ("ddpm_ancestral", "ddim") and isinstance(schedule, sde.VESDE):
            continue  # the DDPM/DDIM steps are for variance-preserving schedules
        assert (
            ode_solvers.SAMPLERS[name](schedule, score_fn, x_T, 3).device.type == "meta"
        ), name


def test_classifier_free_guidance_runs_on_meta():
    schedule = sde.DiscreteVP.stable_diffusion()
    model = on_meta(
        lambda: guidance.ClassConditionalUNet(unet.tiny_unet(), num_classes=10)
    )
    labels = torch.zeros(4, dtype=torch.long, device=META)
    loss, _ = guidance.cfg_loss(
        model, (torch.empty(4, 1, 8, 8, device=META), labels), schedule
    )
    assert loss.device.type == "meta"
    eps_fn = guidance.guided_eps(model, labels, 2.0)
    score_fn = denoising.score_fn_from_model(eps_fn, schedule, "eps")
    x_T = schedule.prior_sample((4, 1, 8, 8), device=META)
    assert samplers.ddim(schedule, score_fn, x_T, 2).device.type == "meta"


# ---- a grep: no device or dtype spelled out where it should come from the inputs --------

FORBIDDEN = [
    (
        r"""["']cuda(:\d+)?["']|\.cuda\(""",
        "a CUDA device spelled out (config.device() or the input's device)",
    ),
    (
        r"""torch\.(randn|rand|zeros|ones|empty|randint)\([^)]*\)\.to\(""",
        "make the tensor where it belongs (device=)",
    ),
    (
        r"""\.to\(\s*["']cpu["']\s*\)""",
        "use .cpu() only to leave the device for plotting, or the input's device",
    ),
    (
        r"""dtype=torch\.(float16|half|bfloat16)""",
        "low precision is the training loop's choice (autocast)",
    ),
]
ALLOWED = {"oldschool/config.py"}  # the one place that decides devices and dtypes


def code_lines():
    for path in sorted((ROOT / "oldschool").glob("*.py")):
        if path.relative_to(ROOT).as_posix() in ALLOWED:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            yield f"{path.relative_to(ROOT)}:{number}", line.split("#")[0]
    for path in sorted((ROOT / "book").glob("ch*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        for index, cell in enumerate(cells):
            if cell["cell_type"] == "code":
                for number, line in enumerate("".join(cell["source"]).splitlines(), 1):
                    yield (
                        f"{path.relative_to(ROOT)} cell {index} line {number}",
                        line.split("#")[0],
                    )


def test_no_device_or_dtype_is_hard_coded():
    found = [
        f"{where}: {why}: {line.strip()}"
        for where, line in code_lines()
        for pattern, why in FORBIDDEN
        if re.search(pattern, line)
    ]
    assert not found, "\n".join(found)


def test_the_grep_sees_what_it_forbids():
    samples = [
        'x = torch.zeros(3, device="cuda")',
        "model.cuda()",
        "torch.randn(4, 2).to(device)",
        'z = y.to("cpu")',
        "w = torch.ones(2, dtype=torch.bfloat16)",
    ]
    for sample in samples:
        assert any(re.search(pattern, sample) for pattern, _ in FORBIDDEN), sample
    assert not any(
        re.search(p, "x = torch.randn(4, 2, device=x.device)") for p, _ in FORBIDDEN
    )
