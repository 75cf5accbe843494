"""Where a U-Net's parameters and FLOPs sit: by resolution level and by kind of layer.

    calls, blocks = trace(unet, (1, 4, 64, 64), (1, 77, 768))   # on "meta": free
    flops = tally(calls, "flops")         # {(level, kind): FLOPs}
    params = parameter_tally(unet)        # {(level, kind): parameters}

``trace`` (notes 3.2.2) runs one forward pass with forward hooks on every Conv2d, Linear
and attention module and computes each call's FLOPs from the shapes it saw (a
multiply-add counts as 2):

    Conv2d    2 * H_out W_out * C_out * C_in * k_h k_w
    Linear    2 * tokens * in_features * out_features
    attention 4 * N * M * inner   (Q K^T and the weighted sum of V; N queries, M keys)

so self-attention over the N = H W pixels of a level costs 8 N C^2 (the four
projections) + 4 N^2 C, quadratic in the number of pixels, and cross-attention to M
context tokens of width D costs 4 N C^2 + 4 M D C + 4 N M C, linear in N. Norms,
activations and additions are left out (a few FLOPs per element, well under 1% here).
Built on the meta device, nothing is allocated, so SDXL at 128x128 costs a few seconds
of Python.

Levels are numbered from the highest resolution (0) down; a block belongs to the level
of the map it writes (so a down- or upsampling conv counts with the level it leads to);
the mid level belongs to the lowest level; ``conv_in`` / ``conv_out`` to level 0; the
time embedding is level "time". ``markdown_table`` formats the tables the chapters show.
"""

from collections import defaultdict

import torch
import torch.nn as nn

from .conv_blocks import Downsample, Upsample
from .unet_blocks import Attention, ResBlock, Transformer2D

KINDS = (
    "conv",
    "time proj",
    "self-attention",
    "cross-attention",
    "feed-forward",
    "transformer other",
    "time embedding",
)


def kind_of(name):
    """The kind of layer a parameter or module path belongs to (one of ``KINDS``)."""
    if name.startswith(("time_embedding", "add_embedding")):
        return "time embedding"
    if ".time_emb_proj" in name:
        return "time proj"  # the timestep's way into a ResBlock
    if ".self_attn" in name:
        return "self-attention"
    if ".cross_attn" in name:
        return "cross-attention"
    if ".ff." in name or name.endswith(".ff"):
        return "feed-forward"
    if ".attentions." in name:
        return "transformer other"  # GroupNorm, LayerNorms, proj_in / proj_out
    # ResBlock convs and norms, 1x1 skips, down/upsample convs, conv_in / conv_out
    return "conv"


def level_of(name, levels):
    """The resolution level (0 = highest) of a parameter or module path.

    "time" for the embeddings. A module counts at the level of the feature map it
    writes: the stride-2 conv that ends
    down level i writes level i + 1, and the upsample + conv that ends up block j (level
    ``levels - 1 - j``) writes the next higher resolution, level ``levels - 2 - j``.
    """
    parts = name.split(".")
    if parts[0] == "down_blocks":
        return int(parts[1]) + (len(parts) > 2 and parts[2] == "downsample")
    if parts[0] == "up_blocks":
        return levels - 1 - int(parts[1]) - (len(parts) > 2 and parts[2] == "upsample")
    if parts[0] == "mid_block":
        return levels - 1
    if parts[0] in ("time_embedding", "add_embedding"):
        return "time"
    return 0  # conv_in, conv_norm_out, conv_out


def parameter_tally(model):
    """{(level, kind): number of parameters} of a ``UNet2DCondition`` (meta is fine)."""
    levels = len(model.config.block_out_channels)
    tally = defaultdict(int)
    for name, p in model.named_parameters():
        tally[level_of(name, levels), kind_of(name)] += p.numel()
    return dict(tally)


def _flops(module, inputs, output):
    """FLOPs of one call of a Conv2d, Linear or Attention, per sample, from shapes."""
    if isinstance(module, nn.Conv2d):
        k_h, k_w = module.kernel_size
        return 2 * output[0].numel() * (module.in_channels // module.groups) * k_h * k_w
    if isinstance(module, nn.Linear):
        tokens = output[0].numel() // module.out_features
        return 2 * tokens * module.in_features * module.out_features
    x = inputs[0]  # Attention: (B, N, C) queries, context (B, M, D) or None
    context = inputs[1] if len(inputs) > 1 and inputs[1] is not None else x
    n, m = x.shape[1], context.shape[1]
    return 4 * n * m * module.heads * module.head_dim  # Q K^T and softmax(.) V


BLOCKS = (ResBlock, Transformer2D, Downsample, Upsample)


def trace(model, sample_shape, context_shape, *, text_embeds_dim=None, time_ids=6):
    """Run one forward pass and return (calls, blocks).

    calls: one dict per Conv2d / Linear / Attention call with name, level, kind, flops
    (per sample) and out_shape. blocks: one dict per ResBlock / Transformer2D /
    Downsample / Upsample call, in execution order, with name, level, block type,
    in_shape, out_shape, params and depth (TransformerBlocks of a Transformer2D, or 0).
    ``text_embeds_dim`` gives SDXL's pooled-text width (1280) when the model has added
    conditioning. The inputs are zeros on the model's device: build the model on "meta"
    to trace for free.
    """
    if (
        len(sample_shape) != 4
        or len(context_shape) != 3
        or sample_shape[0] != context_shape[0]
    ):
        raise ValueError(
            "need sample_shape (B, C, H, W) and context_shape (B, M, D), "
            f"got {sample_shape}, {context_shape}"
        )
    levels = len(model.config.block_out_channels)
    device = next(model.parameters()).device
    calls, blocks, handles = [], [], []

    def on_call(name):
        def hook(module, inputs, output):
            if isinstance(module, BLOCKS):
                blocks.append(
                    dict(
                        name=name,
                        level=level_of(name, levels),
                        block=type(module).__name__,
                        in_shape=tuple(inputs[0].shape),
                        out_shape=tuple(output.shape),
                        params=sum(p.numel() for p in module.parameters()),
                        depth=len(module.blocks)
                        if isinstance(module, Transformer2D)
                        else 0,
                    )
                )
            else:
                calls.append(
                    dict(
                        name=name,
                        level=level_of(name, levels),
                        kind=kind_of(name),
                        flops=_flops(module, inputs, output),
                        out_shape=tuple(output.shape),
                    )
                )

        return hook

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear, Attention) + BLOCKS):
            handles.append(module.register_forward_hook(on_call(name)))
    try:
        with torch.no_grad(), torch.device(device):
            sample, context = torch.zeros(sample_shape), torch.zeros(context_shape)
            extra = {}
            if text_embeds_dim is not None:
                extra = dict(
                    text_embeds=torch.zeros(sample_shape[0], text_embeds_dim),
                    time_ids=torch.zeros(sample_shape[0], time_ids),
                )
            model(sample, torch.zeros(sample_shape[0]), context, **extra)
    finally:
        for handle in handles:
            handle.remove()
    return calls, blocks


