import pytest
import torch

from oldschool import (
    autoencoder_kl,
    guidance,
    latent_diffusion,
    samplers,
    sde,
    unet,
)
from oldschool.latent_diffusion import LatentDiffusion


def tiny_ldm(latent_channels=4, seed=0, scaling_factor=None, shift_factor=None):
    """An 8x8 grey-image LDM: a KL-f2 autoencoder (4x4 latents), a two-level U-Net."""
    torch.manual_seed(seed)
    vae = autoencoder_kl.small_vae(
        latent_channels, block_out_channels=(8, 8), norm_num_groups=4, image_channels=1
    )
    denoiser = guidance.ClassConditionalUNet(
        unet.tiny_unet(
            channels=(8, 16),
            cross_attention_dim=8,
            heads=2,
            groups=4,
            in_channels=latent_channels,
        ),
        num_classes=3,
    )
    return LatentDiffusion(
        vae,
        denoiser,
        sde.DiscreteVP.stable_diffusion(),
        image_size=8,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
    )


def images(n=6, seed=1):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_shapes_of_every_stage():
    ldm = tiny_ldm()
    x, labels = images(), torch.tensor([0, 1, 2, 0, 1, 2])
    z0 = ldm.encode(x)
    assert ldm.latent_shape == (4, 4, 4) and z0.shape == (6, 4, 4, 4)
    loss, parts = ldm.loss((z0, labels), generator=torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and {"mse_eps", "p_null"} <= set(parts)
    out = ldm.sample(
        labels,
        guidance_scale=2.0,
        steps=3,
        sampler=samplers.ddim,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.shape == x.shape
    shapes = dict(ldm.stage_shapes(x, labels, sampler=samplers.ddim))
    assert shapes["image x"] == shapes["decoded image"] == (6, 1, 8, 8)
    assert shapes["q(z|x): mean and log-variance"] == (6, 8, 4, 4)
    assert (
        shapes["noised latent z_t"]
        == shapes["U-Net output eps_hat(z_t, t, y)"]
        == (6, 4, 4, 4)
    )
    assert shapes["context: the label's tokens"] == (6, 2, 8)


def test_round_trip_through_the_autoencoder_undoes_the_scaling():
    ldm = tiny_ldm(scaling_factor=0.37, shift_factor=0.25)
    x = images()
    z0 = ldm.encode(x)
    z = ldm.autoencoder.encode(x).mode()
    torch.testing.assert_close(z0, (z - 0.25) * 0.37)  # (z - shift) * scale
    torch.testing.assert_close(
        ldm.decode(z0), ldm.autoencoder.decode(z), atol=1e-5, rtol=1e-5
    )
    sampled = ldm.encode(
        x, generator=torch.Generator().manual_seed(0)
    )  # a draw of q(z|x), not its mean
    assert (
        not torch.equal(sampled, z0)
        and (sampled - z0).abs().max() < 0.37 * 5 * ldm.autoencoder.encode(x).std.max()
    )


def test_fit_scaling_gives_unit_variance_latents():
    ldm = tiny_ldm()
    x = images(64)
    scale, shift = ldm.fit_scaling(x)
    assert shift == 0.0 and float(ldm.scaling_factor) == pytest.approx(scale)
    assert ldm.encode(x).std().item() == pytest.approx(1.0, abs=1e-4)
    scale, shift = ldm.fit_scaling(x, with_shift=True)
    z0 = ldm.encode(x)
    assert z0.mean().item() == pytest.approx(
        0.0, abs=1e-4
    ) and z0.std().item() == pytest.approx(1.0, abs=1e-4)


def test_guided_score_is_the_classifier_free_guidance_combination():
    ldm = tiny_ldm()
    schedule, model = ldm.schedule, ldm.denoiser
    z = torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0.2, 0.5, 0.9])
    labels = torch.tensor([0, 1, 2])
    with torch.no_grad():
        eps_cond = model(z, t, labels)
        eps_null = model(z, t, torch.full_like(labels, model.null_label))
    _, sigma = schedule.marginal(z, t)  # (B, 1, 1, 1)
    for w in (0.0, 1.0, 3.5):
        expected = -(eps_null + w * (eps_cond - eps_null)) / sigma
        torch.testing.assert_close(
            ldm.guided_score(labels, w)(z, t), expected, atol=1e-5, rtol=1e-4
        )
    assert not torch.allclose(
        eps_cond, eps_null
    )  # the label changes the prediction, so the check can fail


