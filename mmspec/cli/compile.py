"""`mmspec compile SPEC`: build, capture, optimize, export, verify -> DIR/<stem>.onnx + report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmspec.cli._options import QuietOpt, SetOpt, SpecArg, VariantOpt


def compile_spec(
    spec: SpecArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("build"),
    variant: VariantOpt = None,
    set_: SetOpt = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (20-25).", min=18, max=25)] = 20,
    device: Annotated[str, typer.Option(help="Verify on cpu or cuda.")] = "cpu",
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Prove the export on ONNX Runtime.")] = True,
    quiet: QuietOpt = False,
) -> None:
    """Compile a spec to a verified ONNX file and a report.json."""
    from rich.console import Console

    from mmspec.api import compile
    from mmspec.errors import UsageError

    if device not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu or cuda, got {device!r}")
    console = Console(stderr=True, quiet=quiet)
    with console.status("loading") as status:
        report = compile(spec, out, variant, set_ or (), opset, device, verify,
                         progress=lambda step: status.update(f"{step}..."))
    v = report["verification"]
    checked = f"verified on {len(v['cases'])} ORT runs" if v else "not verified (--no-verify)"
    console.print(f"wrote {report['onnx']['path']} ({report['onnx']['bytes']:,} bytes, "
                  f"{report['params']['total']:,} params), {checked}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_spec)
