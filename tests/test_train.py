import math

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
    history = train.train(
        model,
        _loss,
        (x, y),
        steps=300,
        batch_size=32,
        lr=5e-2,
        progress=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert len(history["loss"]) == len(history["mse"]) == 300
    assert history.final("mse", 20) < 0.01 * history["mse"][0]
    assert torch.allclose(model.weight, torch.tensor([[1.0, -2.0, 0.5]]), atol=0.05)


def test_same_generator_same_result():
    x, y = _regression()
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        train.train(
            model,
            _loss,
            (x, y),
            steps=20,
            batch_size=8,
            progress=False,
            generator=torch.Generator().manual_seed(5),
        )
        weights.append(model.weight.detach().clone())
    assert torch.equal(*weights)


def test_ema_averages_the_weights():
    model = torch.nn.Linear(1, 1, bias=False)
    ema = train.EMA(model, decay=0.5, warmup=False)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(2.0)
    ema.update(model)
    assert torch.allclose(ema.model.weight, start + 1.0)  # halfway between old and new


def _weight_on_start(decay, warmup, steps):
    """Train nothing: move the weights to 1 once; how much of 0 does the EMA keep?"""
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    ema = train.EMA(model, decay=decay, warmup=warmup)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for _ in range(steps):
        ema.update(model)
    return (
        1.0 - ema.model.weight.item()
    )  # the weight the average still gives to the start


def test_ema_warmup_forgets_the_initial_weights():
    # with d_n = min(d, (1 + n) / (10 + n)) the start keeps prod_n d_n; else d**steps
    decay, steps = 0.99, 300
    expected = 1.0
    for n in range(steps):
        expected *= min(decay, (1 + n) / (10 + n))
    assert math.isclose(
        _weight_on_start(decay, True, steps), expected, rel_tol=1e-4, abs_tol=1e-7
    )
    assert expected < 1e-3 * decay**steps
    assert math.isclose(
        _weight_on_start(decay, False, steps), decay**steps, rel_tol=1e-4
    )
    # the warm-up caps the decay early and leaves it alone late
    ema = train.EMA(torch.nn.Linear(1, 1), decay=0.99)
    assert ema.current_decay() == 0.1
    ema.updates = 10_000
    assert ema.current_decay() == 0.99


def test_ema_is_kept_when_asked():
    x, y = _regression()
    model = torch.nn.Linear(3, 1)
    history = train.train(
        model, _loss, (x, y), steps=50, batch_size=16, ema_decay=0.9, progress=False
    )
    assert history.ema is not None and not torch.equal(
        history.ema.model.weight, model.weight
    )


def test_callable_data_source():
    model = torch.nn.Linear(2, 2)
    history = train.train(
        model,
        lambda m, b: (m(b).pow(2).mean(), {}),
        lambda n, g: torch.randn(n, 2, generator=g),
        steps=5,
        batch_size=4,
        progress=False,
    )
    assert len(history["loss"]) == 5


def test_bad_arguments_are_named():
    model = torch.nn.Linear(3, 1)
    x, y = _regression()
    with pytest.raises(ValueError, match=r"steps must lie in \[1, inf\], got 0"):
        train.train(model, _loss, (x, y), steps=0, batch_size=4)
    with pytest.raises(ValueError, match="disagree on length"):
        train.train(model, _loss, (x, y[:10]), steps=1, batch_size=4)
    with pytest.raises(ValueError, match="EMA decay"):
        train.EMA(model, decay=1.0)
    with pytest.raises(FloatingPointError, match="loss became nan"):
        train.train(
            model,
            lambda m, b: (m(b[0]).sum() * float("nan"), {}),
            (x, y),
            steps=2,
            batch_size=4,
            progress=False,
        )
