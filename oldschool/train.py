"""The one training loop every chapter uses: AdamW, optional EMA, autocast in GPU mode.

    history = train(model, loss_fn, data, steps=2000, batch_size=128, lr=1e-3)

``loss_fn(model, batch)`` returns ``(loss, parts)`` (STYLE.md: losses name their terms);
``history[name]`` is the list of each part's value per step, ready to plot.
"""

import copy
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from . import checks, config


class EMA:
    """Exponential moving average of a model's weights (SDXL VAE recipe; notes 2.2.1).

    theta_ema <- d_n * theta_ema + (1 - d_n) * theta after the n-th optimizer step
    (n = 0, 1, ...), with the warm-up d_n = min(decay, (1 + n) / (10 + n)) of latent
    diffusion's ``LitEma`` and diffusers' ``EMAModel`` (Rombach et al. 2022): without
    it, decay**n of the random initial weights would stay in the average
    (0.99**300 = 5%).
    ``warmup=False`` gives the plain d_n = decay. ``ema.model`` is a frozen copy.
    """

    def __init__(self, model, decay=0.999, warmup=True):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay!r}")
        self.decay = decay
        self.warmup = warmup
        self.updates = 0  # n: how many updates so far
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self):
        """d_n for the next update: the decay, capped by (1 + n) / (10 + n) at first."""
        n = self.updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model):
        decay = self.current_decay()
        self.updates += 1
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p.detach(), 1.0 - decay)  # ema + (1 - d_n) * (p - ema)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)


@dataclass
class History:
    """Per-step values of each named loss part, plus the EMA model if one was kept."""

    parts: dict = field(default_factory=dict)
    ema: EMA = None
    seconds: float = 0.0

    def __getitem__(self, name):
        return self.parts[name]

    def __contains__(self, name):
        return name in self.parts

    def keys(self):
        return self.parts.keys()

    def final(self, name, last=50):
        """The mean of the last ``last`` values of ``name`` (a less noisy end point)."""
        values = self.parts[name][-last:]
        return sum(values) / len(values)


def _batch_sampler(data, batch_size, generator, device):
    """A function giving one random batch (sampled with replacement) on ``device``."""
    if callable(data):
        return lambda: _to(data(batch_size, generator), device)
    tensors = data if isinstance(data, (tuple, list)) else (data,)
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError(
            "data must be a tensor, a tuple of tensors, or a "
            "callable(batch_size, generator)"
        )
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise ValueError(
            f"data tensors disagree on length: {[t.shape[0] for t in tensors]}"
        )
    tensors = [t.to(device) for t in tensors]

    def sample():
        index = torch.randint(0, n, (batch_size,), generator=generator).to(device)
        batch = [t[index] for t in tensors]
        return batch[0] if len(batch) == 1 else tuple(batch)

    return sample


def _to(batch, device):
    if isinstance(batch, (tuple, list)):
        return tuple(t.to(device) for t in batch)
    return batch.to(device)


def train(
    model,
    loss_fn,
    data,
    *,
    steps,
    batch_size,
    lr=1e-3,
    weight_decay=0.0,
    ema_decay=None,
    ema_warmup=True,
    grad_clip=None,
    generator=None,
    progress=None,
    desc="training",
    precision=None,
):
    """Train ``model`` for ``steps`` AdamW steps on random batches of ``data``.

    Returns a ``History``. loss_fn(model, batch) -> (loss, parts), e.g.
    ``autoencoders.vae_loss``.

    data: a tensor (N, ...), a tuple of tensors sharing N (e.g. images and labels), or a
        callable ``(batch_size, generator) -> batch`` for data generated on the fly.
    ema_decay: keep an EMA of the weights (``history.ema.model``) when given.
    ema_warmup: ramp the EMA decay up as min(ema_decay, (1 + n) / (10 + n)) (``EMA``).
    grad_clip: clip the global gradient norm to this value when given.
    progress: show a tqdm bar; None means ``config.progress()`` (off in the book build).
    precision: the dtype the forward pass autocasts to (torch.bfloat16 or
        torch.float16), or torch.float32 for none; None means ``config.autocast_dtype``
        (bf16 in GPU mode, float16 on a GPU without bf16, float32 in CPU mode). float16
        scales the loss (GradScaler).
    The device is the model's; weights, gradients and optimizer state stay float32.
    """
    checks.number(steps, "steps", low=1, integer=True)
    checks.number(batch_size, "batch_size", low=1, integer=True)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    device = params[0].device
    sample_batch = _batch_sampler(data, batch_size, generator, device)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    ema = EMA(model, ema_decay, warmup=ema_warmup) if ema_decay is not None else None
    history = History(ema=ema)
    if precision is None:
        precision = config.autocast_dtype(device.type) or torch.float32
    checks.one_of(
        precision, "precision", (torch.float32, torch.bfloat16, torch.float16)
    )
    autocast = torch.autocast(
        device.type, dtype=precision, enabled=precision != torch.float32
    )
    scaler = torch.amp.GradScaler(
        device.type, enabled=precision == torch.float16
    )  # float16 underflows

    model.train()
    start = time.perf_counter()
    if progress is None:
        progress = config.progress()
    bar = tqdm(range(steps), desc=desc, disable=not progress, mininterval=1.0)
    for step in bar:
        batch = sample_batch()
        with autocast:
            loss, parts = loss_fn(model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip is not None:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        scaler.step(optimizer)  # a plain optimizer.step() when the scaler is off
        scaler.update()
        if ema is not None:
            ema.update(model)
        for name, value in {"loss": loss, **parts}.items():
            history.parts.setdefault(name, []).append(
                float(value.detach()) if torch.is_tensor(value) else float(value)
            )
        if step % 100 == 0:
            bar.set_postfix(loss=f"{loss.item():.4g}")
    model.eval()
    history.seconds = time.perf_counter() - start
    return history
