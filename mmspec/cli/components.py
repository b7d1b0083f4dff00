"""`mmspec components [NAME]`: the registry, with fields and export capability."""

from __future__ import annotations

import json
import types
import typing
from typing import Annotated, Any

import typer

from mmspec.cli._options import JsonOpt


def components(
    name: Annotated[str | None, typer.Argument(help="A component name or pattern (e.g. 'trans*').")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List registered components (built in, or from a plugin), or show one with its fields.

    A plugin (entry-point group `mmspec.components`) that failed to import is named on stderr with its error;
    the other components are listed as usual."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from mmspec.errors import UsageError, printable
    from mmspec.registry import get_component, list_components, plugin_errors
    from mmspec.spec.yaml_safe import dump_spec

    for p in plugin_errors():
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"warning: plugin {printable(p.entry_point)} from {printable(p.distribution)} failed to load, its "
            f"components are missing: {printable(p.error)}", markup=False)

    if name and not any(c in name for c in "*?["):
        try:
            found = [get_component(name)]
        except KeyError as e:
            raise UsageError(str(e.args[0])) from None
    else:
        found = list_components(name or "*")
        if not found:
            raise UsageError(f"no component matches {name!r}; `mmspec components` lists them all")
    rows = component_rows(found)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    console = Console()
    if len(rows) == 1:
        r = rows[0]
        console.print(f"[bold]{r['slot']}/{r['name']}[/bold]: {escape(r['summary'])}", highlight=False)
        console.print(f"from: {escape(printable(r['origin']))}", highlight=False)
        console.print(f"export: {_export(r)}"
                      + (f"; {escape(r['notes'])}" if r["notes"] else ""), highlight=False)
        console.print(f"weight layouts (weights.nodes.NODE.layout): {', '.join(r['weight_layouts'])}",
                      highlight=False)
        table = Table("field", "type", "default", "doc")
        for f, info in r["fields"].items():
            table.add_row(f, escape(info["type"]), "required" if info["required"] else escape(info["default"]),
                          escape(info["doc"]))
        console.print(table)
        for example, tree in r["examples"].items():
            console.print(f"\nexample {example!r} (a complete spec; its node `probe` is this component):",
                          highlight=False)
            console.print(escape(dump_spec(tree)).rstrip(), highlight=False)
        return
    table = Table("slot", "name", "export", "from", "summary")
    for r in rows:
        table.add_row(r["slot"], r["name"], _export(r), escape(printable(r["origin"])), escape(r["summary"]))
    console.print(table)


def component_rows(found: list) -> list[dict]:
    """What `components --json` prints for each registry entry (the documentation site's reference reads it)."""
    from mmspec.spec.base import field_docs

    return [
        {"slot": c.slot, "name": c.name, "origin": c.origin, "exportable": c.exportable and not c.training_only,
         "training_only": c.training_only, "summary": c.summary, "notes": c.notes,
         "weight_layouts": sorted({"mmspec", *c.config.weight_layouts}),
         "fields": {f: {"type": _type_name(info.annotation, info.metadata), "required": info.is_required(),
                        "default": None if info.is_required() else _yaml(info.default),
                        "doc": field_docs(c.config).get(f, "")}
                    for f, info in c.config.model_fields.items()},
         "examples": {ex.name: ex.spec(c) for ex in c.examples}}
        for c in found
    ]


def _export(row: dict) -> str:
    return "training-only" if row["training_only"] else "yes" if row["exportable"] else "no"


def _yaml(value: Any) -> str:
    """A default value as it would be written in a spec."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return repr(value) if isinstance(value, str) else str(value)


def _type_name(annotation: Any, metadata: list | tuple = ()) -> str:
    """A short, readable type: `int >= 1`, `'post' | 'pre'`, `list[ref]`, `PoolConfig | null`."""
    from pydantic import BaseModel

    from mmspec.spec.base import Name, Ref

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0], [*metadata, *args[1:]])
    if origin is typing.Literal:
        text = " | ".join(repr(a) for a in args)
    elif origin in (typing.Union, types.UnionType):
        text = " | ".join("null" if a is type(None) else _type_name(a) for a in args)
    elif origin is list:
        text = f"list[{_type_name(args[0])}]"
    elif origin is dict:
        text = f"{{{_type_name(args[0])}: {_type_name(args[1])}}}"
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        text = annotation.__name__
    else:
        text = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
    patterns = {typing.get_args(Name)[1].pattern: "name", typing.get_args(Ref)[1].pattern: "ref"}
    bounds = []
    for m in metadata:
        for inner in getattr(m, "metadata", None) or ():  # a FieldInfo inside Annotated[int, Field(ge=1)]
            bounds += _bound(inner)
        pattern = getattr(m, "pattern", None)
        if pattern in patterns:
            text = patterns[pattern]
        elif pattern:
            text += f" ~ {pattern}"
        bounds += _bound(m)
    return " ".join([text, *bounds])


def _bound(m: Any) -> list[str]:
    ops = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "len >=", "max_length": "len <="}
    return [f"{op} {getattr(m, k)}" for k, op in ops.items()
            if type(m).__name__ != "StringConstraints" and getattr(m, k, None) is not None]


def register(app: typer.Typer) -> None:
    app.command("components")(components)
