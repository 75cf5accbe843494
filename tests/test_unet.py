"""oldschool.unet / unet_blocks / unet_costs / guidance: totals, a diffusers peer check, costs, guidance."""

import math
from dataclasses import replace

import pytest
import torch

from oldschool import guidance, unet, unet_costs
from oldschool.sde import DiscreteVP
from oldschool.unet_blocks import Attention, ResBlock

diffusers = pytest.importorskip(
    "diffusers"
)  # test-only dependency: the peer implementation


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def relative_error(ours, theirs):
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


# ---- the published models, on the meta device ------------------------------------------------


def test_parameter_totals_equal_the_published_models():
    with torch.device("meta"):
        sd15, sdxl = unet.sd15_unet(), unet.sdxl_unet()
    assert n_params(sd15) == 859_520_964
    assert n_params(sdxl) == 2_567_463_684
    assert all(p.is_meta for p in sdxl.parameters())


def test_presets_equal_diffusers_built_from_the_same_config():
    for config in (unet.SD15_CONFIG, unet.SDXL_CONFIG):
        with torch.device("meta"):
            theirs = diffusers.UNet2DConditionModel(**unet.config_dict(config))
            ours = unet.UNet2DCondition(config)
        renamed = {
            unet.diffusers_to_ours(k): tuple(v.shape)
            for k, v in theirs.state_dict().items()
        }
        assert renamed == {k: tuple(v.shape) for k, v in ours.state_dict().items()}


# ---- same weights, same output as diffusers -----------------------------------------------------

PEER_CONFIGS = {
    "sd15-like": unet.tiny_config(
        channels=(32, 64, 64), layers_per_block=2, heads=4, cross_attention_dim=24
    ),
    "sdxl-like": replace(
        unet.tiny_config(
            channels=(32, 64, 64),
            layers_per_block=2,
            cross_attention_dim=24,
            text_time=True,
        ),
        down_block_types=(
            "DownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
        ),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 3),
        attention_head_dim=(2, 4, 8),
        use_linear_projection=True,
    ),
}


@pytest.mark.parametrize("name", sorted(PEER_CONFIGS))
def test_same_weights_same_output_as_diffusers(name):
    config = PEER_CONFIGS[name]
    torch.manual_seed(0)
    theirs = diffusers.UNet2DConditionModel(**unet.config_dict(config)).eval()
    with (
        torch.no_grad()
    ):  # diffusers zero-inits nothing here, but perturb every weight to be sure
        for p in theirs.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ours = unet.load_diffusers_state_dict(
        unet.UNet2DCondition(config), theirs.state_dict()
    ).eval()
    assert unet.UNetConfig.from_diffusers(theirs.config) == config

    g = torch.Generator().manual_seed(1)
    sample = torch.randn(2, 1, 8, 8, generator=g)
    timestep = torch.tensor([3.0, 741.0])
    context = torch.randn(2, 5, config.cross_attention_dim, generator=g)
    added = {}
    if config.addition_embed_type == "text_time":
        added = dict(
            text_embeds=torch.randn(2, config.cross_attention_dim, generator=g),
            time_ids=torch.tensor(
                [[16.0, 16.0, 0.0, 0.0, 16.0, 16.0], [32.0, 24.0, 4.0, 2.0, 16.0, 16.0]]
            ),
        )
    with torch.no_grad():
        expected = theirs(
            sample, timestep, context, added_cond_kwargs=added or None
        ).sample
        got = ours(sample, timestep, context, **added)
    assert got.shape == expected.shape == sample.shape
    assert relative_error(got, expected) <= 1e-5
    with torch.no_grad():  # a scalar timestep is broadcast over the batch
        assert torch.allclose(
            ours(sample, 10, context, **added),
            ours(sample, torch.tensor([10.0, 10.0]), context, **added),
        )


def test_timestep_features_match_diffusers_get_timestep_embedding():
    from diffusers.models.embeddings import get_timestep_embedding

    model = unet.tiny_unet(channels=(32, 64, 64))
    t = torch.tensor([0.0, 1.0, 17.0, 500.0, 999.0])
    expected = get_timestep_embedding(
        t, 32, flip_sin_to_cos=True, downscale_freq_shift=0
    )
    assert torch.allclose(model.time_features(t), expected, atol=1e-6)
    # [cos, sin] halves with frequencies 10000^(-k/16), k = 0..15
    omega = 10_000.0 ** (-torch.arange(16) / 16)
    assert torch.allclose(
        model.time_features(t),
        torch.cat([torch.cos(t[:, None] * omega), torch.sin(t[:, None] * omega)], 1),
        atol=1e-5,
    )


# ---- loading: clear errors ------------------------------------------------------------------------


