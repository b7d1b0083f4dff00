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


class Device(StrEnum):
    """Where exported models are verified."""

    cpu = "cpu"
    cuda = "cuda"
