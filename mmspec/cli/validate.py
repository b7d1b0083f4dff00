"""`mmspec validate SPEC...`: schema and cross checks only; never imports torch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mmspec.cli._options import SetOpt, VariantOpt
from mmspec.errors import SpecError, UsageError


def validate(
    specs: Annotated[list[Path], typer.Argument(help="Spec files.", metavar="SPEC", show_default=False)],
    variant: VariantOpt = None,
    set_: SetOpt = None,
) -> None:
    """Check specs without building them: YAML safety, schema, references, shapes.

    Every error of every file is reported as FILE:LINE:COL: error[CODE]: message.

    Exit code 2 when any spec is invalid. Never imports torch.
    """
    from mmspec.api import load_spec
    from mmspec.spec.loader import parse_sets

    parse_sets(set_ or ())  # a malformed --set is one usage error, not one per file
    failed = 0
    for path in specs:
        try:
            loaded = load_spec(path, variant, set_ or ())
        except SpecError as e:
            failed += 1
            _stderr(e.render())
            continue
        except UsageError as e:  # e.g. --variant that this spec does not define: report it, check the rest
            failed += 1
            _stderr(f"error: {e}")
            continue
        print(f"{path}: ok ({loaded.stem}: {len(loaded.plan.nodes)} components, "
              f"{len(loaded.plan.outputs)} outputs)", flush=True)
    if failed:
        raise UsageError(f"{failed} of {len(specs)} spec(s) invalid")


def _stderr(text: str) -> None:
    sys.stdout.flush()
    print(text, file=sys.stderr, flush=True)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
