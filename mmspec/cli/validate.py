"""`mmspec validate SPEC...`: schema and cross checks only; never imports torch."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mmspec.cli._options import MaxActivationOpt, MaxParamsOpt, SetOpt, VariantOpt
from mmspec.errors import Diagnostic, SpecError, UsageError, printable

USAGE = "usage"
"""The code of a problem that is not located in the file (an unknown --variant): `error: ...` in text."""


class Format(StrEnum):
    """How diagnostics are printed."""

    text = "text"
    json = "json"
    github = "github"


def validate(
    specs: Annotated[list[Path], typer.Argument(help="Spec files.", metavar="SPEC", show_default=False)],
    variant: VariantOpt = None,
    set_: SetOpt = None,
    max_params: MaxParamsOpt = None,
    max_activation_bytes: MaxActivationOpt = None,
    format_: Annotated[
        Format,
        typer.Option("--format", help="text: FILE:LINE:COL lines on stderr; json: one document on stdout for "
                     "editors and CI; github: GitHub Actions ::error annotations on stdout.", case_sensitive=False),
    ] = Format.text,
) -> None:
    """Check specs without building them: YAML safety, schema, references, shapes, budgets.

    Every error of every file is reported as FILE:LINE:COL: error[CODE]: message (or, with --format json,
    as {file, line, column, code, message, suggestion} objects). Without --variant, each of a spec's variants
    is checked too.

    Exit code 2 when any spec is invalid. Never imports torch.
    """
    from functools import partial

    from mmspec.api import load_spec
    from mmspec.spec.budget import budget_from_options
    from mmspec.spec.loader import parse_sets

    parse_sets(set_ or ())  # a malformed --set is one usage error, not one per file
    load_spec = partial(load_spec, budget=budget_from_options(max_params, max_activation_bytes))
    results = []
    for path in specs:
        diagnostics: list[Diagnostic] = []
        loaded = _check(load_spec, path, variant, set_ or (), diagnostics)
        variants = [] if variant or loaded is None else sorted(loaded.spec.variants)
        for v in variants:
            _check(load_spec, path, v, set_ or (), diagnostics)
        result = {"file": str(path), "valid": not diagnostics, "diagnostics": diagnostics}
        if loaded is not None:
            result.update(stem=loaded.stem, components=len(loaded.plan.nodes), outputs=len(loaded.plan.outputs),
                          variants=variants)
        results.append(result)
        _report(result, format_)
    failed = sum(not r["valid"] for r in results)
    if format_ is Format.json:
        for r in results:
            r["diagnostics"] = [d.as_json() for d in r["diagnostics"]]
        print(json.dumps({"specs": results, "valid": len(results) - failed, "invalid": failed}, indent=2))
    if failed:
        raise UsageError(f"{failed} of {len(specs)} spec(s) invalid")


def _check(load_spec, path: Path, variant: str | None, sets, diagnostics: list[Diagnostic]):
    """The loaded spec, or None after adding why it is invalid to `diagnostics`."""
    try:
        return load_spec(path, variant, sets)
    except SpecError as e:
        diagnostics.extend(e.diagnostics)
    except UsageError as e:  # e.g. --variant that this spec does not define: report it, check the rest
        diagnostics.append(Diagnostic(str(path), 0, 0, USAGE, str(e)))
    return None


def _report(result: dict, format_: Format) -> None:
    """Print one file's outcome as it is checked (json prints everything at the end)."""
    if format_ is Format.json:
        return
    if result["valid"]:
        names = f"; variants: {', '.join(result['variants'])}" if result["variants"] else ""
        print(f"{printable(result['file'])}: ok ({result['stem']}: {result['components']} components, "
              f"{result['outputs']} outputs{names})", flush=True)
    elif format_ is Format.github:
        for d in result["diagnostics"]:
            print(d.github(), flush=True)
    else:
        usage = [f"error: {d.message}" for d in result["diagnostics"] if d.code == USAGE]
        located = [d for d in result["diagnostics"] if d.code != USAGE]
        sys.stdout.flush()
        print("\n".join([SpecError(located).render()] * bool(located) + usage), file=sys.stderr, flush=True)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
