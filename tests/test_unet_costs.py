"""oldschool.unet_costs: traced FLOPs against closed forms, levels, parameter tally."""

import torch

from oldschool import unet, unet_costs
from oldschool.unet_config import tiny_config


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_traced_attention_flops_equal_the_closed_forms():
    config = tiny_config(
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
    # a conv at level L writes an H / 2^L map: catches resamplers booked a level off
    config = tiny_config(
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


def attention_flops_hold():
    """ch7-flops: traced FLOPs at level 0 = the closed forms (a tiny SD 1.5 layout)."""
    config = tiny_config(
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
