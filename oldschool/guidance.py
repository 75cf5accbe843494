"""A class-conditional U-Net that reads its label through cross-attention, and
classifier-free guidance.

    model = class_conditional_unet(config.settings("ch7"))
    loss, parts = cfg_loss(model, (x0, labels), sde, p_uncond=0.1)      # train
    eps_fn = guided_eps(model, labels, scale=3.0)                        # sample
    score_fn = denoising.score_fn_from_model(eps_fn, sde)

The label becomes a short sequence of context tokens, [start, label], that the U-Net's
cross-attention layers attend to, exactly where SD puts the CLIP text tokens. The start
token is the same for every label (like CLIP's beginning-of-text token): with a single
context token the softmax over keys would be 1 everywhere and cross-attention would
reduce to adding a per-label bias; with two, every pixel chooses how much to read from
the label.

Classifier-free guidance (Ho & Salimans 2022): train one network both with the label
and, for a fraction ``p_uncond`` of the batch, with the *null* label; at sampling time
extrapolate

    eps_guided = eps(x, t, null) + w (eps(x, t, label) - eps(x, t, null)),

w = 1 being the plain conditional model and w > 1 pushing samples towards what makes
them that label (SD's ``guidance_scale`` is this w; Ho & Salimans write it as 1 + w).
"""

import torch
import torch.nn as nn

from . import checks
from .denoising import dsm_loss
from .unet import tiny_unet


class LabelTokens(nn.Module):
    """Context tokens (B, 2, dim) for labels (B,): [a learned start token, the label's].

    Label ``num_classes`` is the null label, the "empty prompt" of classifier-free
    guidance.
    """

    def __init__(self, num_classes, dim):
        super().__init__()
        self.num_classes = num_classes
        # one token shared by every label
        self.start = nn.Parameter(torch.randn(1, 1, dim))
        # the last row is the null label
        self.label = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels):
        start = self.start.expand(labels.shape[0], 1, -1)  # (B, 1, dim)
        return torch.cat([start, self.label(labels)[:, None, :]], dim=1)  # (B, 2, dim)


class ClassConditionalUNet(nn.Module):
    """eps_theta(x_t, t, label): a ``UNet2DCondition`` reading the label's tokens.

    t is the continuous time in [0, 1] of an ``oldschool.sde`` SDE. The U-Net sees SD's
    discrete timestep: on ``sde.DiscreteVP`` step n = 1..N sits at t = n / N and is
    diffusers' timestep index n - 1, so t maps to ``N t - 1`` (``timestep``); on the
    grid the U-Net sees exactly the index SD's own U-Net sees for the same noise level.
    """

    def __init__(self, unet, num_classes, num_train_timesteps=1000):
        super().__init__()
        self.unet = unet
        self.tokens = LabelTokens(num_classes, unet.config.cross_attention_dim)
        self.num_classes, self.num_train_timesteps = num_classes, num_train_timesteps

    def timestep(self, t):
        """diffusers' timestep index of continuous time t: N t - 1 (t = (i + 1) / N)."""
        return self.num_train_timesteps * t - 1

    @property
    def null_label(self):
        return self.num_classes

    def check_labels(self, labels, batch):
        """The door check of every entry that takes labels: (batch,) long, 0..null."""
        checks.tensor(labels, "labels", shape=(batch,))
        if labels.dtype != torch.long:
            raise ValueError(f"labels must be a long tensor, got {labels.dtype}")
        if labels.device.type == "meta":  # no values to check
            return
        if labels.min() < 0 or labels.max() > self.num_classes:
            null = self.num_classes
            raise ValueError(
                f"labels must lie in 0..{null} ({null} = null), "
                f"got {int(labels.min())}..{int(labels.max())}"
            )

    def forward(self, x, t, labels):
        self.check_labels(labels, x.shape[0])
        return self.unet(x, self.timestep(t), self.tokens(labels))


def class_conditional_unet(S, num_classes=10):
    """Chapter 7's denoiser, built from its settings ``S = config.settings("ch7")``.

    A ``tiny_unet`` with ``S.channels`` per level, ``S.layers_per_block``, ``S.heads``,
    ``S.context_dim`` wide label tokens and ``S.groups`` GroupNorm groups, wrapped in
    ``ClassConditionalUNet``. The chapter, its GPU budget and the GPU check build it
    here, so they agree.
    """
    net = tiny_unet(
        channels=S.channels,
        layers_per_block=S.layers_per_block,
        heads=S.heads,
        cross_attention_dim=S.context_dim,
        groups=S.groups,
    )
    return ClassConditionalUNet(net, num_classes=num_classes)


def drop_labels(labels, p_uncond, null_label, generator=None):
    """Each label replaced by ``null_label`` with probability ``p_uncond``.

    Label dropout (Ho & Salimans 2022).
    """
    checks.number(p_uncond, "p_uncond", low=0.0, high=1.0)
    u = torch.rand(labels.shape, generator=generator, device=labels.device)
    return torch.where(u < p_uncond, torch.full_like(labels, null_label), labels)


def cfg_loss(model, batch, sde, *, p_uncond=0.1, generator=None):
    """The eps-prediction loss (``denoising.dsm_loss``) with label dropout; (loss, parts).

    batch = (x0 (B, C, H, W), labels (B,)). ``parts`` adds ``p_null``, the fraction of
    the batch trained unconditionally (Ho & Salimans 2022, Algorithm 1).
    """
    x0, labels = batch
    labels = drop_labels(labels, p_uncond, model.null_label, generator)
    loss, parts = dsm_loss(
        lambda x_t, t: model(x_t, t, labels), x0, sde, "eps", generator=generator
    )
    return loss, {**parts, "p_null": (labels == model.null_label).float().mean()}


def guided_eps(model, labels, scale):
    """eps_fn(x, t) = eps(x, t, null) + scale (eps(x, t, labels) - eps(x, t, null)).

    One batched call per step (Ho & Salimans 2022, Algorithm 2); labels are checked
    once, here, not at every step.
    """
    model.check_labels(labels, labels.shape[0])
    null = torch.full_like(labels, model.null_label)
    both = torch.cat([labels, null])

    def eps_fn(x, t):
        eps_cond, eps_null = model.unet(
            torch.cat([x, x]), model.timestep(torch.cat([t, t])), model.tokens(both)
        ).chunk(2)
        return eps_null + scale * (eps_cond - eps_null)

    return eps_fn
