"""Checks at the door (STYLE.md, principle 11).

Public entry points, the functions a chapter calls, validate their input once with
these helpers, and every message names the argument and says what was expected and
what came. Inner functions and per-step code trust their callers: a sampler checks its
time grid once, not the time of every step.

    checks.tensor(x, "x", shape=("B", 1, 8, 8))   # 4-D, any batch, 1x8x8 images
    checks.one_of(parameterization, "parameterization", PARAMETERIZATIONS)
    checks.number(sigma, "sigma", low=0, low_open=True)
    checks.times(t, like=x)                       # a float or (B,) tensor in [0, 1]

Each returns its (possibly converted) input, so a check reads as one line.
"""

import math

import torch


def describe(x):
    """What a message shows of an input: a tensor's shape, else its type's name."""
    if isinstance(x, torch.Tensor):
        return tuple(x.shape)
    return type(x).__name__


def _shape_text(shape):
    return "(" + ", ".join(str(n) for n in shape) + (",)" if len(shape) == 1 else ")")


def tensor(x, name, *, shape=None, batch=False, floating=False, finite=False):
    """``x`` if it is a tensor of the given form, else a ``TypeError``/``ValueError``.

    shape: a tuple whose entries are sizes (int) or names of free sizes (str, e.g. "B");
    batch: any shape (B, ...) with at least two dimensions, one sample per row;
    floating: require a floating-point dtype; finite: require no nan or inf.
    """
    if not isinstance(x, torch.Tensor):
        expected = f" of shape {_shape_text(shape)}" if shape is not None else ""
        raise TypeError(f"{name} must be a tensor{expected}, got {type(x).__name__}")
    if shape is not None:
        fits = x.dim() == len(shape) and all(
            isinstance(n, str) or x.shape[i] == n for i, n in enumerate(shape)
        )
        if not fits:
            raise ValueError(
                f"{name} must have shape {_shape_text(shape)}, got {tuple(x.shape)}"
            )
    if batch and x.dim() < 2:
        raise ValueError(
            f"{name} must be a batch shaped (B, ...), got {tuple(x.shape)}"
        )
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if finite and x.device.type != "meta" and not torch.isfinite(x).all():
        raise ValueError(f"{name} has non-finite values (nan or inf)")
    return x


def one_of(value, name, allowed):
    """``value`` if it is one of ``allowed``, else a ``ValueError`` listing them."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")
    return value


def number(value, name, *, low=None, high=None, low_open=False, integer=False):
    """``value`` if it is a real number (an int when ``integer``) in the range.

    The range is [low, high], or (low, high] with ``low_open``; None leaves a side open.
    """
    kind = "an integer" if integer else "a number"
    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_real = is_int or (isinstance(value, float) and math.isfinite(value))
    if not (is_int if integer else is_real):
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    below = low is not None and (value <= low if low_open else value < low)
    if below or (high is not None and value > high):
        left = "(" if low_open else "["
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must lie in {left}{lo}, {hi}], got {value!r}")
    return value


def times(t, name="t", *, t_max=1.0, like=None):
    """``t`` as a float tensor in [0, t_max]: a float, or a tensor of shape () or (B,).

    With ``like`` (the batch x), a tensor must have one time per sample and comes back
    on x's device and dtype.
    """
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        dtype = torch.float64 if like is None else like.dtype
        t = torch.tensor(float(t), dtype=dtype)
    elif not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a float or a tensor, got {type(t).__name__}")
    elif not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if t.dim() > 1:
        raise ValueError(
            f"{name} must be a scalar or shaped (B,), got {tuple(t.shape)}"
        )
    if like is not None:
        if t.dim() == 1 and t.shape[0] != like.shape[0]:
            raise ValueError(
                f"{name} has shape {tuple(t.shape)} but x has batch size {like.shape[0]}"
            )
        t = t.to(device=like.device, dtype=like.dtype)
    if t.device.type == "meta":
        return t
    if torch.isnan(t).any() or (t < 0).any() or (t > t_max).any():
        raise ValueError(
            f"{name} must lie in [0, T={t_max}], got values in "
            f"[{t.min().item():.4g}, {t.max().item():.4g}]"
        )
    return t


def instance(value, name, cls, what=None):
    """``value`` if it is an instance of ``cls``, else a ``TypeError`` naming ``what``.

    what: how the message names the expected kind (default: the class's name).
    """
    if not isinstance(value, cls):
        what = what or f"a {cls.__name__}"
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
    return value