def test_loader_names_missing_unexpected_and_mismatched_keys():
    config = unet.tiny_config()
    state = {
        k: v.clone()
        for k, v in diffusers.UNet2DConditionModel(**unet.config_dict(config))
        .state_dict()
        .items()
    }
    ours = unet.UNet2DCondition(config)
    missing = dict(state)
    del missing["conv_in.weight"]
    with pytest.raises(ValueError, match=r"missing \(1\): conv_in.weight"):
        unet.load_diffusers_state_dict(ours, missing)
    extra = {
        **state,
        "down_blocks.0.attentions.0.transformer_blocks.0.attn3.to_q.weight": torch.zeros(
            1
        ),
    }
    with pytest.raises(
        ValueError,
        match=r"unexpected \(1\): down_blocks.0.attentions.0.transformer_blocks.0.attn3",
    ):
        unet.load_diffusers_state_dict(ours, extra)
    wrong = {
        **state,
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": torch.zeros(
            32, 7
        ),
    }
    with pytest.raises(
        ValueError,
        match=r"shape mismatch \(1\): .*attn2.to_k.weight \(32, 7\) -> .*cross_attn.to_k.weight",
    ):
        unet.load_diffusers_state_dict(ours, wrong)


def test_loading_into_a_meta_model_assigns_the_tensors():
    config = unet.tiny_config()
    state = diffusers.UNet2DConditionModel(**unet.config_dict(config)).state_dict()
    with torch.device("meta"):
        ours = unet.UNet2DCondition(config)
    unet.load_diffusers_state_dict(ours, state)
    assert not any(p.is_meta for p in ours.parameters())
    assert torch.equal(ours.conv_in.weight, state["conv_in.weight"])


def test_from_diffusers_refuses_what_is_not_built():
    with pytest.raises(ValueError, match="class_embed_type"):
        unet.UNetConfig.from_diffusers(
            {**unet.config_dict(unet.tiny_config()), "class_embed_type": "timestep"}
        )
    with pytest.raises(ValueError, match="unsupported block types"):
        unet.UNetConfig(down_block_types=("SimpleCrossAttnDownBlock2D",) * 4)


# ---- inputs are checked at the boundary --------------------------------------------------------------


def test_forward_refuses_bad_inputs():
    model = unet.tiny_unet()  # 3 levels: H, W must be divisible by 4
    context = torch.zeros(1, 2, 32)
    with pytest.raises(ValueError, match="divisible by the downsampling factor 4"):
        model(torch.zeros(1, 1, 10, 8), 0, context)
    with pytest.raises(ValueError, match="sample must be"):
        model(torch.zeros(1, 3, 8, 8), 0, context)
    with pytest.raises(ValueError, match="context must be"):
        model(torch.zeros(1, 1, 8, 8), 0, torch.zeros(1, 2, 16))
    with pytest.raises(ValueError, match="timestep must be"):
        model(torch.zeros(2, 1, 8, 8), torch.zeros(3), torch.zeros(2, 2, 32))
    with pytest.raises(ValueError, match="no added conditioning"):
        model(
            torch.zeros(1, 1, 8, 8),
            0,
            context,
            text_embeds=torch.zeros(1, 32),
            time_ids=torch.zeros(1, 6),
        )
    sdxl_like = unet.tiny_unet(text_time=True)
    with pytest.raises(ValueError, match="needs text_embeds and time_ids"):
        sdxl_like(torch.zeros(1, 1, 8, 8), 0, context)


# ---- blocks ---------------------------------------------------------------------------------------------


def test_attention_weights_are_what_forward_uses():
    torch.manual_seed(0)
    attn = Attention(16, heads=4, head_dim=8, context_dim=12)
    x, context = torch.randn(2, 9, 16), torch.randn(2, 3, 12)
    w = attn.weights(x, context)  # (B, h, N, M)
    assert w.shape == (2, 4, 9, 3) and torch.allclose(w.sum(-1), torch.ones(2, 4, 9))
    v = attn.to_v(context).view(2, 3, 4, 8).transpose(1, 2)  # (B, h, M, d)
    by_hand = attn.to_out((w @ v).transpose(1, 2).reshape(2, 9, 32))
    assert torch.allclose(attn(x, context), by_hand, atol=1e-5)


def test_resblock_adds_the_time_embedding_as_a_per_channel_constant():
    torch.manual_seed(0)
    block = ResBlock(8, 16, temb_channels=12, groups=4, eps=1e-5)
    seen = []  # what norm2 receives: h = conv1(...) + the projected time embedding
    block.norm2.register_forward_hook(
        lambda module, inputs, output: seen.append(inputs[0])
    )
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        block(x, torch.randn(1, 12))
        block(x, torch.randn(1, 12))
    difference = seen[0] - seen[1]  # (1, 16, 6, 6): only the timestep changed
    assert (
        difference.flatten(2).std(-1).max() < 1e-5
    )  # the same at every pixel of a channel
    assert difference.abs().max() > 1e-3


