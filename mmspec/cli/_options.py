"""Shared option types for the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SpecArg = Annotated[Path, typer.Argument(help="Spec file (YAML).", show_default=False)]
VariantOpt = Annotated[str | None, typer.Option("--variant", "-v", help="Named variant from the spec's `variants:`.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override PATH=VALUE after the variant, e.g. encoders.text.layers=2 (repeatable)."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
