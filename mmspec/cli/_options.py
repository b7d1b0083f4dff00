"""Shared option types for the commands."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

SpecArg = Annotated[Path, typer.Argument(help="Spec file (YAML).", metavar="SPEC", show_default=False)]
VariantOpt = Annotated[
    str | None,
    typer.Option("--variant", "-v", metavar="NAME", help="Apply the named override set from the spec's `variants:`."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="PATH=VALUE",
                 help="Override one value after the variant, e.g. --set encoders.text.layers=2 (repeatable)."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary output on stderr.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
WeightsOpt = Annotated[
    Path | None,
    typer.Option("--weights", metavar="PATH",
                 help="Load pretrained weights: a .safetensors file, or a Hugging Face checkpoint directory "
                      "(model.safetensors, sharded too). Names map through the spec's `weights:` section."),
]
AllowTorchLoadOpt = Annotated[
    bool,
    typer.Option("--allow-torch-load",
                 help="Also read PyTorch pickles (.bin/.pt/.pth/.ckpt), with torch.load(weights_only=True): "
                      "plain tensors only, never arbitrary objects."),
]
MaxParamsOpt = Annotated[
    str | None,
    typer.Option("--max-params", metavar="N",
                 help="Refuse a spec whose parameter count, estimated before anything is allocated, exceeds N "
                      "(e.g. 2e10; default 2e9)."),
]
MaxActivationOpt = Annotated[
    str | None,
    typer.Option("--max-activation-bytes", metavar="BYTES",
                 help="Refuse a spec whose activation memory for one example at the declared maximum sizes "
                      "exceeds BYTES (e.g. 128GiB; default 64GiB)."),
]


class Device(StrEnum):
    """Where exported models are verified."""

    cpu = "cpu"
    cuda = "cuda"


class Precision(StrEnum):
    """Arithmetic of the compiled graph."""

    fp32 = "fp32"
    fp16 = "fp16"


class Quantize(StrEnum):
    """Quantization of the compiled graph."""

    int8 = "int8"
