"""`mmspec compile SPEC`: build, capture, optimize, export, verify -> DIR/<stem>.onnx + report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmspec.cli._options import Device, QuietOpt, SetOpt, SpecArg, VariantOpt

_STEPS = {"load": "loading the spec", "build": "building the model", "capture": "capturing the FX graph",
          "passes": "running graph passes", "export": "exporting to ONNX", "verify": "verifying on ONNX Runtime"}


def compile_spec(
    spec: SpecArg,
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Output directory.")] = Path("build"),
    variant: VariantOpt = None,
    set_: SetOpt = None,
    opset: Annotated[int, typer.Option(metavar="N", help="ONNX opset.", min=18, max=25)] = 20,
    device: Annotated[Device, typer.Option(help="Verify on this device.", case_sensitive=False)] = Device.cpu,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Prove the export on ONNX Runtime.")] = True,
    quiet: QuietOpt = False,
) -> None:
    """Compile a spec to DIR/<stem>.onnx and DIR/<stem>.report.json, verified against eager PyTorch.

    <stem> is the spec's name, or name-VARIANT. Nothing is written unless every step passes.

    A failed verification exits 1 and names the output and its max abs/rel difference.
    """
    from rich.console import Console

    from mmspec.api import compile

    console = Console(stderr=True, quiet=quiet, highlight=False, soft_wrap=True)
    if console.is_terminal:
        with console.status(_STEPS["load"]) as status:
            report = compile(spec, out, variant, set_ or (), opset, device.value, verify,
                             progress=lambda step: status.update(f"{_STEPS.get(step, step)}..."))
    else:  # logs and pipes: one plain line per step instead of a spinner
        report = compile(spec, out, variant, set_ or (), opset, device.value, verify,
                         progress=lambda step: console.print(f"{spec}: {_STEPS.get(step, step)}..."))
    v = report["verification"]
    checked = (f"verified on {len(v['cases'])} ONNX Runtime runs" if v else "NOT verified (--no-verify)")
    console.print(f"wrote {report['onnx']['path']} ({report['onnx']['bytes']:,} bytes, "
                  f"{report['params']['total']:,} params), {checked}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_spec)
