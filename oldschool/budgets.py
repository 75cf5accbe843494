"""What each chapter's GPU column asks of a GPU: memory and time, computed from shapes.

    table = budget_table()       # one row per chapter: parameters, peak memory, T4 time
    readme_table(table)          # the README's table, in Markdown

Nothing trains: every model of a chapter's workload (``oldschool.workloads``) is built
at its GPU-mode shape and called once, on one sample (zeros, on the CPU: the models
check their inputs' values, which a "meta" tensor does not have), with forward hooks,
which give per sample

* activation memory: the bytes of every leaf module's output (float32, 4 bytes: autocast
  stores many of them in 2, so this errs high), what backward keeps for a training step;
* FLOPs: every Conv2d and Linear call (``unet_costs.conv_linear_flops``; a multiply-add
  counts 2; attention's own products are left out, negligible at these sizes);
* layer calls: how many kernels a step launches, which bounds small models' speed.

Then, over the chapter's loops,

    training step memory = activations(batch) + parameters x 4 bytes x 4
                           (weights, grads, Adam m, v)
    peak                 = resident data + every model's weights (and EMA copies)
                           + the largest step
    time                 = sum over loops of FLOPs / (efficiency x peak FLOP rate)
                           + calls x launch time

The T4 figures are NVIDIA's: 65 TFLOPS for float16 on its tensor cores (the autocast
dtype ``config.autocast_dtype`` picks on a GPU without bf16), 8.1 TFLOPS in float32,
16 GB of which Colab leaves about 15. The efficiency and launch time are assumptions,
stated in ``T4``.
"""

import torch

from . import config, unet_costs
from .workloads import FLOAT_BYTES, WORKLOADS

# what the test allows a chapter: a free Colab T4 (15 GB usable), with margin
LIMIT_BYTES = 12 * 10**9
# efficiency, launch time and Colab's CPU rate (2 vCPUs) are assumptions
T4 = dict(
    name="T4",
    memory_bytes=15 * 10**9,
    flops=65e12,
    efficiency=0.3,
    launch_seconds=20e-6,
)


def forward_profile(model, run):
    """Per-sample activation bytes, largest output bytes, FLOPs and leaf calls.

    Of one call ``run(model, 1)``, counted by forward hooks on every leaf module.
    """
    stats = dict(activations=0, largest=0, calls=0)

    def hook(module, inputs, output):
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        for tensor in outputs:
            if isinstance(tensor, torch.Tensor):
                size = tensor.numel() * FLOAT_BYTES
                stats["activations"] += size
                stats["largest"] = max(stats["largest"], size)
        stats["calls"] += 1

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            run(model, 1)
    finally:
        for handle in handles:
            handle.remove()
    stats["flops"] = unet_costs.conv_linear_flops(model, lambda: run(model, 1))
    return stats


def chapter_budget(chapter, gpu=T4):
    """Parameters, memory (bytes) and estimated seconds of ``chapter``'s GPU column."""
    if chapter not in WORKLOADS:
        raise KeyError(
            f"no workload for {chapter!r} in oldschool.workloads.WORKLOADS; "
            "add one (its models and loops)"
        )
    work = WORKLOADS[chapter](config.settings(chapter, "gpu", capped_run=False))
    built = {name: builder() for name, (builder, _) in work.models.items()}
    params = {n: sum(p.numel() for p in m.parameters()) for n, m in built.items()}
    trainable = {
        n: sum(p.numel() for p in m.parameters() if p.requires_grad)
        for n, m in built.items()
    }
    weights = sum(
        params[n] * FLOAT_BYTES * (2 if ema else 1)
        for n, (_, ema) in work.models.items()
    )
    resident = sum(work.resident.values())
    largest_step, activations, peak_loop = 0, 0, None
    gpu_seconds = 0.0
    for loop in work.loops:
        profile = forward_profile(built[loop.model], loop.run)
        passes = 3 if loop.train else 1  # backward costs about twice the forward
        flops = profile["flops"] * loop.batch * passes * loop.repeats
        if loop.train:
            batch_activations = profile["activations"] * loop.batch
            step = batch_activations + 3 * trainable[loop.model] * FLOAT_BYTES
            activations = max(activations, batch_activations)
        else:
            step = 3 * profile["largest"] * loop.batch
        if step > largest_step:
            largest_step, peak_loop = step, loop.what
        launches = loop.repeats * passes * profile["calls"]
        gpu_seconds += (
            flops / (gpu["efficiency"] * gpu["flops"])
            + launches * gpu["launch_seconds"]
        )
    return dict(
        chapter=chapter,
        parameters=sum(params.values()),
        weights=weights,
        resident=resident,
        activations=activations,
        peak=resident + weights + largest_step,
        peak_loop=peak_loop,
        gpu_seconds=gpu_seconds,
    )


def budget_table(chapters=None):
    """``chapter_budget`` of each chapter of ``config.CHAPTERS`` (or ``chapters``)."""
    return [chapter_budget(ch) for ch in (chapters or sorted(config.CHAPTERS))]


README_HEADERS = (
    "chapter",
    "parameters",
    "weights + EMA (GB)",
    "data on GPU (GB)",
    "training activations (GB)",
    "est. peak (GB)",
    "fits a free T4",
    "est. T4 GPU time (min)",
    "capped CPU run peak RSS (GB)",
    "largest step",
)


def readme_table(rows, measured=None):
    """The budget table in Markdown (``unet_costs.markdown_table``).

    ``measured`` maps chapter -> peak RSS bytes of the capped CPU run.
    """
    measured = measured or {}

    def gb(n):
        return "-" if n is None else f"{n / 1e9:.2f}"

    cells = [
        [
            r["chapter"],
            f"{r['parameters'] / 1e6:.2f} M",
            gb(r["weights"]),
            gb(r["resident"]),
            gb(r["activations"]),
            gb(r["peak"]),
            "yes" if r["peak"] <= T4["memory_bytes"] else "no",
            f"{r['gpu_seconds'] / 60:.1f}",
            gb(measured.get(r["chapter"])),
            r["peak_loop"],
        ]
        for r in rows
    ]
    return unet_costs.markdown_table(README_HEADERS, cells, align="lrrrrrlrrl")
