"""oldschool.conv_blocks: the shared Downsample and Upsample, against diffusers'."""

import pytest
import torch

from oldschool.conv_blocks import Downsample, Upsample


def _copy(ours, theirs):
    """ours with theirs' weights, under the same names (conv.weight, conv.bias)."""
    state = {k: v for k, v in theirs.state_dict().items() if k.startswith("conv.")}
    ours.load_state_dict(state)  # strict: every one of ours is given
    return ours


@pytest.mark.parametrize("pad_bottom_right, padding", [(False, 1), (True, 0)])
def test_downsample_is_diffusers_downsample2d(pad_bottom_right, padding):
    diffusers = pytest.importorskip("diffusers.models.downsampling")
    torch.manual_seed(0)
    theirs = diffusers.Downsample2D(8, use_conv=True, padding=padding, name="conv")
    ours = _copy(Downsample(8, pad_bottom_right=pad_bottom_right), theirs)
    x = torch.randn(2, 8, 10, 12)
    with torch.no_grad():
        out = ours(x)
        assert out.shape == (2, 8, 5, 6)
        assert torch.allclose(out, theirs(x), atol=1e-6)


def test_the_two_paddings_differ():
    """Same weights, one pixel of padding moved: the outputs are not the same."""
    torch.manual_seed(0)
    same = Downsample(4)
    corner = _copy(Downsample(4, pad_bottom_right=True), same)
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        assert same(x).shape == corner(x).shape == (1, 4, 4, 4)
        assert not torch.allclose(same(x), corner(x))


def test_upsample_is_diffusers_upsample2d():
    diffusers = pytest.importorskip("diffusers.models.upsampling")
    torch.manual_seed(0)
    theirs = diffusers.Upsample2D(8, use_conv=True)
    ours = _copy(Upsample(8), theirs)
    x = torch.randn(2, 8, 5, 6)
    with torch.no_grad():
        out = ours(x)
        assert out.shape == (2, 8, 10, 12)
        assert torch.allclose(out, theirs(x), atol=1e-6)
