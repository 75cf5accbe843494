"""Every chapter in GPU mode, timed and measured, plus fp32/bf16 throughput: one report.

    python benchmarks/gpu_check.py           # CUDA: full GPU columns; else capped, CPU
    python benchmarks/gpu_check.py --capped  # the dry run (make gpu-dry), any device
    python benchmarks/gpu_check.py --chapters ch03 ch07 --no-benchmarks

Each chapter notebook runs in its own kernel (nbclient) with ``OLDSCHOOL_MODE=gpu``;
without CUDA, ``OLDSCHOOL_DEVICE=cpu``; with ``--capped``, ``OLDSCHOOL_CAP=1``
(config.CAP_RULES: a few training steps, a few hundred samples, each sweep's first and
last entry, every model at its GPU-mode shape). The script records each chapter's wall
time, the kernel's peak resident memory and, on CUDA, its peak GPU memory, and the
slowest cells.

A capped run cannot meet the chapters' claims about trained models (a VAE after four
steps is not a VAE), so in a capped run every ``assert`` in a cell is rewritten (an
IPython AST transformer) to record a failure and go on: all lines of every cell still
execute, and the report lists each assertion that did not hold. Any other exception
fails the run. An uncapped run keeps the assertions as they are: a failed one fails the
run, as in the book.

Then the training throughput of the GPU-mode models (the ch3 autoencoder, the ch7
U-Net, the ch4 ScoreMLP) in float32 and under bf16 autocast, through ``train.train``'s
own precision path, and the forward benchmarks ``unet_throughput.py`` and
``bench_autoencoder_kl.py``.

The report goes to ``_build/gpu-check/report.md`` (and ``report.json`` beside it); the
exit status is 1 when any chapter raised an error.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "_build" / "gpu-check"

# Run in the kernel before a capped chapter: each cell `assert` records and goes on.
SOFT_ASSERTS = r"""
import ast as _ast
_oldschool_soft_failures = []
_oldschool_first_count = get_ipython().execution_count  # as IPython counts this cell


def _oldschool_assert_failed(line, test, message):
    message = None if message is None else str(message)
    count = get_ipython().execution_count
    _oldschool_soft_failures.append(
        dict(count=count, line=line, test=test, message=message)
    )


class _OldschoolSoftAsserts(_ast.NodeTransformer):
    def visit_Assert(self, node):
        args = [_ast.Constant(node.lineno), _ast.Constant(_ast.unparse(node.test)),
                node.msg if node.msg is not None else _ast.Constant(None)]
        failed = _ast.Name("_oldschool_assert_failed", _ast.Load())
        call = _ast.Expr(_ast.Call(failed, args, []))
        check = _ast.If(_ast.UnaryOp(_ast.Not(), node.test), [call], [])
        return _ast.fix_missing_locations(_ast.copy_location(check, node))


get_ipython().ast_transformers.append(_OldschoolSoftAsserts())
"""

# Run in the kernel after the chapter: what it used, as one JSON line.
MEASURE = r"""
import json as _json, resource as _resource, torch as _torch
_usage = _resource.getrusage(_resource.RUSAGE_SELF)
print("OLDSCHOOL_MEASURE " + _json.dumps(dict(
    peak_rss=_usage.ru_maxrss * 1024, cpu_seconds=_usage.ru_utime + _usage.ru_stime,
    peak_cuda=(
        _torch.cuda.max_memory_allocated() if _torch.cuda.is_available() else None
    ),
    soft_failures=globals().get("_oldschool_soft_failures", []),
    first_count=globals().get("_oldschool_first_count"))))
