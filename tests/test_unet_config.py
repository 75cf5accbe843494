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
