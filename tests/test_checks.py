"""oldschool.checks: each helper passes good input through and names the bad."""

import pytest
import torch

from oldschool import checks


def test_tensor_passes_good_input_through():
    x = torch.zeros(3, 1, 8, 8)
    assert checks.tensor(x, "x", shape=("B", 1, 8, 8), floating=True) is x


@pytest.mark.parametrize(
    "x, kwargs, error, message",
    [
        (
            [1.0],
            {"shape": ("B",)},
            TypeError,
            r"x must be a tensor of shape \(B,\), got list",
        ),
        (
            torch.zeros(3, 8, 8),
            {"shape": ("B", 1, 8, 8)},
            ValueError,
            r"\(B, 1, 8, 8\), got \(3, 8, 8\)",
        ),
        (
            torch.zeros(3, 2, 8, 8),
            {"shape": ("B", 1, 8, 8)},
            ValueError,
            r"got \(3, 2, 8, 8\)",
        ),
        (
            torch.zeros(3, dtype=torch.long),
            {"floating": True},
            TypeError,
            "floating-point",
        ),
        (torch.tensor([0.0, float("nan")]), {"finite": True}, ValueError, "non-finite"),
    ],
)
def test_tensor_names_what_is_wrong(x, kwargs, error, message):
    with pytest.raises(error, match=message):
        checks.tensor(x, "x", **kwargs)


def test_batch_needs_one_sample_per_row():
    x = torch.zeros(5, 3, 2)
    assert checks.tensor(x, "x", batch=True) is x
    with pytest.raises(
        ValueError, match=r"x must be a batch shaped \(B, \.\.\.\), got \(5,\)"
    ):
        checks.tensor(torch.zeros(5), "x", batch=True)


def test_meta_tensors_skip_the_value_checks():
    x = torch.empty(2, 3, device="meta")
    assert checks.tensor(x, "x", shape=("B", 3), finite=True) is x
    assert checks.times(torch.empty(2, device="meta")).device.type == "meta"


def test_one_of():
    assert checks.one_of("v", "p", ("eps", "v")) == "v"
    with pytest.raises(ValueError, match=r"p must be one of \('eps', 'v'\), got 'x'"):
        checks.one_of("x", "p", ("eps", "v"))


def test_instance():
    assert checks.instance(2.0, "a", float) == 2.0
    with pytest.raises(TypeError, match="a must be a float, got int"):
        checks.instance(2, "a", float)
    with pytest.raises(TypeError, match="q must be a Gaussian, got list"):
        checks.instance([], "q", float, "a Gaussian")


@pytest.mark.parametrize(
    "value, kwargs, ok",
    [
        (1, {"low": 0, "low_open": True, "integer": True}, True),
        (0, {"low": 0, "low_open": True, "integer": True}, False),
        (1.5, {"integer": True}, False),
        (True, {}, False),
        (float("nan"), {}, False),
        (0.0, {"low": 0}, True),
        (1.0, {"low": 0, "high": 0.5}, False),
        ("3", {}, False),
    ],
)
def test_number(value, kwargs, ok):
    if ok:
        assert checks.number(value, "n", **kwargs) == value
    else:
        with pytest.raises(ValueError, match="n must"):
            checks.number(value, "n", **kwargs)


def test_times_converts_and_checks():
    x = torch.zeros(4, 2, dtype=torch.float32)
    t = checks.times(0.5, like=x)
    assert t.dtype == torch.float32 and t.shape == ()
    assert (
        checks.times(torch.full((4,), 0.5, dtype=torch.float64), like=x).dtype
        == x.dtype
    )
    with pytest.raises(ValueError, match="batch size 4"):
        checks.times(torch.full((3,), 0.5), like=x)
    with pytest.raises(ValueError, match=r"t must lie in \[0, T=1.0\]"):
        checks.times(torch.tensor([0.5, 1.5]))
    with pytest.raises(TypeError, match="floating-point"):
        checks.times(torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="float or a tensor"):
        checks.times("0.5")
