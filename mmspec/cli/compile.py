"""`mmspec compile SPEC`: build, capture, optimize, export, verify -> DIR/<stem>.onnx + report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmspec.cli._options import (
    AllowTorchLoadOpt,
    Device,
    MaxActivationOpt,
    MaxParamsOpt,
    Precision,
    Quantize,
    QuietOpt,
    SetOpt,
    SpecArg,
    VariantOpt,
    WeightsOpt,
)
from mmspec.errors import printable

_STEPS = {"load": "loading the spec", "precision": "lowering the precision", "build": "building the model",
          "weights": "loading weights", "capture": "capturing the FX graph",
          "passes": "running graph passes", "export": "exporting to ONNX", "verify": "verifying on ONNX Runtime"}


def step_text(step: str) -> str:
    """What a progress step is doing; `capture.G` (a graph of `exports:`) names the graph."""
    name, _, graph = step.partition(".")
    return _STEPS.get(name, name) + (f" of graph {graph}" if graph else "")


def compile_spec(
    spec: SpecArg,
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Output directory.")] = Path("build"),
    variant: VariantOpt = None,
    set_: SetOpt = None,
    opset: Annotated[int, typer.Option(metavar="N", help="ONNX opset (18 to 25).", min=18, max=25)] = 20,
    device: Annotated[Device, typer.Option(help="Verify on this device.", case_sensitive=False)] = Device.cpu,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Prove the export on ONNX Runtime.")] = True,
    quiet: QuietOpt = False,
    max_params: MaxParamsOpt = None,
    max_activation_bytes: MaxActivationOpt = None,
    weights: WeightsOpt = None,
    allow_torch_load: AllowTorchLoadOpt = False,
    precision: Annotated[
        Precision, typer.Option(help="fp16: an fp16 graph (fp32 inputs and outputs), verified with the fp16 rule.",
                                case_sensitive=False)] = Precision.fp32,
    quantize: Annotated[
        Quantize | None, typer.Option(help="int8: ONNX Runtime's int8 quantization of the graph (dynamic, or "
                                      "static with --calibration); how far outputs move goes into the report.",
                                      case_sensitive=False)] = None,
    calibration: Annotated[
        Path | None, typer.Option(metavar="FILE", help="safetensors batch of graph inputs (by name) that static int8 "
                                  "quantization measures activation ranges on.")] = None,
) -> None:
    """Compile a spec to DIR/<stem>.onnx and DIR/<stem>.report.json, verified against eager PyTorch.

    <stem> is the spec's name, or name-VARIANT. Nothing is written unless every step passes.

    A failed verification exits 1 and names the output and its max abs/rel difference. A checkpoint that
    cannot be read or does not fit the model (--weights) exits 2 and lists every problem.
    """
    from rich.console import Console

    from mmspec.api import compile
    from mmspec.spec.budget import budget_from_options

    budget = budget_from_options(max_params, max_activation_bytes)
    console = Console(stderr=True, quiet=quiet, highlight=False, soft_wrap=True)
    loading = {"weights": weights, "allow_torch_load": allow_torch_load, "precision": precision.value,
               "quantize": quantize and quantize.value, "calibration": calibration}
    if console.is_terminal:
        with console.status(_STEPS["load"]) as status:
            report = compile(spec, out, variant, set_ or (), opset, device.value, verify,
                             progress=lambda step: status.update(f"{step_text(step)}..."), budget=budget,
                             **loading)
    else:  # logs and pipes: one plain line per step instead of a spinner
        report = compile(spec, out, variant, set_ or (), opset, device.value, verify,
                         progress=lambda step: console.print(f"{printable(str(spec))}: {step_text(step)}...",
                                                            markup=False), budget=budget,
                         **loading)
    loaded = f", weights: {weights_line(report['weights'])}" if weights else ""
    for section in report["graphs"].values() if "graphs" in report else [report]:
        v = section["verification"]
        checked = (f"verified on {len(v['cases'])} ONNX Runtime runs" if v else "NOT verified (--no-verify)")
        if "precision" in report and report["precision"]["mode"] != "fp32":
            moved = max(d["max_abs"] for d in report["precision"]["vs_fp32"].values())
            checked += f"; {report['precision']['mode']}: max |Δ| vs fp32 {moved:.1e}"
        console.print(f"wrote {printable(section['onnx']['path'])} ({section['onnx']['bytes']:,} bytes, "
                      f"{report['params']['total']:,} params{loaded}), {checked}", markup=False)


def weights_line(report: dict) -> str:
    """One line about a load report: what was loaded, cast, initialised and left unused."""
    parts = [f"{report['loaded']:,} tensors from {printable(report['path'])} ({report['bytes']:,} bytes)"]
    parts += [f"{n} cast {kind}" for kind, n in report["cast"].items()]
    parts += [f"{len(report['new'])} new"] if report["new"] else []
    parts += [f"{len(report['ignored'])} unused"] if report["ignored"] else []
    return ", ".join(parts)


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_spec)