def tally(calls, key="flops"):
    """{(level, kind): sum of ``key``} over the traced calls."""
    totals = defaultdict(int)
    for call in calls:
        totals[call["level"], call["kind"]] += call[key]
    return dict(totals)


def by_level(totals, kinds=KINDS):
    """{level: {kind: value}} from a {(level, kind): value} tally.

    Levels in order ("time" last), kinds in the order of ``kinds``.
    """
    levels = sorted({lv for lv, _ in totals if lv != "time"}) + (
        ["time"] if any(lv == "time" for lv, _ in totals) else []
    )
    return {lv: {k: totals.get((lv, k), 0) for k in kinds} for lv in levels}


def markdown_table(headers, rows, align=None):
    """A Markdown table (a str for ``IPython.display.Markdown``) of headers and rows.

    ``align``: one letter per column, "l" (the default) or "r" (right, for numbers).
    """
    align = align or "l" * len(headers)
    rule = "|" + "".join("---:|" if a == "r" else "---|" for a in align)
    lines = ["| " + " | ".join(map(str, headers)) + " |", rule]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def human(n, unit=""):
    """1234567 -> '1.23 M' (k, M, G, T), for table cells."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.3g} {prefix}{unit}"
    return f"{n:.3g} {unit}".strip()


def conv_linear_flops(model, run):
    """FLOPs per sample of every Conv2d and Linear call of ``model`` during ``run()``.

    For any network (e.g. the VAE of ``oldschool.autoencoder_kl``); attention's Q K^T
    and weighted sum are not Conv2d / Linear calls and are left out (``trace`` counts
    them for a U-Net).
    """
    total, handles = [0], []

    def hook(module, inputs, output):
        total[0] += _flops(module, inputs, output)

    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return total[0]


MARKERS = {
    "ResBlock": ("s", "0.55"),
    "Transformer2D": ("D", "tab:red"),
    "Downsample": ("v", "tab:blue"),
    "Upsample": ("^", "tab:green"),
}


def plot_path(blocks, ax, title=None):
    """Draw the U: traced blocks in execution order (x) against their level (y).

    ResBlocks grey squares, Transformer2D red diamonds (labelled with their depth when
    > 1), Downsample / Upsample triangles half-way between levels; each level is
    labelled with the shape of its features, H x W x C. Dashed lines: the skip
    connections of each level.
    """
    xs, ys = [], []
    for i, block in enumerate(blocks):
        y = block["level"] + {"Downsample": -0.5, "Upsample": 0.5}.get(
            block["block"], 0.0
        )
        xs.append(i)
        ys.append(y)
        marker, colour = MARKERS[block["block"]]
        ax.plot(i, y, marker=marker, color=colour, markersize=7, linestyle="none")
    ax.plot(xs, ys, color="0.8", zorder=0)
    levels = sorted({b["level"] for b in blocks})
    for level in levels:
        at_level = [
            i
            for i, b in enumerate(blocks)
            if b["level"] == level and b["block"] == "ResBlock"
        ]
        shape = next(
            b["out_shape"]
            for b in blocks
            if b["level"] == level and b["block"] == "ResBlock"
        )
        ax.plot(
            [at_level[0], at_level[-1]],
            [level, level],
            linestyle=":",
            color="0.7",
            zorder=0,
        )
        ax.text(
            -1,
            level,
            f"{shape[2]}x{shape[3]}x{shape[1]}",
            ha="right",
            va="center",
            fontsize=8,
        )
    for i, block in enumerate(blocks):
        depth = block.get("depth", 1)
        if block["block"] == "Transformer2D" and depth > 1:
            ax.annotate(
                f"x{depth}",
                (i, ys[i]),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=7,
            )
    ax.set_ylim(max(levels) + 0.8, -0.8)
    ax.set_xlim(-len(blocks) * 0.22, len(blocks))
    ax.set_yticks(levels)
    ax.set_ylabel("level (0 = highest resolution)")
    ax.set_xlabel("block, in execution order")
    ax.spines[["top", "right"]].set_visible(False)
    handles = [
        ax.plot([], [], marker=m, color=c, linestyle="none")[0]
        for m, c in MARKERS.values()
    ]
    ax.legend(
        handles, list(MARKERS), fontsize=7, loc="upper center", ncol=2, frameon=False
    )
    ax.set_xticks(range(0, len(blocks), 5))
    if title:
        ax.set_title(title)
    return ax