def test_without_guidance_the_labels_do_not_matter():
    ldm = tiny_ldm()
    kwargs = dict(guidance_scale=0.0, steps=4, sampler=samplers.ddim)
    a = ldm.sample(
        torch.tensor([0, 0, 0]), generator=torch.Generator().manual_seed(5), **kwargs
    )
    b = ldm.sample(
        torch.tensor([1, 2, 0]), generator=torch.Generator().manual_seed(5), **kwargs
    )
    c = ldm.sample(
        torch.tensor([1, 2, 0]),
        generator=torch.Generator().manual_seed(5),
        **{**kwargs, "guidance_scale": 2.0},
    )
    torch.testing.assert_close(a, b)
    assert not torch.allclose(b, c, atol=1e-4)


def test_only_the_denoiser_trains():
    ldm = tiny_ldm().train()
    assert not ldm.autoencoder.training and ldm.denoiser.training
    loss, _ = ldm.loss((ldm.encode(images()), torch.tensor([0, 1, 2, 0, 1, 2])))
    loss.backward()
    assert all(p.grad is None for p in ldm.autoencoder.parameters())
    assert all(p.grad is not None for p in ldm.denoiser.parameters() if p.requires_grad)


def test_checkpoint_round_trip_through_safetensors(tmp_path):
    trained = tiny_ldm(seed=0, scaling_factor=0.8, shift_factor=0.1)
    path = tmp_path / "ldm.safetensors"
    latent_diffusion.save_checkpoint(trained, path)
    fresh = tiny_ldm(seed=1)
    assert not torch.equal(
        fresh.denoiser.unet.conv_in.weight, trained.denoiser.unet.conv_in.weight
    )
    latent_diffusion.load_checkpoint(fresh, path)
    for (name, a), (_, b) in zip(
        trained.state_dict().items(), fresh.state_dict().items()
    ):
        assert torch.equal(a, b), name
    assert float(fresh.scaling_factor) == pytest.approx(0.8) and float(
        fresh.shift_factor
    ) == pytest.approx(0.1)
    labels = torch.tensor([0, 1, 2])
    kwargs = dict(guidance_scale=3.0, steps=3, sampler=samplers.ddim)
    torch.testing.assert_close(
        trained.sample(labels, generator=torch.Generator().manual_seed(0), **kwargs),
        fresh.sample(labels, generator=torch.Generator().manual_seed(0), **kwargs),
    )


def test_checkpoint_of_another_architecture_is_refused_by_name(tmp_path):
    path = tmp_path / "ldm16.safetensors"
    latent_diffusion.save_checkpoint(tiny_ldm(latent_channels=16), path)
    with pytest.raises(
        ValueError, match="does not fit this LatentDiffusion.*shape mismatch.*conv_in"
    ):
        latent_diffusion.load_checkpoint(tiny_ldm(latent_channels=4), path)


def test_inputs_are_checked_at_the_door():
    ldm = tiny_ldm()
    with pytest.raises(ValueError, match=r"images x must have shape \(B, 1, 8, 8\)"):
        ldm.encode(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"latents z must have shape \(B, 4, 4, 4\)"):
        ldm.decode(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="labels must"):
        ldm.sample(
            torch.tensor([0, 7]), guidance_scale=1.0, steps=2, sampler=samplers.ddim
        )
    with pytest.raises(ValueError, match="divisible"):
        LatentDiffusion(ldm.autoencoder, ldm.denoiser, ldm.schedule, image_size=9)
    with pytest.raises(TypeError, match="LatentDiffusion"):
        latent_diffusion.save_checkpoint(ldm.denoiser, "unused.safetensors")
