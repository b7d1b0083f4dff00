"""`mmspec components [NAME]`: the registry, with fields and export capability."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mmspec.cli._options import JsonOpt


def components(
    name: Annotated[str | None, typer.Argument(help="A component name or pattern (e.g. 'trans*').")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List registered components, or show one with its fields."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from mmspec.errors import UsageError
    from mmspec.registry import get_component, list_components

    if name and not any(c in name for c in "*?["):
        try:
            found = [get_component(name)]
        except KeyError as e:
            raise UsageError(str(e.args[0])) from None
    else:
        found = list_components(name or "*")
    rows = [
        {"slot": c.slot, "name": c.name, "exportable": c.exportable and not c.training_only,
         "training_only": c.training_only, "summary": c.summary, "notes": c.notes,
         "fields": {f: {"type": _type_name(info.annotation), "required": info.is_required(),
                        "default": None if info.is_required() else repr(info.default),
                        "doc": info.description or ""}
                    for f, info in c.config.model_fields.items()}}
        for c in found
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    console = Console()
    if len(rows) == 1:
        r = rows[0]
        console.print(f"[bold]{r['slot']}/{r['name']}[/bold]: {escape(r['summary'])}", highlight=False)
        console.print(f"export: {'training-only' if r['training_only'] else 'yes' if r['exportable'] else 'no'}"
                      + (f"; {escape(r['notes'])}" if r["notes"] else ""), highlight=False)
        table = Table("field", "type", "default", "doc")
        for f, info in r["fields"].items():
            table.add_row(f, escape(info["type"]), "required" if info["required"] else escape(info["default"]),
                          escape(info["doc"]))
        console.print(table)
        return
    table = Table("slot", "name", "export", "summary")
    for r in rows:
        table.add_row(r["slot"], r["name"], "training-only" if r["training_only"] else "yes", escape(r["summary"]))
    console.print(table)


def _type_name(annotation) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("mmspec.", "")


def register(app: typer.Typer) -> None:
    app.command("components")(components)
