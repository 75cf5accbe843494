"""A sample of chapter 4's and chapter 7's checks, fed deliberately broken input: each must fail.

Every helper below repeats the condition of one `assert` of a chapter (named by its label,
see book/checks.md) on inputs the test chooses. Each test runs the check once on the right
input, where it must pass, and once on a broken one (a dropped factor, a flipped sign, an
untrained model, a label that leaks), where it must fail. A check that passed on the broken
input would be an illustration, not a check.
"""

import math

import pytest
import sympy as sp
import torch

from oldschool import data, denoising, gaussians, guidance, symbolic, unet, unet_costs
from oldschool import sde as sde_lib
from oldschool.sde import append_dims

VP = sde_lib.VPSDE()


# ---- chapter 4 ----------------------------------------------------------------------------


def elbo_term_holds(weight):
    """ch4-elbo: the KL of one denoising step equals weight(SNR_s, SNR_t) * ||x0 - x0_hat||^2."""
    post_mean, post_var, _, (x_s, x_t_, x0_, x0_hat_, a_s, s_s, a_t, s_t) = (
        symbolic.diffusion_step_kl()
    )
    mean_fn = sp.lambdify((x_t_, x0_, a_s, s_s, a_t, s_t), post_mean)
    var_fn = sp.lambdify((a_s, s_s, a_t, s_t), post_var)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(256, 2, generator=g, dtype=torch.float64)
    s_b, t_b = (
        torch.full((256,), 0.2, dtype=torch.float64),
        torch.full((256,), 0.25, dtype=torch.float64),
    )
    coeffs = [
        append_dims(c, 2)
        for c in (VP.alpha(s_b), VP.sigma(s_b), VP.alpha(t_b), VP.sigma(t_b))
    ]
    x_t, _ = VP.perturb(x0, t_b, generator=g)
    x0_hat = x0 + 0.1 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    logvar = var_fn(*coeffs).log().expand_as(x0)
    kl = gaussians.kl_diagonal(
        mean_fn(x_t, x0, *coeffs), logvar, mean_fn(x_t, x0_hat, *coeffs), logvar
    )
    weighted_se = weight(VP.snr(s_b), VP.snr(t_b)) * (x0 - x0_hat).pow(2).sum(1)
    return torch.allclose(kl, weighted_se, rtol=1e-8, atol=1e-12)


def test_ch4_elbo_check_fails_on_a_dropped_half_and_a_flipped_sign():
    assert elbo_term_holds(lambda snr_s, snr_t: 0.5 * (snr_s - snr_t))
    assert not elbo_term_holds(lambda snr_s, snr_t: snr_s - snr_t)  # the 1/2 dropped
    assert not elbo_term_holds(
        lambda snr_s, snr_t: 0.5 * (snr_t - snr_s)
    )  # sign flipped


# ---- chapter 7 ----------------------------------------------------------------------------


def attention_flops_hold():
    """ch7-flops: traced FLOPs at level 0 = the closed forms (a tiny U-Net, as the SD 1.5 cell)."""
    config = unet.tiny_config(
        channels=(32, 64, 64), layers_per_block=2, cross_attention_dim=24
    )
    with torch.device("meta"):
        model = unet.UNet2DCondition(config)
    flops = unet_costs.tally(unet_costs.trace(model, (1, 1, 16, 16), (1, 5, 24))[0])
    n, c, m, d, blocks = 16 * 16, 32, 5, 24, 2 + 3
    return flops[0, "self-attention"] == blocks * (
        8 * n * c**2 + 4 * n**2 * c
    ) and flops[0, "cross-attention"] == blocks * (
        4 * n * c**2 + 4 * m * d * c + 4 * n * m * c
    )


def test_ch7_flops_check_fails_when_a_multiply_add_counts_once(monkeypatch):
    assert attention_flops_hold()
    counted = unet_costs._flops

    def linear_counted_once(module, inputs, output):
        flops = counted(module, inputs, output)
        return flops // 2 if isinstance(module, torch.nn.Linear) else flops

    monkeypatch.setattr(unet_costs, "_flops", linear_counted_once)
    assert not attention_flops_hold()


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
    """ch7-train: eps-MSE below the zero prediction's (E[eps^2]) by > 5 standard errors."""
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
