"""The small network of the 2-D chapters (4, 5, 6, 8) and the recipe that trains it.

``ScoreMLP`` is a residual MLP ``(x, t) -> output shaped like x``; what the output means
(noise, clean data, v, score or velocity) is the *parameterization*, chosen by the loss
(``oldschool.denoising.dsm_loss``, ``oldschool.flow_matching``). Its time
features come from ``oldschool.embeddings``. ``train_score_mlp`` is the one training
recipe those chapters share: a ScoreMLP of the chapter's sizes, AdamW with an EMA of the
weights (``oldschool.train.train``).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import checks, train
from .embeddings import SinusoidalEmbedding, TimestepEmbedder


class ResidualBlock(nn.Module):
    """h + MLP(h, t): LayerNorm, SiLU, Linear; add the time features; SiLU, Linear."""

    def __init__(self, hidden):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h, t_features):
        r = self.fc1(F.silu(self.norm(h))) + t_features  # (B, hidden)
        return h + self.fc2(F.silu(r))  # (B, hidden)


class ScoreMLP(nn.Module):
    """A residual MLP ``(x, t) -> output`` shaped like x (B, dim), for 2-D toy data.

    The output is a noise, clean-data, velocity or score prediction depending on which
    ``dsm_loss`` parameterization trains it. t is continuous (B,), embedded with a
    sinusoidal embedding of 1000 t (DDPM's step index when t is in [0, 1]) unless
    ``time_embedding`` (a module t -> (B, embed_dim), e.g. ``GaussianFourierEmbedding``)
    is given. The last layer starts at zero, so an untrained model predicts 0 (DiT's
    init).
    """

    def __init__(self, dim=2, hidden=128, layers=3, embed_dim=64, time_embedding=None):
        super().__init__()
        for name, value in (
            ("dim", dim),
            ("hidden", hidden),
            ("layers", layers),
            ("embed_dim", embed_dim),
        ):
            checks.number(value, name, low=1, integer=True)
        self.dim = dim
        if time_embedding is None:
            time_embedding = SinusoidalEmbedding(embed_dim, scale=1000.0)
        self.time = TimestepEmbedder(time_embedding, embed_dim, hidden)
        self.x_in = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(ResidualBlock(hidden) for _ in range(layers))
        self.norm_out = nn.LayerNorm(hidden)
        self.x_out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.x_out.weight)  # the untrained model outputs exactly 0
        nn.init.zeros_(self.x_out.bias)

    @classmethod
    def from_settings(cls, S):
        """A ScoreMLP for 2-D points with a chapter's sizes (S.hidden, S.layers,
        S.embed_dim from ``config.settings``)."""
        return cls(dim=2, hidden=S.hidden, layers=S.layers, embed_dim=S.embed_dim)

    def forward(self, x, t):
        checks.tensor(x, "x", shape=("B", self.dim))  # the door: the blocks trust it
        checks.tensor(t, "t", shape=(x.shape[0],))
        t_features = self.time(t)  # (B, hidden)
        h = self.x_in(x)  # (B, hidden)
        for block in self.blocks:
            h = block(h, t_features)
        return self.x_out(F.silu(self.norm_out(h)))  # (B, dim)


def train_score_mlp(
    loss_fn, data, S, *, seed=None, model=None, generator=None, desc=""
):
    """Train a ScoreMLP with the recipe of chapters 4-6 and 8; returns train's History.

    loss_fn(model, batch) -> (loss, parts), e.g. a ``dsm_loss`` with its path fixed.
    data: a tensor (N, 2) (or a tuple of tensors sharing N), already on the device the
        model trains on. S: the chapter's settings (``config.settings``), which give the
        sizes (hidden, layers, embed_dim) and the optimization (steps, batch_size, lr,
        ema_decay).
    seed: a new model is initialized right after ``torch.manual_seed(seed)`` (so the
        loss's own noise, drawn from torch's global generator, follows the seed too),
        and the batches come from a generator seeded with ``seed``.
    model: a ScoreMLP to train in place instead of a new one; generator: the batches'
        generator instead of a new one. (``seed`` is needed only for what is not given.)
    The EMA of the weights is ``history.ema.model`` (DDPM samples with it).
    """
    if model is None or generator is None:
        checks.number(seed, "seed", integer=True)
    if model is None:
        torch.manual_seed(seed)  # the initialization
        model = ScoreMLP.from_settings(S)
    if generator is None:
        generator = torch.Generator().manual_seed(seed)  # the batches
    first = data[0] if isinstance(data, (tuple, list)) else data
    return train.train(
        model.to(first.device),
        loss_fn,
        data,
        steps=S.steps,
        batch_size=S.batch_size,
        lr=S.lr,
        ema_decay=S.ema_decay,
        generator=generator,
        desc=desc,
    )
