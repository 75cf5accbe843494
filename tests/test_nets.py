"""oldschool.nets: the ScoreMLP (shapes, zero init, its door checks) and the training
recipe the 2-D chapters share."""

import types

import pytest
import torch

from oldschool import denoising, embeddings, nets
from oldschool.sde import VPSDE


def test_score_mlp_shapes_init_and_gradients():
    torch.manual_seed(0)
    model = nets.ScoreMLP(dim=3, hidden=32, layers=2, embed_dim=16)
    x, t = torch.randn(5, 3), torch.rand(5)
    out = model(x, t)
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # zero-initialized last layer
    torch.nn.init.normal_(model.x_out.weight)
    out = model(x, t)
    assert not torch.allclose(out, model(x, t.flip(0)))  # depends on t
    out.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    fourier = nets.ScoreMLP(
        dim=2, embed_dim=8, time_embedding=embeddings.GaussianFourierEmbedding(8)
    )
    assert fourier(torch.randn(4, 2), torch.rand(4)).shape == (4, 2)
    double = nets.ScoreMLP(dim=2).double()
    assert (
        double(
            torch.randn(4, 2, dtype=torch.float64), torch.rand(4, dtype=torch.float64)
        ).dtype
        == torch.float64
    )


def test_score_mlp_errors():
    model = nets.ScoreMLP(dim=2, hidden=8, layers=1, embed_dim=4)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        model(torch.randn(4, 3), torch.rand(4))
    with pytest.raises(ValueError, match=r"t must have shape \(4,\)"):
        model(torch.randn(4, 2), torch.rand(4, 1))
    # the model's forward is the door for t: the embeddings behind it check nothing
    with pytest.raises(ValueError, match=r"t must have shape \(3,\)"):
        model(torch.randn(3, 2), torch.zeros(3, 1))
    with pytest.raises(TypeError, match="t must be a tensor"):
        model(torch.randn(3, 2), 0.5)
    with pytest.raises(ValueError, match="hidden"):
        nets.ScoreMLP(hidden=0)


SETTINGS = types.SimpleNamespace(
    hidden=16, layers=1, embed_dim=8, steps=30, batch_size=64, lr=3e-3, ema_decay=0.9
)


def dsm(model, x0):
    return denoising.dsm_loss(model, x0, VPSDE(), parameterization="eps")


def test_train_score_mlp_is_the_recipe_the_chapters_wrote_out():
    """The same seed gives the same weights as building and training by hand."""
    data = torch.randn(256, 2, generator=torch.Generator().manual_seed(1))
    history = nets.train_score_mlp(dsm, data, SETTINGS, seed=3, desc="test")
    torch.manual_seed(3)
    by_hand = nets.ScoreMLP(dim=2, hidden=16, layers=1, embed_dim=8)
    torch.manual_seed(3)
    sized = nets.ScoreMLP.from_settings(SETTINGS)
    assert len(sized.blocks) == 1 and sized.x_in.out_features == 16
    assert torch.equal(sized.x_in.weight, by_hand.x_in.weight)  # same sizes, same init
    expected = nets.train.train(
        by_hand,
        dsm,
        data,
        steps=30,
        batch_size=64,
        lr=3e-3,
        ema_decay=0.9,
        generator=torch.Generator().manual_seed(3),
    )
    for ours, theirs in zip(
        history.ema.model.parameters(), expected.ema.model.parameters()
    ):
        torch.testing.assert_close(ours, theirs)
    assert history.final("loss", 10) < history["loss"][0]  # it trained
    other = nets.train_score_mlp(dsm, data, SETTINGS, seed=4)
    assert not torch.equal(
        other.ema.model.x_in.weight, history.ema.model.x_in.weight
    )  # the seed matters


def test_train_score_mlp_trains_a_given_model_with_a_given_generator():
    data = torch.randn(128, 2, generator=torch.Generator().manual_seed(2))
    model = nets.ScoreMLP.from_settings(SETTINGS)
    before = model.x_out.weight.clone()
    gen = torch.Generator().manual_seed(5)
    nets.train_score_mlp(dsm, data, SETTINGS, model=model, generator=gen)
    assert not torch.equal(model.x_out.weight, before)  # trained in place
    with pytest.raises(ValueError, match="seed"):
        nets.train_score_mlp(dsm, data, SETTINGS)  # neither a seed nor a model
