"""`mmspec compile` leaves every training-time part out of the ONNX graph: a spec with an EMA teacher,
training-only projector/predictor heads and a frozen tower exports exactly what the same spec without
those parts exports."""

from __future__ import annotations

from pathlib import Path

import onnx

from mmspec.api import compile

SPECS = Path(__file__).parent / "specs"
TRAINING_ONLY = ("projector", "predictor", "teacher", "objectives", "byol")


def _graph(path: Path):
    model = onnx.load(path)
    inits = sorted((i.name, tuple(i.dims)) for i in model.graph.initializer)
    nodes = [n.op_type for n in model.graph.node]
    scopes = " ".join(p.value for n in model.graph.node for p in n.metadata_props if p.key.endswith("name_scopes"))
    return inits, nodes, scopes, model


def test_training_only_parts_are_not_exported(tmp_path):
    report = compile(SPECS / "byol.yaml", out_dir=tmp_path)
    plain = compile(SPECS / "byol_plain.yaml", out_dir=tmp_path)
    assert report["verification"]["passed"] and plain["verification"]["passed"]
    inits, nodes, scopes, model = _graph(tmp_path / "byol_parts.onnx")
    plain_inits, plain_nodes, _, _ = _graph(tmp_path / "byol_plain.onnx")
    assert inits == plain_inits and nodes == plain_nodes
    assert [o.name for o in model.graph.output] == ["online_pooled", "classifier"]
    named = " ".join(name for name, _ in inits) + " " + " ".join(n.name for n in model.graph.node) + " " + scopes
    assert scopes and not any(part in named for part in TRAINING_ONLY)
    assert {"online", "text_tower", "classifier"} <= {name.split(".")[1] for name, _ in inits if "." in name}
    # the report still counts what was built: the teacher holds a copy of online + projector, all frozen
    by = report["params"]["by_component"]
    assert by["teacher"] == by["online"] + by["projector"]
    assert report["params"]["trainable"] == report["params"]["total"] - by["teacher"] - by["text_tower"]
