"""A sample of chapter 3's checks, shown failing on deliberately broken input.

Each test runs the same comparison a chapter cell asserts (see book/checks.md), once on the
correct input, where it passes, and once on input with one thing broken (a dropped factor,
a flipped sign, an untrained model), where it must fail. A check that passes both ways would
not be a check.
"""

import math

import torch

from oldschool import gaussians, latents, perceptual

# Chapters 1 and 2's checks and chapter 3's seed claim live with the modules they use:
# tests/test_estimators.py, test_autoencoders.py, test_seeds.py, test_symbolic.py.

# ch3 -------------------------------------------------------------------------------------


def test_ch3_laplace_check_fails_without_the_log_scale_term():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    x_hat = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    q = gaussians.DiagonalGaussian(
        torch.randn(4, 4, 2, 2, generator=g), torch.randn(4, 4, 2, 2, generator=g)
    )
    _, parts = perceptual.KLAutoencoderLoss(
        None, perceptual_weight=0.0, logvar_init=-1.3
    )(x, x_hat, q)
    b, D = math.exp(-1.3), x[0].numel()
    laplace = (
        -torch.distributions.Laplace(x_hat, b).log_prob(x).flatten(1).sum(1)
        - D * math.log(2)
    ).mean()
    no_log_b = (
        ((x - x_hat).abs() / b).flatten(1).sum(1).mean()
    )  # the "+ s" term dropped
    assert torch.allclose(parts["nll"], laplace, rtol=1e-5)
    assert not torch.allclose(no_log_b, laplace, rtol=1e-5)


def test_ch3_forward_variance_check_fails_without_the_square_root():
    z = 5.0 * torch.randn(200_000, generator=torch.Generator().manual_seed(5))
    eps = torch.randn(200_000, generator=torch.Generator().manual_seed(6))
    a_T = 0.0047
    x = z.double()
    for coefficient, ok in ((math.sqrt(a_T), True), (a_T, False)):
        x = (coefficient * z + math.sqrt(1 - a_T) * eps).double()
        se = math.sqrt(((x - x.mean()).pow(4).mean() - x.var() ** 2).item() / x.numel())
        assert (abs(x.var().item() - (a_T * z.var().item() + 1 - a_T)) < 4 * se) == ok


def test_ch3_patch_check_fails_with_the_wrong_token_order():
    z = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(7))
    conv = torch.nn.Conv2d(16, 32, kernel_size=2, stride=2)
    by_conv = conv(z).flatten(2).transpose(1, 2)
    tokens = latents.pack_latents(z)
    linear = latents.patch_conv_as_linear(conv)
    assert torch.allclose(by_conv, linear(tokens), atol=1e-5)
    swapped = (
        tokens.view(1, 16, 16, 2, 2).transpose(-1, -2).reshape(1, 16, 64)
    )  # dy <-> dx
    assert not torch.allclose(by_conv, linear(swapped), atol=1e-5)
