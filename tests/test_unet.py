"""oldschool.unet: published models' totals, diffusers as a peer, loading, the door."""

from dataclasses import replace

import pytest
import torch

from oldschool import checkpoints, unet, unet_config
from oldschool.unet_config import tiny_config

# test-only dependency: the peer implementation
diffusers = pytest.importorskip("diffusers")


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def relative_error(ours, theirs):
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


def test_parameter_totals_equal_the_published_models():
    with torch.device("meta"):
        sd15, sdxl = unet.sd15_unet(), unet.sdxl_unet()
    assert n_params(sd15) == 859_520_964
    assert n_params(sdxl) == 2_567_463_684
    assert all(p.is_meta for p in sdxl.parameters())


def test_presets_equal_diffusers_built_from_the_same_config():
    for config in (unet_config.SD15_CONFIG, unet_config.SDXL_CONFIG):
        with torch.device("meta"):
            theirs = diffusers.UNet2DConditionModel(**unet_config.config_dict(config))
            ours = unet.UNet2DCondition(config)
        renamed = {
            checkpoints.rename_key(k, unet.DIFFUSERS_KEY_MAP): tuple(v.shape)
            for k, v in theirs.state_dict().items()
        }
        assert renamed == {k: tuple(v.shape) for k, v in ours.state_dict().items()}


PEER_CONFIGS = {
    "sd15-like": tiny_config(
        channels=(32, 64, 64), layers_per_block=2, heads=4, cross_attention_dim=24
    ),
    "sdxl-like": replace(
        tiny_config(
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
    theirs = diffusers.UNet2DConditionModel(**unet_config.config_dict(config)).eval()
    with (
        torch.no_grad()
    ):  # diffusers zero-inits nothing here, but perturb every weight to be sure
        for p in theirs.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ours = unet.load_diffusers_state_dict(
        unet.UNet2DCondition(config), theirs.state_dict()
    ).eval()
    assert unet_config.UNetConfig.from_diffusers(theirs.config) == config

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


def test_loader_names_missing_unexpected_and_mismatched_keys():
    config = tiny_config()
    state = {
        k: v.clone()
        for k, v in diffusers.UNet2DConditionModel(**unet_config.config_dict(config))
        .state_dict()
        .items()
    }
    ours = unet.UNet2DCondition(config)
    missing = dict(state)
    del missing["conv_in.weight"]
    with pytest.raises(ValueError, match=r"missing \(1\): conv_in.weight"):
        unet.load_diffusers_state_dict(ours, missing)
    block = "down_blocks.0.attentions.0.transformer_blocks.0"
    extra = {**state, f"{block}.attn3.to_q.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=rf"unexpected \(1\): {block}.attn3"):
        unet.load_diffusers_state_dict(ours, extra)
    wrong = {**state, f"{block}.attn2.to_k.weight": torch.zeros(32, 7)}
    with pytest.raises(
        ValueError,
        match=r"shape mismatch \(1\): .*attn2.to_k.weight \(32, 7\) "
        r"-> .*cross_attn.to_k.weight",
    ):
        unet.load_diffusers_state_dict(ours, wrong)


def test_loading_into_a_meta_model_assigns_the_tensors():
    config = tiny_config()
    state = diffusers.UNet2DConditionModel(
        **unet_config.config_dict(config)
    ).state_dict()
    with torch.device("meta"):
        ours = unet.UNet2DCondition(config)
    unet.load_diffusers_state_dict(ours, state)
    assert not any(p.is_meta for p in ours.parameters())
    assert torch.equal(ours.conv_in.weight, state["conv_in.weight"])


def test_forward_refuses_bad_inputs():
    model = unet.tiny_unet()  # 3 levels: H, W must be divisible by 4
    context = torch.zeros(1, 2, 32)
    with pytest.raises(ValueError, match="divisible by the downsampling factor 4"):
        model(torch.zeros(1, 1, 10, 8), 0, context)
    with pytest.raises(ValueError, match=r"sample must have shape \(B, 1, H, W\)"):
        model(torch.zeros(1, 3, 8, 8), 0, context)
    with pytest.raises(ValueError, match=r"context must have shape \(1, M, 32\)"):
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
