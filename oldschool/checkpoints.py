"""Loading a published checkpoint whose key names differ from ours.

A key map is data: a tuple of ``(regex pattern, replacement)`` pairs applied in order to
each checkpoint key. ``load_renamed`` renames every key, checks the result against the
model, and loads it; :mod:`oldschool.autoencoder_kl` and :mod:`oldschool.unet` each
bring their own map for diffusers' layout.
"""

import re


def rename_key(key, key_map):
    """``key`` after each ``(pattern, replacement)`` of ``key_map``, by ``re.sub``."""
    for pattern, replacement in key_map:
        key = re.sub(pattern, replacement, key)
    return key


def load_renamed(model, state_dict, key_map, what="this model"):
    """Load ``state_dict`` into ``model`` after renaming its keys; returns ``model``.

    Keys are renamed with ``key_map``. Refuses with a ValueError naming them: weights
    the model needs but the checkpoint lacks ("missing"), checkpoint keys the model has
    no place for ("unexpected"), and shape mismatches. ``what`` names the model in that
    message. A model built on the meta device receives the tensors themselves
    (``assign=True``), so nothing is allocated twice.
    """
    ours = model.state_dict()
    renamed = {
        rename_key(key, key_map): (key, tensor) for key, tensor in state_dict.items()
    }
    missing = sorted(set(ours) - set(renamed))
    unexpected = sorted(key for name, (key, _) in renamed.items() if name not in ours)
    mismatched = [
        f"{key} {tuple(tensor.shape)} -> {name} {tuple(ours[name].shape)}"
        for name, (key, tensor) in renamed.items()
        if name in ours and tensor.shape != ours[name].shape
    ]
    problems = [
        f"{label} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", mismatched),
        )
        if keys
    ]
    if problems:
        raise ValueError(f"the checkpoint does not fit {what}; " + "; ".join(problems))
    on_meta = any(p.is_meta for p in model.parameters())
    model.load_state_dict(
        {name: tensor for name, (_, tensor) in renamed.items()},
        strict=True,
        assign=on_meta,
    )
    return model
