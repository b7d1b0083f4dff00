"""The published JSON Schema (schemas/mmspec.schema.json) is what `mmspec schema` prints, and every spec in specs/
names it on its first line, so VS Code (or any YAML language server) completes and checks specs. Regenerate the
file with: `.venv/bin/mmspec schema > schemas/mmspec.schema.json`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from mmspec.registry import spec_model
from mmspec.spec.yaml_safe import load_yaml_file

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "schemas" / "mmspec.schema.json"
HEADER = "# yaml-language-server: $schema=../schemas/mmspec.schema.json"


def test_the_published_schema_is_current():
    """Compared with `mmspec schema` in a fresh process: other tests register throwaway components in this one."""
    proc = subprocess.run([sys.executable, "-m", "mmspec.cli", "schema"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(SCHEMA.read_text()) == json.loads(proc.stdout), (
        "schemas/mmspec.schema.json is stale: run `.venv/bin/mmspec schema > schemas/mmspec.schema.json`")
    assert set(json.loads(proc.stdout)["$defs"]) <= set(spec_model().model_json_schema()["$defs"])


@pytest.mark.parametrize("spec", sorted((ROOT / "specs").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_spec_names_the_schema(spec):
    assert spec.read_text().splitlines()[0] == HEADER


def test_the_schema_validates_the_reference_specs_as_an_editor_would():
    """A YAML language server validates against this file: every reference spec passes it, a typo does not."""
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    editor = validator(schema)  # built once: jsonschema.validate checks the schema again on every call
    for spec in sorted((ROOT / "specs").glob("*.yaml")):
        editor.validate(load_yaml_file(spec)[0])
    bad = load_yaml_file(ROOT / "specs" / "bert.yaml")[0]
    bad["encoders"]["bert"]["widht"] = 3
    with pytest.raises(jsonschema.ValidationError, match="widht"):
        editor.validate(bad)


def test_every_component_field_has_a_description_and_its_default_in_the_schema():
    """What an editor shows on hover: each field of each registered component says what it is (an attribute
    docstring, or the shared COMMON_FIELDS text), and an optional field shows its default."""
    from mmspec.registry import list_components
    from mmspec.spec.base import describe_schema

    model = spec_model()
    defs = describe_schema(model.model_json_schema(), model)["$defs"]
    problems = []
    for c in list_components():
        if not c.config.__module__.startswith("mmspec."):
            continue  # components that examples and fuzz tests register in this worker
        schema = defs[c.config.__name__]
        required = set(schema.get("required", []))
        for field, prop in schema["properties"].items():
            if not prop.get("description"):
                problems.append(f"{c.slot}/{c.name}.{field}: no description")
            if field not in required and "default" not in prop:
                problems.append(f"{c.slot}/{c.name}.{field}: no default")
    assert not problems, f"{len(problems)} undocumented fields:\n" + "\n".join(problems)
