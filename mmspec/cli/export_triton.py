"""`mmspec export-triton SPEC -o REPO`: a verified compile laid out as a Triton Inference Server model repository."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mmspec.cli._options import AllowTorchLoadOpt, Device, QuietOpt, SetOpt, SpecArg, VariantOpt, WeightsOpt
from mmspec.errors import printable


class Kind(StrEnum):
    """Where Triton places the model instances (`instance_group.kind`)."""

    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"


def export_triton(
    spec: SpecArg,
    repo: Annotated[Path, typer.Option("--out", "-o", metavar="REPO", help="Model repository directory.")],
    variant: VariantOpt = None,
    set_: SetOpt = None,
    max_batch_size: Annotated[int, typer.Option(metavar="N", min=1,
                                                help="Largest batch Triton's dynamic batcher forms.")] = 8,
    instances: Annotated[Kind, typer.Option(help="Instance kind: auto (GPU where the server has one), cpu or gpu.",
                                            case_sensitive=False)] = Kind.auto,
    instance_count: Annotated[int, typer.Option(metavar="N", min=1, help="Instances of each model.")] = 1,
    opset: Annotated[int, typer.Option(metavar="N", help="ONNX opset (18 to 25).", min=18, max=25)] = 20,
    device: Annotated[Device, typer.Option(help="Verify on this device.", case_sensitive=False)] = Device.cpu,
    quiet: QuietOpt = False,
    weights: WeightsOpt = None,
    allow_torch_load: AllowTorchLoadOpt = False,
) -> None:
    """Compile a spec and write it as an NVIDIA Triton model repository in REPO.

    One `onnxruntime_onnx` model per exported graph (`<model>/config.pbtxt`, `<model>/1/<file>.onnx`), with the
    spec's input and output names, dtypes and shapes and dynamic batching; a spec with several graphs also gets an
    ensemble named after it that runs them all once. Every graph is verified on ONNX Runtime first; nothing is
    written unless all of them pass. Other models already in REPO are left alone.
    """
    from rich.console import Console

    from mmspec.api import export_triton as export
    from mmspec.cli.compile import step_text

    console = Console(stderr=True, quiet=quiet, highlight=False, soft_wrap=True)
    report = export(spec, repo, variant, set_ or (), max_batch_size=max_batch_size, kind=instances.value,
                    count=instance_count, opset=opset, device=device.value,
                    progress=lambda step: console.print(f"{printable(str(spec))}: {step_text(step)}...",
                                                        markup=False),
                    weights=weights, allow_torch_load=allow_torch_load)
    models = report["triton"]["models"]
    console.print(f"wrote {len(models)} Triton model(s) into {printable(str(repo))}: {', '.join(models)}",
                  markup=False)


def register(app: typer.Typer) -> None:
    app.command("export-triton")(export_triton)
