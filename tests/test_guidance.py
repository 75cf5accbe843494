"""oldschool.guidance: the label's way in, classifier-free guidance, chapter 7's checks.

The ``ch7-*`` helpers repeat the condition of one ``assert`` of chapter 7 (named by its
label, see book/checks.md) on inputs the test chooses: each must pass on the right input
and fail on a broken one (an untrained model, a label that leaks).
"""

import math

import pytest
import torch

from oldschool import config, data, denoising, guidance, unet
from oldschool import sde as sde_lib
from oldschool.sde import DiscreteVP, append_dims


def make_guided_model():
    torch.manual_seed(0)
    return guidance.ClassConditionalUNet(
        unet.tiny_unet(channels=(16, 32, 32), groups=8), num_classes=10
    ).eval()


def test_class_conditional_unet_sees_sd_timestep_index_of_the_noise_level():
    # t = (i + 1) / 1000 has the noise level of diffusers' index i: the U-Net must see i
    schedule = DiscreteVP.stable_diffusion()
    model = guidance.ClassConditionalUNet(
        unet.tiny_unet(channels=(16, 32, 32), groups=8), num_classes=10
    )
    seen = []
    model.unet.time_features = lambda t, inner=model.unet.time_features: (
        seen.append(t.clone()) or inner(t)
    )
    index = torch.tensor([0, 199, 999])
    t = schedule.t_of_index(index + 1).double()
    with torch.no_grad():
        model(torch.zeros(3, 1, 8, 8), t.float(), torch.tensor([1, 2, 3]))
    assert torch.allclose(seen[0].double().flatten(), index.double(), atol=1e-3)
    assert torch.allclose(schedule.alpha(t) ** 2, schedule.alpha_bar[index], rtol=1e-9)


def test_guidance_scale_interpolates_between_unconditional_and_conditional():
    model = make_guided_model()
    x, t, labels = (
        torch.randn(4, 1, 8, 8),
        torch.full((4,), 0.3),
        torch.tensor([0, 3, 7, 9]),
    )
    with torch.no_grad():
        conditional = model(x, t, labels)
        unconditional = model(x, t, torch.full_like(labels, model.null_label))
        assert torch.allclose(
            guidance.guided_eps(model, labels, 1.0)(x, t), conditional, atol=1e-5
        )
        assert torch.allclose(
            guidance.guided_eps(model, labels, 0.0)(x, t), unconditional, atol=1e-5
        )
        w3 = guidance.guided_eps(model, labels, 3.0)(x, t)
    assert torch.allclose(
        w3, unconditional + 3.0 * (conditional - unconditional), atol=1e-4
    )


def test_label_dropout_and_the_loss():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (20_000,), generator=g)
    dropped = guidance.drop_labels(labels, 0.1, 10, generator=g)
    fraction = (dropped == 10).float().mean().item()
    assert abs(fraction - 0.1) < 4 * math.sqrt(0.1 * 0.9 / 20_000)
    assert torch.equal(dropped[dropped != 10], labels[dropped != 10])
    model = make_guided_model()
    from oldschool.sde import DiscreteVP

    loss, parts = guidance.cfg_loss(
        model,
        (torch.randn(8, 1, 8, 8), labels[:8]),
        DiscreteVP.stable_diffusion(),
        generator=g,
    )
    assert loss.ndim == 0 and loss.requires_grad and {"mse_eps", "p_null"} <= set(parts)
    with pytest.raises(ValueError, match="labels must lie in 0..10"):
        model(torch.zeros(1, 1, 8, 8), torch.zeros(1), torch.tensor([11]))
    with pytest.raises(ValueError, match="p_uncond"):
        guidance.drop_labels(labels, 1.5, 10)


def match_se(hits):
    k, n = hits.sum().item(), hits.numel()
    p = (k + 1) / (n + 2)
    return math.sqrt(p * (1 - p) / n)


def at_chance(hits):
    """ch7-cfg: at w = 0 the match rate is chance (1/10) within 3 standard errors."""
    return abs(hits.mean().item() - 0.1) < 3 * match_se(hits)


def test_ch7_chance_check_fails_when_the_label_leaks_at_w0():
    g = torch.Generator().manual_seed(0)
    ignored = (
        torch.rand(3, 60, generator=g) < 0.1
    ).float()  # w = 0 truly ignores the label
    leaking = (
        torch.rand(3, 60, generator=g) < 0.4
    ).float()  # 40% match: the label leaks
    assert at_chance(ignored)
    assert not at_chance(leaking)
    assert (
        leaking.mean() < 0.5
    )  # the chapter's old check, acc[0] < 0.5, let this leak through


