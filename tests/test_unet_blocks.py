"""oldschool.unet_blocks: attention and the ResBlock's time embedding, by hand."""

import torch

from oldschool.unet_blocks import Attention, ResBlock


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
