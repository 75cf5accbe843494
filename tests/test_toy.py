"""oldschool.toy: the 2-D data sets (reproducible, in range, the shapes they name)."""

import pytest
import torch

from oldschool import toy


@pytest.mark.parametrize("name", sorted(toy.DATASETS))
def test_2d_sets(name):
    a = toy.sample_2d(name, 500, generator=torch.Generator().manual_seed(0))
    b = toy.sample_2d(name, 500, generator=torch.Generator().manual_seed(0))
    assert a.shape == (500, 2) and a.dtype == torch.float32 and torch.equal(a, b)
    assert a.abs().max() < 1.5 and a.std(0).min() > 0.1


def test_2d_set_errors():
    with pytest.raises(ValueError, match="unknown 2-D data set"):
        toy.sample_2d("spiral", 10)
    with pytest.raises(ValueError, match=r"n must lie in \[1"):
        toy.sample_2d("moons", 0)


@pytest.mark.parametrize("name", sorted(toy.DATASETS))
def test_2d_sets_spread(name):
    a = toy.sample_2d(name, 500, generator=torch.Generator().manual_seed(0))
    b = toy.sample_2d(name, 500, generator=torch.Generator().manual_seed(0))
    assert a.shape == (500, 2) and torch.equal(a, b)
    assert a.abs().max() < 1.6 and a.std(0).min() > 0.2


def test_toy_shapes_are_what_they_say():
    g = torch.Generator().manual_seed(1)
    r = toy.sample_2d("rings", 4000, generator=g).norm(dim=1)
    assert ((r - 0.4).abs() < 0.1).float().mean() > 0.4 and (
        (r - 0.9).abs() < 0.1
    ).float().mean() > 0.4
    c = toy.sample_2d("checkerboard", 4000, generator=g) * 2  # back to [-2, 2]^2
    cells = torch.floor(c).long()
    assert (
        (cells[:, 0] + cells[:, 1]) % 2 == 0
    ).all()  # only one colour of the board is occupied
