"""`mmspec summary SPEC`: parameters (total, trainable, per component) and FLOPs, on the meta device."""

from __future__ import annotations

import json

import typer

from mmspec.cli._options import (
    AllowTorchLoadOpt,
    JsonOpt,
    MaxActivationOpt,
    MaxParamsOpt,
    SetOpt,
    SpecArg,
    VariantOpt,
    WeightsOpt,
)


def summary(spec: SpecArg, variant: VariantOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
            weights: WeightsOpt = None, allow_torch_load: AllowTorchLoadOpt = False, max_params: MaxParamsOpt = None,
            max_activation_bytes: MaxActivationOpt = None) -> None:
    """Parameter counts and forward FLOPs at the trace shape, computed without allocating weights.

    With --weights, also checks that checkpoint against the model exactly as `compile --weights` would load it
    (exit 2 with every problem listed when it does not fit)."""
    from rich.console import Console
    from rich.table import Table

    from mmspec.api import load_spec, model_summary
    from mmspec.cli.compile import weights_line
    from mmspec.spec.budget import budget_from_options

    loaded = load_spec(spec, variant, set_ or (), budget_from_options(max_params, max_activation_bytes))
    info = model_summary(loaded, weights, allow_torch_load)
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
    params = info["params"]
    console.print(f"trainable: {params['trainable']:,}, frozen: {params['total'] - params['trainable']:,}; "
                  f"forward FLOPs at {shape}: "
                  f"{info['flops']['forward']:,}", highlight=False)
    if weights:
        console.print(f"weights: {weights_line(info['weights'])}; all tensors fit", highlight=False, markup=False,
                      soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("summary")(summary)
