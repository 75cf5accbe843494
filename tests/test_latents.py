"""oldschool.latents: FLUX packing is a bijection in FLUX's order; SD3's patch conv = pack + linear."""

import ast
from pathlib import Path

import pytest
import math

import torch

from oldschool import latents


def test_pack_unpack_are_exact_inverses():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 16, 6, 10, generator=g)
    tokens = latents.pack_latents(z)
    assert tokens.shape == (3, 3 * 5, 64)
    assert torch.equal(latents.unpack_latents(tokens, 6, 10), z)
    t = torch.randn(2, 12, 8, generator=g)
    assert torch.equal(latents.pack_latents(latents.unpack_latents(t, 6, 8)), t)


def test_packing_is_a_permutation_of_the_elements():
    z = torch.arange(2 * 4 * 4 * 6, dtype=torch.float64).view(2, 4, 4, 6)
    tokens = latents.pack_latents(z)
    assert torch.equal(tokens.flatten().sort().values, z.flatten().sort().values)
    # token (i, j) = (1, 2) holds channel c's patch rows 2..3, columns 4..5 at c * 4 + 2 * dy + dx
    token = tokens[1, 1 * 3 + 2]
    for c in range(4):
        assert torch.equal(token[4 * c : 4 * c + 4], z[1, c, 2:4, 4:6].flatten())


def _flux_pipeline_function(name):
    """diffusers' own ``FluxPipeline.<name>``, read from its source (importing the pipeline needs transformers)."""
    diffusers = pytest.importorskip("diffusers")
    path = Path(diffusers.__file__).parent / "pipelines" / "flux" / "pipeline_flux.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            node.decorator_list = []  # a plain function instead of a staticmethod
            namespace = {}
            exec(
                compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"),
                namespace,
            )
            return namespace[name]
    pytest.skip(f"FluxPipeline.{name} not found in {path}")


def test_same_order_as_the_flux_pipeline():
    pack, unpack = (
        _flux_pipeline_function("_pack_latents"),
        _flux_pipeline_function("_unpack_latents"),
    )
    z = torch.randn(2, 16, 8, 12)
    theirs = pack(z, 2, 16, 8, 12)
    assert torch.equal(latents.pack_latents(z), theirs)
    vae_scale_factor = 8  # FLUX's unpack takes the image size; ours the latent grid's
    back = unpack(theirs, 8 * vae_scale_factor, 12 * vae_scale_factor, vae_scale_factor)
    assert torch.equal(latents.unpack_latents(theirs, 8, 12), back)


def test_sd3_patch_conv_equals_pack_then_linear():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 24, kernel_size=2, stride=2)
    linear = latents.patch_conv_as_linear(conv)
    z = torch.randn(2, 16, 8, 6)
    by_conv = conv(z).flatten(2).transpose(1, 2)  # (B, tokens, D), as SD3's PatchEmbed
    by_linear = linear(latents.pack_latents(z))
    assert torch.allclose(by_conv, by_linear, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="2x2 conv with stride 2"):
        latents.patch_conv_as_linear(torch.nn.Conv2d(16, 24, kernel_size=3, stride=2))


def test_scaling_round_trip_and_estimate():
    g = torch.Generator().manual_seed(1)
    z = 0.7 + 5.0 * torch.randn(64, 4, 8, 8, generator=g)
    scale, shift = latents.estimate_scaling_factor(z, with_shift=True)
    assert abs(shift - float(z.mean())) < 1e-6
    z_scaled = latents.scale_latents(z, scale, shift)
    assert (
        abs(float(z_scaled.mean())) < 1e-5 and abs(float(z_scaled.std()) - 1.0) < 1e-5
    )
    assert torch.allclose(latents.unscale_latents(z_scaled, scale, shift), z, atol=1e-5)
    scale0, shift0 = latents.estimate_scaling_factor(z)
    assert shift0 == 0.0 and scale0 == pytest.approx(scale)


def test_bad_inputs():
    with pytest.raises(ValueError, match="even latent height and width"):
        latents.pack_latents(torch.zeros(1, 4, 5, 6))
    with pytest.raises(ValueError, match="do not make a 4x4 grid"):
        latents.unpack_latents(torch.zeros(1, 5, 16), 4, 4)
    with pytest.raises(ValueError, match=r"scaling_factor must lie in \(0, inf\]"):
        latents.scale_latents(torch.zeros(1), 0.0)
    with pytest.raises(ValueError, match=r"scaling_factor must lie in \(0, inf\]"):
        latents.unscale_latents(torch.zeros(1), -1.0)
    with pytest.raises(ValueError, match=r"z must have shape \(B, C, H, W\)"):
        latents.pack_latents(torch.zeros(4, 6, 6))
    with pytest.raises(ValueError, match=r"tokens must have shape \(B, N, 4C\)"):
        latents.unpack_latents(torch.zeros(9, 16), 6, 6)
    with pytest.raises(TypeError, match="z must be a tensor"):
        latents.estimate_scaling_factor([1.0, 2.0])


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


def test_ch3_forward_variance_check_fails_without_the_square_root():
    """ch3-forward: the variance of sqrt(a_T) z + sqrt(1 - a_T) eps is a_T Var z + 1 - a_T,
    within 4 standard errors; with a_T in place of its square root the check fails."""
    z = 5.0 * torch.randn(200_000, generator=torch.Generator().manual_seed(5))
    eps = torch.randn(200_000, generator=torch.Generator().manual_seed(6))
    a_T = 0.0047
    x = z.double()
    for coefficient, ok in ((math.sqrt(a_T), True), (a_T, False)):
        x = (coefficient * z + math.sqrt(1 - a_T) * eps).double()
        se = math.sqrt(((x - x.mean()).pow(4).mean() - x.var() ** 2).item() / x.numel())
        assert (abs(x.var().item() - (a_T * z.var().item() + 1 - a_T)) < 4 * se) == ok
