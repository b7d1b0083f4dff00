"""`mmspec validate SPEC...`: schema and cross checks only; never imports torch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mmspec.cli._options import MaxActivationOpt, MaxParamsOpt, SetOpt, VariantOpt
from mmspec.errors import SpecError, UsageError


def validate(
    specs: Annotated[list[Path], typer.Argument(help="Spec files.", metavar="SPEC", show_default=False)],
    variant: VariantOpt = None,
    set_: SetOpt = None,
    max_params: MaxParamsOpt = None,
    max_activation_bytes: MaxActivationOpt = None,
) -> None:
    """Check specs without building them: YAML safety, schema, references, shapes, budgets.

    Every error of every file is reported as FILE:LINE:COL: error[CODE]: message. Without --variant,
    each of a spec's variants is checked too.

    Exit code 2 when any spec is invalid. Never imports torch.
    """
    from functools import partial

    from mmspec.api import load_spec
    from mmspec.spec.budget import budget_from_options
    from mmspec.spec.loader import parse_sets

    parse_sets(set_ or ())  # a malformed --set is one usage error, not one per file
    load_spec = partial(load_spec, budget=budget_from_options(max_params, max_activation_bytes))
    failed = 0
    for path in specs:
        loaded = _check(load_spec, path, variant, set_ or ())
        if loaded is None:
            failed += 1
            continue
        variants = [] if variant else sorted(loaded.spec.variants)
        results = [_check(load_spec, path, v, set_ or ()) for v in variants]
        if any(r is None for r in results):
            failed += 1
            continue
        names = f"; variants: {', '.join(variants)}" if variants else ""
        print(f"{path}: ok ({loaded.stem}: {len(loaded.plan.nodes)} components, "
              f"{len(loaded.plan.outputs)} outputs{names})", flush=True)
    if failed:
        raise UsageError(f"{failed} of {len(specs)} spec(s) invalid")


def _check(load_spec, path: Path, variant: str | None, sets):
    """The loaded spec, or None after reporting why it is invalid."""
    try:
        return load_spec(path, variant, sets)
    except SpecError as e:
        _stderr(e.render())
    except UsageError as e:  # e.g. --variant that this spec does not define: report it, check the rest
        _stderr(f"error: {e}")
    return None


def _stderr(text: str) -> None:
    sys.stdout.flush()
    print(text, file=sys.stderr, flush=True)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
