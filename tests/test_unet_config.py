"""oldschool.unet_config: diffusers' settings carry over; the rest is refused."""

import pytest

from oldschool.unet_config import UNetConfig, config_dict, tiny_config


def test_from_diffusers_refuses_what_is_not_built():
    with pytest.raises(ValueError, match="class_embed_type"):
        UNetConfig.from_diffusers(
            {**config_dict(tiny_config()), "class_embed_type": "timestep"}
        )
    with pytest.raises(ValueError, match="unsupported block types"):
        UNetConfig(down_block_types=("SimpleCrossAttnDownBlock2D",) * 4)


def test_config_refuses_inconsistent_levels():
    with pytest.raises(ValueError, match="not divisible by norm_num_groups 8"):
        tiny_config(channels=(12, 16, 16))
    with pytest.raises(ValueError, match="num_attention_heads has 2 entries for 3"):
        tiny_config(heads=(2, 4))
    with pytest.raises(ValueError, match="needs addition_time_embed_dim"):
        UNetConfig(addition_embed_type="text_time")


def test_config_round_trips_through_diffusers_names():
    for config in (tiny_config(), tiny_config(text_time=True), UNetConfig()):
        assert UNetConfig.from_diffusers(config_dict(config)) == config
    assert UNetConfig().temb_channels == 4 * 320
