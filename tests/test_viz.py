import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from oldschool import viz


def test_make_grid_places_images_in_order():
    images = torch.stack(
        [torch.full((1, 2, 2), v) for v in (-1.0, 0.0, 1.0)]
    )  # black, grey, white
    grid = viz.make_grid(images, nrow=3, pad=1, pad_value=0.5)
    assert grid.shape == (4, 10)
    assert grid[1, 1] == 0.0 and grid[1, 4] == 0.5 and grid[1, 7] == 1.0


def test_plots_draw_and_refuse_bad_shapes():
    ax = viz.latent_scatter(torch.randn(50, 2), torch.randint(0, 10, (50,)))
    assert len(ax.collections) == 1
    ax = viz.decoded_manifold(
        lambda z: torch.tanh(z.sum(1)).view(-1, 1, 1, 1).expand(-1, 1, 4, 4), n=3
    )
    assert len(ax.images) == 1
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        viz.make_grid(torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        viz.latent_scatter(torch.zeros(5, 3))
