"""`mmspec summary SPEC`: parameters (total, trainable, per component) and FLOPs, on the meta device."""

from __future__ import annotations

import json

import typer

from mmspec.cli._options import JsonOpt, SetOpt, SpecArg, VariantOpt


def summary(spec: SpecArg, variant: VariantOpt = None, set_: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Parameter counts and forward FLOPs at the trace shape, computed without allocating weights."""
    from rich.console import Console
    from rich.table import Table

    from mmspec.api import load_spec, model_summary

    loaded = load_spec(spec, variant, set_ or ())
    info = model_summary(loaded)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    table = Table("component", "parameters", title=f"{loaded.stem}", title_justify="left")
    for name, count in info["params"]["by_component"].items():
        table.add_row(name, f"{count:,}")
    table.add_row("[bold]total[/bold]", f"[bold]{info['params']['total']:,}[/bold]")
    console = Console()
    console.print(table)
    shape = ", ".join(f"{k}={v}" for k, v in info["flops"]["shape"].items())
    console.print(f"trainable: {info['params']['trainable']:,}; forward FLOPs at {shape}: "
                  f"{info['flops']['forward']:,}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("summary")(summary)