def guidance_helps(hits_w1, hits_best):
    """ch7-cfg: guidance beyond w = 1 raises the match rate by > 3 standard errors."""
    gain = hits_best.mean().item() - hits_w1.mean().item()
    return gain > 3 * math.hypot(match_se(hits_w1), match_se(hits_best))


def test_ch7_guidance_check_fails_when_guidance_does_nothing():
    g = torch.Generator().manual_seed(1)
    hits_w1 = (torch.rand(3, 60, generator=g) < 0.85).float()
    assert guidance_helps(hits_w1, torch.ones(3, 60))
    assert not guidance_helps(hits_w1, (torch.rand(3, 60, generator=g) < 0.85).float())


def tiny_conditional_unet(seed):
    torch.manual_seed(seed)
    return guidance.ClassConditionalUNet(
        unet.tiny_unet(channels=(16, 32, 32), groups=8), num_classes=10
    )


def beats_zero_prediction(model, batches=8):
    """ch7-train: eps-MSE below the zero prediction's (E[eps^2]) by > 5 std. errors."""
    images, labels = data.digits(return_labels=True)
    schedule = sde_lib.DiscreteVP.stable_diffusion()
    mse = {"model": [], "zero": []}
    with torch.no_grad():
        for k, (x0, y) in enumerate(
            zip(images[:256].chunk(batches), labels[:256].chunk(batches))
        ):
            for name, eps_model in (
                ("model", lambda x_t, t: model(x_t, t, y)),
                ("zero", lambda x_t, t: 0 * x_t),
            ):
                g = torch.Generator().manual_seed(100 + k)
                mse[name].append(
                    denoising.dsm_loss(eps_model, x0, schedule, generator=g)[0].item()
                )
    gain = torch.tensor(mse["zero"]) - torch.tensor(mse["model"])
    return bool(gain.mean() > 5 * gain.std() / math.sqrt(len(gain)))


@pytest.mark.parametrize("seed", [0, 1])
def test_ch7_training_check_fails_for_an_untrained_model(seed):
    assert not beats_zero_prediction(tiny_conditional_unet(seed))


def test_ch7_training_check_passes_for_a_denoiser_that_reads_x_t():
    schedule = sde_lib.DiscreteVP.stable_diffusion()
    images = data.digits()
    mean, var = images.mean(0), images.var(0)

    def linear_denoiser(
        x_t, t, labels
    ):  # the best eps-prediction for a per-pixel Gaussian fit
        a, s = append_dims(schedule.alpha(t), 4), append_dims(schedule.sigma(t), 4)
        return s * (x_t - a * mean) / (a**2 * var + s**2)

    assert beats_zero_prediction(linear_denoiser)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ch7_attention_split_check_fails_for_an_untrained_model(seed):
    images, labels = data.digits(return_labels=True)
    schedule = sde_lib.DiscreteVP.stable_diffusion()
    net = tiny_conditional_unet(seed)
    g = torch.Generator().manual_seed(3)
    per_block = {}
    for digit in range(10):
        x0 = images[labels == digit][:16]
        x_t, _ = schedule.perturb(x0, torch.full((len(x0),), 0.5), generator=g)
        context = net.tokens(torch.full((len(x0),), digit))
        for name, w in unet.cross_attention_maps(
            net.unet, x_t, net.timestep(0.5), context
        ).items():
            per_block.setdefault(name, []).append(w[..., 1].mean().item())
    fine = [
        n for n in per_block if n.startswith(("down_blocks.0", "up_blocks.2"))
    ]  # the 8x8 blocks
    coarse = [n for n in per_block if n not in fine]
    split = torch.tensor([per_block[n] for n in coarse]).mean(0) - torch.tensor(
        [per_block[n] for n in fine]
    ).mean(0)  # (10,) per digit
    assert not split.mean() > 3 * split.std() / math.sqrt(
        10
    )  # ch7-attention's assert fails


def test_the_chapter_7_builder_follows_its_settings():
    for mode in ("cpu", "gpu"):
        S = config.settings("ch7", mode, capped_run=False)
        model = guidance.class_conditional_unet(S)
        cfg = model.unet.config
        assert cfg.block_out_channels == S.channels
        assert cfg.layers_per_block == S.layers_per_block
        assert cfg.heads() == (S.heads,) * len(S.channels)
        assert cfg.cross_attention_dim == S.context_dim == model.tokens.start.shape[-1]
        assert cfg.norm_num_groups == S.groups and model.null_label == 10


def test_labels_are_checked_once_at_the_door():
    model = make_guided_model()
    x, t = torch.zeros(2, 1, 8, 8), torch.full((2,), 0.5)
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        model(x, t, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="labels must be a long tensor"):
        model(x, t, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="labels must lie in 0..10"):
        guidance.guided_eps(model, torch.tensor([-1, 2]), 2.0)
