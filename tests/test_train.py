import pytest
import torch

from oldschool import train


def _regression(n=256):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    return x, y


def _loss(model, batch):
    x, y = batch
    loss = (model(x) - y).pow(2).mean()
    return loss, {"mse": loss.detach()}


def test_training_reduces_the_loss_and_records_parts():
    x, y = _regression()
    model = torch.nn.Linear(3, 1)
    history = train.train(model, _loss, (x, y), steps=300, batch_size=32, lr=5e-2, progress=False,
                          generator=torch.Generator().manual_seed(0))
    assert len(history["loss"]) == len(history["mse"]) == 300
    assert history.final("mse", 20) < 0.01 * history["mse"][0]
    assert torch.allclose(model.weight, torch.tensor([[1.0, -2.0, 0.5]]), atol=0.05)


def test_same_generator_same_result():
    x, y = _regression()
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        train.train(model, _loss, (x, y), steps=20, batch_size=8, progress=False, generator=torch.Generator().manual_seed(5))
        weights.append(model.weight.detach().clone())
    assert torch.equal(*weights)


def test_ema_averages_the_weights():
    model = torch.nn.Linear(1, 1, bias=False)
    ema = train.EMA(model, decay=0.5)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(2.0)
    ema.update(model)
    assert torch.allclose(ema.model.weight, start + 1.0)  # halfway between old and new


def test_ema_is_kept_when_asked():
    x, y = _regression()
    model = torch.nn.Linear(3, 1)
    history = train.train(model, _loss, (x, y), steps=50, batch_size=16, ema_decay=0.9, progress=False)
    assert history.ema is not None and not torch.equal(history.ema.model.weight, model.weight)


def test_callable_data_source():
    model = torch.nn.Linear(2, 2)
    history = train.train(model, lambda m, b: (m(b).pow(2).mean(), {}), lambda n, g: torch.randn(n, 2, generator=g),
                          steps=5, batch_size=4, progress=False)
    assert len(history["loss"]) == 5


def test_bad_arguments_are_named():
    model = torch.nn.Linear(3, 1)
    x, y = _regression()
    with pytest.raises(ValueError, match="steps must be a positive int"):
        train.train(model, _loss, (x, y), steps=0, batch_size=4)
    with pytest.raises(ValueError, match="disagree on length"):
        train.train(model, _loss, (x, y[:10]), steps=1, batch_size=4)
    with pytest.raises(ValueError, match="EMA decay"):
        train.EMA(model, decay=1.0)
    with pytest.raises(FloatingPointError, match="loss became nan"):
        train.train(model, lambda m, b: (m(b[0]).sum() * float("nan"), {}), (x, y), steps=2, batch_size=4, progress=False)
