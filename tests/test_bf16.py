"""The GPU path's precision, on the CPU: train.train under bf16 (and float16) autocast, and
every model's forward under autocast against its float32 forward.

CPU autocast runs the same bf16 kernels' numerics a GPU's autocast does (matmuls and convs
in bf16, accumulation in float32), so a bf16 drift or a dtype clash shows here first.
"""

import pytest
import torch

from oldschool import (
    autoencoder_kl,
    autoencoders,
    config,
    data,
    guidance,
    nets,
    perceptual,
    train,
    unet,
)


def small_problem():
    """The ch1 autoencoder on the 8x8 digits: a model, its loss, the data."""
    images = data.digits()

    return images, autoencoders.ae_loss


def fit(precision, seed, steps=300, record=None):
    images, loss_fn = small_problem()
    torch.manual_seed(seed)
    model = autoencoders.AE(tuple(images.shape[1:]), latent_dim=2, hidden=128)

    def watched(m, x):
        if record is not None:
            record.append(
                (torch.is_autocast_enabled("cpu"), m.encoder[0](x.flatten(1)).dtype)
            )
        return loss_fn(m, x)

    history = train.train(
        model,
        watched,
        images,
        steps=steps,
        batch_size=64,
        lr=3e-3,
        generator=torch.Generator().manual_seed(seed),
        progress=False,
        precision=precision,
    )
    with torch.no_grad():
        reconstruction = model(images)  # float32 evaluation of each trained model
    return history, reconstruction


def test_bf16_training_tracks_float32_closer_than_another_seed_does():
    seen = []
    h32, r32 = fit(torch.float32, seed=0)
    h16, r16 = fit(torch.bfloat16, seed=0, record=seen)
    h32b, r32b = fit(torch.float32, seed=1)
    assert all(
        enabled and dtype == torch.bfloat16 for enabled, dtype in seen
    )  # autocast really ran
    # the control: how far two float32 runs that differ only in their seed end apart
    seed_gap = (r32 - r32b).pow(2).mean().item()
    bf16_gap = (r32 - r16).pow(2).mean().item()
    assert bf16_gap < 0.01 * seed_gap, (bf16_gap, seed_gap)  # measured: ~4e-4 of it
    for h in (h32, h16):
        assert h.final("mse") < 0.5 * sum(h["mse"][:20]) / 20  # both learned
    seed_loss_gap = abs(h32b.final("mse") - h32.final("mse"))
    assert abs(h16.final("mse") - h32.final("mse")) < 0.1 * seed_loss_gap


def test_float16_with_a_grad_scaler_trains_as_well_as_float32():
    # The scaler skips the first steps (their gradients overflow at its initial scale 2^16), so a
    # float16 run is not step-for-step float32's; over three seeds it must end as well trained.
    runs = {
        dtype: [fit(dtype, seed, steps=150)[0] for seed in range(3)]
        for dtype in (torch.float32, torch.float16)
    }
    a, b = (
        torch.tensor([h.final("mse") for h in runs[dtype]])
        for dtype in (torch.float32, torch.float16)
    )
    standard_error = (a.var() / 3 + b.var() / 3).sqrt()
    assert abs(a.mean() - b.mean()) < 4 * standard_error + 0.01 * a.mean(), (a, b)
    assert all(
        h.final("mse") < 0.5 * sum(h["mse"][:20]) / 20 for h in runs[torch.float16]
    )  # it learned


def test_precision_follows_the_mode_and_refuses_nonsense(monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, "cpu")
    assert config.autocast_dtype("cpu") is None
    monkeypatch.setenv(config.ENV_VAR, "gpu")
    monkeypatch.setenv(config.DEVICE_ENV_VAR, "cpu")
    assert (
        config.autocast_dtype("cpu") == torch.bfloat16
    )  # the dry run takes the bf16 path
    seen = []
    images, loss_fn = small_problem()
    model = autoencoders.AE((1, 8, 8), latent_dim=2, hidden=32)
    train.train(
        model,
        lambda m, x: (seen.append(torch.is_autocast_enabled("cpu")), loss_fn(m, x))[1],
        images,
        steps=2,
        batch_size=8,
        progress=False,
    )
    assert seen == [True, True]
    with pytest.raises(ValueError, match="precision must be"):
        train.train(
            model, loss_fn, images, steps=1, batch_size=8, precision=torch.float64
        )


# ---- every model's forward under autocast ---------------------------------------------------


def _models():
    g = torch.Generator().manual_seed(0)
    x_img = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1
    x_photo = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    t = torch.rand(4, generator=g)
    x_2d, z_photo, context = (
        torch.randn(shape, generator=g) for shape in ((4, 2), (2, 4, 8, 8), (4, 2, 32))
    )
    labels = torch.tensor([0, 3, 7, 10])
    vae_small = autoencoder_kl.small_vae(4, (16, 32, 32), 1, 8)
    tiny = unet.tiny_unet(channels=(16, 32, 32), groups=8)
    conditional = guidance.ClassConditionalUNet(
        unet.tiny_unet(channels=(16, 32, 32), groups=8), num_classes=10
    )
    lpips = perceptual.LPIPS("alex", pretrained_backbone=False)
    return {
        "AE": (autoencoders.AE((1, 8, 8)), lambda m: m(x_img)),
        "StochasticAE": (
            autoencoders.StochasticAE((1, 8, 8)),
            lambda m: m.decode(m.encode(x_img).mean),
        ),
        "VAE": (autoencoders.VAE((1, 8, 8)), lambda m: m.decode(m.encode(x_img).mean)),
        "ScoreMLP": (nets.ScoreMLP(hidden=64), lambda m: m(x_2d, t)),
        "AutoencoderKL.encode": (vae_small, lambda m: m.encode(x_photo).mean),
        "AutoencoderKL.decode": (vae_small, lambda m: m.decode(z_photo)),
        "UNet2DCondition": (tiny, lambda m: m(x_img, 500 * t, context)),
        "ClassConditionalUNet": (conditional, lambda m: m(x_img, t, labels)),
        "LPIPS": (lpips, lambda m: m(x_photo, x_photo.flip(-1))),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_every_model_runs_under_bf16_autocast_close_to_float32(name):
    model, run = _models()[name]
    model.eval()
    for p in (
        model.parameters()
    ):  # the last layers of some models start at zero: give them weights
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.1)
    with torch.no_grad():
        reference = run(model)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = run(model)
    assert mixed.shape == reference.shape
    assert mixed.dtype in (
        torch.float32,
        torch.bfloat16,
    )  # float32, or the autocast dtype; nothing else
    assert torch.isfinite(mixed).all()
    assert all(
        p.dtype == torch.float32 for p in model.parameters()
    )  # autocast casts, never converts weights
    error = ((mixed.float() - reference).norm() / reference.norm()).item()
    assert error < 0.05, f"{name}: relative error {error:.3g} under bf16 autocast"
