"""Every reference spec: tiny variant captures bit-exactly, matches its golden files, and compiles to a
verified ONNX file; the full size builds on the meta device."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from regen_golden import COMMAND, GOLDEN, golden_texts

from mmspec.api import build, capture, load_spec, optimize
from mmspec.graph.capture import example_call
from mmspec.graph.inputs import make_inputs, trace_sizes, verification_shapes
from mmspec.passes import DEFAULT_PIPELINE
from mmspec.spec.tensors import dim_value


def test_capture_is_bit_exact(spec_path):
    loaded = load_spec(spec_path, "tiny")
    model = build(loaded)
    gm = capture(model)
    batch_axes = {m.batch for m in loaded.spec.modalities.values()}
    for i, sizes in enumerate(verification_shapes(loaded.plan, batch_axes)):
        inputs = make_inputs(loaded.plan, sizes, seed=i)
        with torch.no_grad():
            eager, traced = model(inputs), example_call(gm, inputs)
        assert len(eager) == len(traced) == len(loaded.plan.outputs)
        for name, a, b in zip(model.output_names, eager, traced, strict=True):
            assert torch.equal(a, b), f"{name}: captured graph differs from eager at {sizes}"


def test_passes_keep_numbers(spec_path):
    loaded = load_spec(spec_path, "tiny")
    model = build(loaded)
    gm, records = optimize(capture(model))
    assert [r.name for r in records] == [cls.name for cls in DEFAULT_PIPELINE]
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan))
    with torch.no_grad():
        for a, b in zip(model(inputs), example_call(gm, inputs), strict=True):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
    assert not any(type(m).__name__.startswith("Dropout") for m in gm.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in gm.modules())


def test_golden(spec_path):
    for name, text in golden_texts(spec_path).items():
        path = GOLDEN / name
        assert path.exists(), f"missing golden file {path}; run `{COMMAND}`"
        assert path.read_text() == text, f"{name} differs from its golden file; if intended, run `{COMMAND}`"


def test_compile_tiny_verifies(spec_path, tiny_export):
    out, report = tiny_export(spec_path)
    loaded = load_spec(spec_path, "tiny")
    stem = f"{loaded.spec.name}-tiny"
    if loaded.plan.graphs:
        _exports_verify(loaded, report, out, stem)
        return
    assert sorted(p.name for p in out.iterdir()) == [f"{stem}.onnx", f"{stem}.report.json"]
    assert json.loads((out / f"{stem}.report.json").read_text()) == report
    v = report["verification"]
    assert v["passed"] and v["tolerance"] == {"atol": 1e-4, "rtol": 1e-3}
    batches = {case["shapes"][loaded.plan.graph_inputs[0].name][0] for case in v["cases"]}
    assert {1, 2, 3} <= batches
    assert {c["ort_optimization"] for c in v["cases"]} == {"disabled", "all"}
    for case in v["cases"]:
        assert set(case["outputs"]) == set(report["onnx"] and [o["name"] for o in report["onnx"]["outputs"]])
        assert all(stats["max_abs"] <= 1e-4 for stats in case["outputs"].values())
    model = onnx.load(out / f"{stem}.onnx")
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["spec_sha256"] == loaded.sha256 == report["spec_sha256"]
    declared = [name for name, _, _ in loaded.plan.outputs]
    assert [o.name for o in model.graph.output] == declared
    for gi, onnx_in in zip(loaded.plan.graph_inputs, model.graph.input, strict=True):
        dims = [d.dim_param or d.dim_value for d in onnx_in.type.tensor_type.shape.dim]
        assert onnx_in.name == gi.name and dims == list(gi.info.shape)
    assert report["params"]["total"] == sum(report["params"]["by_component"].values())


def _exports_verify(loaded, report, out, stem):
    """A spec with `exports:` compiles every graph to its own verified file, with a manifest."""
    names = [g.name for g in loaded.plan.graphs]
    files = sorted([*(f"{stem}.{g}.onnx" for g in names), f"{stem}.manifest.json", f"{stem}.report.json"])
    assert sorted(p.name for p in out.iterdir()) == files
    assert list(report["graphs"]) == names
    for g, section in report["graphs"].items():
        v = section["verification"]
        assert v["passed"] and v["tolerance"] == {"atol": 1e-4, "rtol": 1e-3}, g
        assert {c["ort_optimization"] for c in v["cases"]} == {"disabled", "all"}, g
        assert all(s["max_abs"] <= 1e-4 for case in v["cases"] for s in case["outputs"].values()), g
    assert report["params"]["total"] == sum(report["params"]["by_component"].values())


@pytest.mark.parametrize("variant", [None, "tiny"])
def test_meta_build_matches_plan(spec_path, variant):
    loaded = load_spec(spec_path, variant)
    model = build(loaded, device="meta")
    assert all(p.is_meta for p in model.parameters())
    inputs = {k: v.to("meta") for k, v in make_inputs(loaded.plan, trace_sizes(loaded.plan)).items()}
    sizes = trace_sizes(loaded.plan)
    with torch.no_grad():
        outs = model(inputs)
    for (name, node, field), out in zip(loaded.plan.outputs, outs, strict=True):
        expected = [dim_value(d, sizes) for d in loaded.plan.bundles[node][field].shape]  # derived axes too
        assert list(out.shape) == expected, f"{name}: planned shape differs from the built model's"
