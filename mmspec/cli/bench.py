"""`mmspec bench SPEC`: latency of the spec's engines (eager, optimized, ONNX Runtime, int8, and the reference
implementation eager and hand-exported), measured side by side in one process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mmspec.cli._options import MaxActivationOpt, MaxParamsOpt, QuietOpt, SetOpt, SpecArg, VariantOpt


def _numbers(text: str, option: str) -> list[int]:
    from mmspec.errors import UsageError

    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected comma-separated integers, e.g. 1,8") from None
    if any(v < 1 for v in values):
        raise UsageError(f"{option} {text!r}: every value must be >= 1")
    return values


def _sizes(items: list[str]) -> dict[str, int]:
    from mmspec.errors import UsageError

    sizes = {}
    for item in items:
        axis, sep, value = item.partition("=")
        if not sep or not axis or not value.isdigit():
            raise UsageError(f"--size {item!r}: expected AXIS=N, e.g. --size seq=128")
        sizes[axis] = int(value)
    return sizes


def bench(
    spec: SpecArg,
    variant: VariantOpt = None,
    set_: SetOpt = None,
    batch: Annotated[str, typer.Option(metavar="B,B", help="Batch sizes, comma-separated.")] = "1,8",
    size: Annotated[
        list[str] | None,
        typer.Option(metavar="AXIS=N", help="Size of a named axis (repeatable); default min(its maximum, 128)."),
    ] = None,
    engine: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME", help="Time only these engines (repeatable): reference_eager, reference_onnx, "
                     "eager, optimized, ort_cpu, ort_cuda, ort_int8. Default: every one this machine can run."),
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Build the reference implementation from this config directory "
                     "(config.json) instead of its class default."),
    ] = None,
    rounds: Annotated[int, typer.Option(metavar="N", min=1, max=1000, help="Timed rounds per engine and batch.")] = 10,
    warmup: Annotated[int, typer.Option(metavar="N", min=0, max=100, help="Untimed rounds first.")] = 3,
    threads: Annotated[
        int | None, typer.Option(metavar="N", min=1, max=256,
                                 help="Threads of torch and ONNX Runtime (default: all cores).")
    ] = None,
    opset: Annotated[int, typer.Option(metavar="N", help="ONNX opset of the mmspec export (18 to 25).", min=18,
                                       max=25)] = 20,
    json_file: Annotated[Path | None, typer.Option("--json", metavar="FILE", help="Write the results as JSON.")] = None,
    profile: Annotated[
        bool, typer.Option("--profile", help="Also show where ONNX Runtime spends its time, by operator type.")
    ] = False,
    quiet: QuietOpt = False,
    max_params: MaxParamsOpt = None,
    max_activation_bytes: MaxActivationOpt = None,
) -> None:
    """Time the spec's engines on the same inputs, interleaved round by round, and print median, p10 and p90
    per engine and batch size, with each engine's ratio to eager.

    Results are ratios on this machine at this moment: run on a quiet machine and repeat. The reference
    engines need `reference.implementation` (a transformers class) whose configuration gives the spec's exact
    parameter count: the class default, or --reference DIR."""
    from rich.console import Console
    from rich.table import Table

    from mmspec import api
    from mmspec.spec.budget import budget_from_options

    console = Console(stderr=True, quiet=quiet, highlight=False, soft_wrap=True)
    if json_file is not None:
        api.check_writable(json_file, "--json", directory=False)
    result = api.bench(spec, variant, set_ or (), _numbers(batch, "--batch"), _sizes(size or []), rounds, warmup,
                       threads, engine, reference, opset, budget_from_options(max_params, max_activation_bytes),
                       progress=lambda step: console.print(f"{spec}: {step}...", markup=False), profile=profile)
    if json_file is not None:
        json_file.write_text(json.dumps(result, indent=2) + "\n")
    sizes = ", ".join(f"{k}={v}" for k, v in result["sizes"].items())
    table = Table("engine", "batch", "median ms", "p10 ms", "p90 ms", "÷ eager", "GFLOP/s", "max |Δ| vs eager",
                  title=f"{result['name']}{'-' + result['variant'] if result['variant'] else ''} ({sizes}; "
                        f"{result['machine']['threads']} threads; peak {result['peak_gflops']} GFLOP/s)",
                  title_justify="left")
    eager = {r["batch"]: r["median_ms"] for r in result["results"] if r["engine"] == "eager"}
    for r in result["results"]:
        ratio = f"{r['median_ms'] / eager[r['batch']]:.2f}" if r["batch"] in eager else "—"
        delta = f"{r['max_abs_vs_eager']:.1e}" if "max_abs_vs_eager" in r else "—"
        table.add_row(r["engine"], str(r["batch"]), f"{r['median_ms']:.2f}", f"{r['p10_ms']:.2f}",
                      f"{r['p90_ms']:.2f}", ratio, f"{r['gflops']:.1f}", delta)
    Console(highlight=False).print(table)
    for engine, by_batch in result.get("profiles", {}).items():
        for b, shares in by_batch.items():
            top = ", ".join(f"{op} {100 * share:.0f} %" for op, share in list(shares.items())[:6])
            Console(highlight=False).print(f"{engine} batch {b}: {top}", markup=False)
    for name, why in result["skipped"].items():
        console.print(f"not timed: {name}: {why}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