"""


def chapters(selected):
    """The chapter notebooks book/chNN_*.ipynb: all, or those whose name starts with one
    of ``selected``."""
    found = sorted((ROOT / "book").glob("ch[0-9][0-9]_*.ipynb"))
    if selected:
        found = [
            path for path in found if any(path.name.startswith(s) for s in selected)
        ]
    return found


def run_chapter(path, capped, timeout, retries=1):
    """Run one notebook: {wall, peak_rss, peak_cuda, errors, soft_failures, slowest}.

    A chapter whose kernel stops answering (a cell past ``timeout``, a dead kernel) is
    run again, up to ``retries`` times, and the report says so: on a loaded machine a
    kernel's reply has been seen to go missing after an interactive-widget cell.
    """
    for attempt in range(retries + 1):
        result = _run_once(path, capped, timeout)
        result["attempts"] = attempt + 1
        if not result.pop("stalled"):
            return result
    return result


def _run_once(path, capped, timeout):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    n_cells = len(nb.cells)
    extra = [SOFT_ASSERTS] if capped else []
    nb.cells = (
        [nbformat.v4.new_code_cell(code) for code in extra]
        + nb.cells
        + [nbformat.v4.new_code_cell(MEASURE)]
    )
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
        crashed = None
    except Exception as error:  # the kernel died or a cell timed out
        crashed = f"{type(error).__name__}: {str(error)[-500:]}"
    wall = time.perf_counter() - start

    cells = nb.cells[len(extra) : len(extra) + n_cells]
    by_count = {
        cell.get("execution_count"): i
        for i, cell in enumerate(cells)
        if cell.cell_type == "code"
    }
    errors, timings = [], []
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        expected = "raises-exception" in cell.metadata.get(
            "tags", []
        )  # as Jupyter Book reads the tag
        for output in cell.get("outputs", []):
            if output.output_type == "error" and not expected:
                errors.append(
                    dict(cell=i, error=f"{output.ename}: {output.evalue}"[:400])
                )
        execution = cell.metadata.get("execution", {})
        if "iopub.execute_input" in execution and "shell.execute_reply" in execution:
            from datetime import datetime

            seconds = datetime.fromisoformat(
                execution["shell.execute_reply"].replace("Z", "+00:00")
            ) - datetime.fromisoformat(
                execution["iopub.execute_input"].replace("Z", "+00:00")
            )
            timings.append((seconds.total_seconds(), i))
    if crashed:
        errors.append(dict(cell=None, error=crashed))
    measure = {}
    for output in nb.cells[-1].get("outputs", []):
        text = output.get("text", "")
        if "OLDSCHOOL_MEASURE " in text:
            measure = json.loads(text.split("OLDSCHOOL_MEASURE ", 1)[1])
    if not measure and not crashed:
        errors.append(dict(cell=None, error="the measuring cell printed nothing"))
    offset = (
        (measure.get("first_count") or 0) - (nb.cells[0].get("execution_count") or 0)
        if capped
        else 0
    )
    soft = [
        dict(
            cell=by_count.get(f["count"] - offset),
            line=f["line"],
            test=f["test"],
            message=f["message"],
        )
        for f in measure.get("soft_failures", [])
    ]
    return dict(
        chapter=path.name,
        wall=wall,
        stalled=crashed is not None,
        cpu_seconds=measure.get("cpu_seconds"),
        peak_rss=measure.get("peak_rss"),
        peak_cuda=measure.get("peak_cuda"),
        errors=errors,
        soft_failures=soft,
        slowest=sorted(timings, reverse=True)[:3],
    )


def training_throughput(device, capped):
    """Training steps per second of the GPU-mode models, float32 against bf16 autocast.

    Through ``train.train``'s own precision path.
    """
    import torch

    from oldschool import (
        autoencoder_kl,
        config,
        autoencoder_kl_loss,
        data,
        denoising,
        guidance,
        nets,
        sde,
        train,
    )

    steps = 2 if capped else 30
    rows = []
    s3, s4, s7 = (config.settings(ch, "gpu", capped) for ch in ("ch3", "ch4", "ch7"))

    def ch3():
        vae = autoencoder_kl.small_vae(
            4, s3.block_out_channels, s3.layers_per_block, s3.norm_num_groups
        )
        model = torch.nn.ModuleDict(
            {"vae": vae, "loss": autoencoder_kl_loss.KLAutoencoderLoss(None, 0.0, 1e-6)}
        )
        x = torch.rand(max(s3.batch_size, 1) * 4, 3, s3.patch, s3.patch) * 2 - 1
        return model, autoencoder_kl_loss.training_loss, x, s3.batch_size

    def ch7():
        images, labels = data.digits(return_labels=True)
        model = guidance.class_conditional_unet(s7)
        schedule = sde.DiscreteVP.stable_diffusion()

        def loss(m, b):
            return guidance.cfg_loss(m, b, schedule, p_uncond=s7.p_uncond)

        return model, loss, (images, labels), s7.batch_size

    def ch4():
        model = nets.ScoreMLP(
            dim=2, hidden=s4.hidden, layers=s4.layers, embed_dim=s4.embed_dim
        )
        vp = sde.VPSDE()
        x = torch.randn(4096, 2)
        return (
            model,
            lambda m, b: denoising.dsm_loss(m, b, vp, parameterization="eps"),
            x,
            s4.batch_size,
        )

    for name, build in (
        ("ch3 KL autoencoder", ch3),
        ("ch7 U-Net", ch7),
        ("ch4 ScoreMLP", ch4),
    ):
        for precision in (torch.float32, torch.bfloat16):
            torch.manual_seed(0)
            model, loss_fn, x, batch = build()
            model = model.to(device)
            run = dict(
                steps=1,
                batch_size=batch,
                lr=1e-4,
                generator=torch.Generator().manual_seed(0),
                progress=False,
                precision=precision,
            )
            train.train(model, loss_fn, x, **run)  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            history = train.train(model, loss_fn, x, **{**run, "steps": steps})
            if device.type == "cuda":
                torch.cuda.synchronize()
            rows.append(
                dict(
                    model=name,
                    dtype=str(precision)[6:],
                    batch=batch,
                    steps=steps,
                    steps_per_s=steps / history.seconds,
                    loss=history.final("loss"),
                )
            )
    return rows


def forward_benchmarks(capped):
    """The repository's forward benchmarks, small when capped; their printed tables."""
    small = capped or not _cuda()
    runs = [
        [str(ROOT / "benchmarks" / "unet_throughput.py")]
        + (["--batch", "1", "--size", "16", "--repeats", "2"] if small else []),
        [str(ROOT / "benchmarks" / "bench_autoencoder_kl.py")]
        + (
            ["--size", "32", "--batch", "1", "--warmup", "1", "--repeats", "2"]
            if small
            else []
        ),
    ]
    texts = []
    for command in runs:
        result = subprocess.run(
            [sys.executable, *command],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        shown = " ".join([Path(command[0]).name, *command[1:]])
        texts.append(
            f"$ python {shown}\n"
            + (
                result.stdout
                if result.returncode == 0
                else f"FAILED ({result.returncode})\n{result.stderr[-2000:]}"
            )
        )
    return texts


def _cuda():
    import torch

    return torch.cuda.is_available()


def megabytes(n):
    return "-" if n is None else f"{n / 2**20:,.0f}"


def write_report(results, throughput, forward, capped, device, total):
    """The markdown report and its JSON twin in _build/gpu-check/; the report's path."""
    import torch

    OUT.mkdir(parents=True, exist_ok=True)
    where = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    )
    load = os.getloadavg()
    kind = "capped (OLDSCHOOL_CAP=1)" if capped else "full GPU columns"
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    lines = [
        f"# GPU-mode check: {kind}",
        "",
        f"Device: {where}; torch {torch.__version__}; "
        f"{torch.get_num_threads()} threads in this process, "
        f"OMP_NUM_THREADS={threads}; load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}; "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}; chapters took {total:.0f} s in all.",
        "",
        "| chapter | wall (s) | kernel CPU (s) | peak RSS (MiB) | peak CUDA (MiB) "
        "| errors | assertions not met | slowest cells (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        slow = ", ".join(f"#{i}: {s:.1f}" for s, i in r["slowest"])
        cpu = "-" if r["cpu_seconds"] is None else f"{r['cpu_seconds']:.1f}"
        lines.append(
            f"| {r['chapter']} | {r['wall']:.1f} | {cpu} | "
            f"{megabytes(r['peak_rss'])} | {megabytes(r['peak_cuda'])} | "
            f"{len(r['errors'])} | {len(r['soft_failures'])} | {slow} |"
        )
    for r in results:
        if r["errors"] or r["soft_failures"]:
            lines += ["", f"## {r['chapter']}"]
        for e in r["errors"]:
            lines.append(f"- ERROR in cell {e['cell']}: `{e['error']}`")
        for f in r["soft_failures"]:
            lines.append(
                f"- assertion not met (capped), cell {f['cell']} line {f['line']}: "
                f"`{f['test']}`"
            )
    if throughput:
        lines += [
            "",
            "## Training throughput, float32 and bf16 autocast (train.train)",
            "",
            "| model | dtype | batch | steps | steps/s | mean loss |",
            "|---|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {t['model']} | {t['dtype']} | {t['batch']} | {t['steps']} | "
            f"{t['steps_per_s']:.2f} | {t['loss']:.4g} |"
            for t in throughput
        ]
    if forward:
        lines += ["", "## Forward benchmarks", ""] + [
            f"```\n{text.rstrip()}\n```" for text in forward
        ]
    path = OUT / "report.md"
    path.write_text("\n".join(lines) + "\n")
    (OUT / "report.json").write_text(
        json.dumps(
            dict(
                capped=capped,
                device=str(device),
                chapters=results,
                throughput=throughput,
                forward=forward,
            ),
            indent=1,
        )
    )
    return path


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--capped",
        action="store_true",
        help="OLDSCHOOL_CAP=1 (the default without CUDA)",
    )
    parser.add_argument(
        "--chapters", nargs="*", default=None, help="name prefixes, e.g. ch03 ch07"
    )
    parser.add_argument(
        "--no-benchmarks", action="store_true", help="only the chapters"
    )
    parser.add_argument(
        "--timeout",
        type=int,
        default=None,
        help="seconds a cell may take before the chapter fails (300 capped, 3600 full)",
    )
    args = parser.parse_args()

    cuda = _cuda()
    capped = args.capped or not cuda
    os.environ.update(
        OLDSCHOOL_MODE="gpu",
        OLDSCHOOL_CAP="1" if capped else "0",
        OLDSCHOOL_PROGRESS="0",
        PYTHONPATH=os.pathsep.join(
            [str(ROOT), os.environ.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep),
    )
    if not cuda:
        os.environ.setdefault("OLDSCHOOL_DEVICE", "cpu")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(ROOT))
    import torch

    from oldschool import config

    device = config.device()
    print(f"GPU mode on {device}, {'capped' if capped else 'full columns'}", flush=True)
    # a lost kernel reply fails (and retries), not hangs
    timeout = args.timeout or (300 if capped else 3600)
    results, start = [], time.perf_counter()
    for path in chapters(args.chapters):
        result = run_chapter(path, capped, timeout)
        results.append(result)
        again = f" (attempt {result['attempts']})" if result["attempts"] > 1 else ""
        print(
            f"{path.name}{again}: {result['wall']:.1f} s, "
            f"peak RSS {megabytes(result['peak_rss'])} MiB, "
            f"{len(result['errors'])} errors, "
            f"{len(result['soft_failures'])} assertions not met",
            flush=True,
        )
        for e in result["errors"][:3]:
            print(f"    cell {e['cell']}: {e['error']}", flush=True)
    total = time.perf_counter() - start
    throughput, forward = [], []
    if not args.no_benchmarks:
        if device.type == "cpu":
            torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        throughput = training_throughput(device, capped)
        forward = forward_benchmarks(capped)
    path = write_report(results, throughput, forward, capped, device, total)
    print(f"report: {path.relative_to(ROOT)}")
    failed = [r["chapter"] for r in results if r["errors"]]
    if failed:
        print(f"FAILED: errors in {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
