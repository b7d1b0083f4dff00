"""`mmspec validate SPEC...`: schema and cross checks only; never imports torch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mmspec.cli._options import SetOpt, VariantOpt
from mmspec.errors import SpecError, UsageError


def validate(
    specs: Annotated[list[Path], typer.Argument(help="Spec files.", show_default=False)],
    variant: VariantOpt = None,
    set_: SetOpt = None,
) -> None:
    """Check specs: YAML safety, schema, references, shapes. Reports every error of every file."""
    from mmspec.api import load_spec

    failed: list[str] = []
    for path in specs:
        try:
            loaded = load_spec(path, variant, set_ or ())
        except SpecError as e:
            failed.append(e.render())
            continue
        print(f"{path}: ok ({loaded.stem}, {len(loaded.plan.nodes)} components, "
              f"{len(loaded.plan.outputs)} outputs)")
    if failed:
        print("\n".join(failed), file=sys.stderr)
        raise UsageError(f"{len(failed)} of {len(specs)} spec(s) invalid")


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