# ---- costs -----------------------------------------------------------------------------------------------


def test_traced_attention_flops_equal_the_closed_forms():
    config = unet.tiny_config(
        channels=(32, 64, 64), layers_per_block=2, cross_attention_dim=24
    )
    with torch.device("meta"):
        model = unet.UNet2DCondition(config)
    calls, blocks = unet_costs.trace(model, (1, 1, 16, 16), (1, 5, 24))
    flops = unet_costs.tally(calls)
    n, c, m, d = 16 * 16, 32, 5, 24
    transformers = 2 + 3  # level 0: two on the way down, three on the way up
    assert flops[0, "self-attention"] == transformers * (8 * n * c**2 + 4 * n**2 * c)
    assert flops[0, "cross-attention"] == transformers * (
        4 * n * c**2 + 4 * m * d * c + 4 * n * m * c
    )
    assert flops[0, "feed-forward"] == transformers * 24 * n * c**2
    conv_in = next(call for call in calls if call["name"] == "conv_in")
    assert conv_in["flops"] == 2 * n * c * 1 * 9
    assert blocks[-1]["out_shape"][1:] == (32, 16, 16)
    assert sum(b["params"] for b in blocks) <= n_params(model)


def test_every_conv_is_booked_at_the_level_of_the_map_it_writes():
    # a conv at level L writes an H / 2^L map; catches resamplers booked at the wrong level
    config = unet.tiny_config(
        channels=(16, 32, 32), layers_per_block=1, cross_attention_dim=8
    )
    with torch.device("meta"):
        model = unet.UNet2DCondition(config)
    calls, blocks = unet_costs.trace(model, (1, 1, 16, 16), (1, 3, 8))
    convs = [c for c in calls if len(c["out_shape"]) == 4 and c["level"] != "time"]
    assert any("downsample" in c["name"] for c in convs) and any(
        "upsample" in c["name"] for c in convs
    )
    for call in convs:
        assert call["out_shape"][-1] == 16 >> call["level"], (
            call["name"],
            call["level"],
            call["out_shape"],
        )
    for block in blocks:
        assert block["out_shape"][-1] == 16 >> block["level"], (
            block["name"],
            block["level"],
        )
    tally = unet_costs.parameter_tally(model)
    down = (
        model.down_blocks[0].downsample.conv.weight.numel()
        + model.down_blocks[0].downsample.conv.bias.numel()
    )
    assert unet_costs.level_of("down_blocks.0.downsample.conv.weight", 3) == 1
    assert unet_costs.level_of("up_blocks.1.upsample.conv.weight", 3) == 0
    assert unet_costs.level_of("up_blocks.1.resnets.0.conv1.weight", 3) == 1
    assert tally[1, "conv"] >= down


def test_conv_linear_flops_of_any_network():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 5, 3, padding=1),
        torch.nn.Flatten(),
        torch.nn.Linear(5 * 4 * 4, 7),
    )
    x = torch.zeros(2, 3, 4, 4)
    assert (
        unet_costs.conv_linear_flops(net, lambda: net(x))
        == 2 * 16 * 5 * 3 * 9 + 2 * 80 * 7
    )  # per sample


def test_parameter_tally_covers_every_parameter():
    with torch.device("meta"):
        model = unet.sdxl_unet()
    tally = unet_costs.parameter_tally(model)
    assert sum(tally.values()) == n_params(model)
    assert (
        tally.get((0, "self-attention"), 0) == 0
    )  # SDXL has no attention at its highest resolution
    assert set(kind for _, kind in tally) <= set(unet_costs.KINDS)


def test_cross_attention_maps_have_one_map_per_block_summing_to_one():
    model = unet.tiny_unet(channels=(16, 32, 32), groups=8)
    context = torch.randn(2, 3, 32)
    maps = unet.cross_attention_maps(model, torch.randn(2, 1, 8, 8), 5, context)
    assert len(maps) == 2 + 1 + 2 * 2  # down levels 0-1, mid, up levels 1-0 (two each)
    shapes = {name: tuple(w.shape) for name, w in maps.items()}
    assert shapes["down_blocks.0.attentions.0.blocks.0.cross_attn"] == (2, 4, 8, 8, 3)
    assert shapes["mid_block.attentions.0.blocks.0.cross_attn"] == (2, 4, 2, 2, 3)
    for w in maps.values():
        assert torch.allclose(w.sum(-1), torch.ones(w.shape[:-1]), atol=1e-5)


# ---- classifier-free guidance -------------------------------------------------------------------


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
