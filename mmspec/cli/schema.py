"""`mmspec schema`: the JSON Schema of the spec format, for editors."""

from __future__ import annotations

import json

import typer


def schema() -> None:
    """Print the JSON Schema of the spec format."""
    from mmspec.api import spec_model
    from mmspec.spec.base import describe_schema

    model = spec_model()
    print(json.dumps(describe_schema(model.model_json_schema(), model), indent=2))


def register(app: typer.Typer) -> None:
    app.command("schema")(schema)
