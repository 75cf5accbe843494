"""oldschool.embeddings: the sinusoidal embedding against diffusers, random Fourier
features, and the learned time features built on them."""

import math

import pytest
import torch

from oldschool import embeddings


@pytest.mark.parametrize("dim", [2, 7, 32, 320])
@pytest.mark.parametrize(
    "flip_sin_to_cos, downscale_freq_shift", [(False, 1.0), (True, 0.0), (True, 1.0)]
)
@pytest.mark.parametrize(
    "scale, max_period", [(1.0, 10000.0), (1000.0, 10000.0), (1.0, 100.0)]
)
def test_sinusoidal_matches_diffusers(
    dim, flip_sin_to_cos, downscale_freq_shift, scale, max_period
):
    peer = pytest.importorskip("diffusers.models.embeddings")
    if dim == 2 and downscale_freq_shift == 1.0:
        pytest.skip(
            "one frequency with shift 1 divides by zero (diffusers returns nan)"
        )
    t = torch.tensor([0.0, 0.001, 0.5, 1.0, 17.0, 999.0])
    ours = embeddings.sinusoidal_embedding(
        t,
        dim,
        flip_sin_to_cos=flip_sin_to_cos,
        downscale_freq_shift=downscale_freq_shift,
        scale=scale,
        max_period=max_period,
    )
    theirs = peer.get_timestep_embedding(
        t,
        dim,
        flip_sin_to_cos=flip_sin_to_cos,
        downscale_freq_shift=downscale_freq_shift,
        scale=scale,
        max_period=max_period,
    )
    assert ours.shape == theirs.shape == (6, dim)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-5)


def test_sinusoidal_module_and_errors():
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    module = embeddings.SinusoidalEmbedding(
        16, flip_sin_to_cos=True, downscale_freq_shift=0.0
    )
    out = module(t)
    assert out.dtype == torch.float64 and out.shape == (5, 16)
    torch.testing.assert_close(
        out,
        embeddings.sinusoidal_embedding(
            t, 16, flip_sin_to_cos=True, downscale_freq_shift=0.0
        ),
    )
    # sin^2 + cos^2 = 1 for every frequency
    torch.testing.assert_close(
        out[:, :8] ** 2 + out[:, 8:] ** 2, torch.ones(5, 8, dtype=torch.float64)
    )
    # the sizes are checked once, when the module is built (the function trusts them)
    with pytest.raises(ValueError, match="dim"):
        embeddings.SinusoidalEmbedding(1)
    with pytest.raises(ValueError, match="no frequency range"):
        embeddings.SinusoidalEmbedding(2, downscale_freq_shift=1.0)


def test_gaussian_fourier_embedding():
    a = embeddings.GaussianFourierEmbedding(
        32, scale=16.0, generator=torch.Generator().manual_seed(0)
    )
    b = embeddings.GaussianFourierEmbedding(
        32, scale=16.0, generator=torch.Generator().manual_seed(0)
    )
    assert list(a.parameters()) == [] and "w" in dict(
        a.named_buffers()
    )  # fixed, not trained
    torch.testing.assert_close(a.w, b.w)
    t = torch.rand(10)
    out = a(t)
    assert out.shape == (10, 32)
    torch.testing.assert_close(out[:, :16] ** 2 + out[:, 16:] ** 2, torch.ones(10, 16))
    torch.testing.assert_close(out[:, :16], torch.sin(2 * math.pi * t[:, None] * a.w))
    with pytest.raises(ValueError, match="even"):
        embeddings.GaussianFourierEmbedding(31)


def test_timestep_embedder_is_the_embedding_then_an_mlp():
    torch.manual_seed(0)
    embedder = embeddings.TimestepEmbedder(embeddings.SinusoidalEmbedding(16), 16, 32)
    t = torch.rand(6)
    features = embedder(t)
    assert features.shape == (6, 32)
    torch.testing.assert_close(
        features, embedder.mlp(embeddings.sinusoidal_embedding(t, 16))
    )
