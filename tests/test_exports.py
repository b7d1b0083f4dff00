"""`exports:`: several verified graphs per spec. Planning errors are located; a two-tower CLIP compiles to three
verified ONNX files whose composition (run as the manifest says) equals the monolithic eager model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

from mmspec.api import build, capture, compile, graph_views, load_spec
from mmspec.errors import SpecError
from mmspec.graph.capture import example_call
from mmspec.graph.inputs import make_inputs, trace_sizes
from mmspec.testing import dump_spec

ROOT = Path(__file__).resolve().parents[1]
TOWERS = {
    "image_tower": {"inputs": ["image"], "outputs": ["image_proj"]},
    "text_tower": {"inputs": ["text"], "outputs": ["text_proj"]},
    "similarity": {"inputs": ["image_proj", "text_proj"], "outputs": ["clip"]},
}


def _clip(tmp_path: Path, exports: dict, outputs: list | None = None) -> Path:
    """specs/clip.yaml with `exports:` (and without its `outputs:` unless given), written to tmp_path."""
    tree = yaml.safe_load((ROOT / "specs" / "clip.yaml").read_text())
    tree.pop("outputs")
    if outputs is not None:
        tree["outputs"] = outputs
    tree["exports"] = exports
    path = tmp_path / "clip.yaml"
    path.write_text(dump_spec(tree))
    return path


def _problems(tmp_path: Path, exports: dict, outputs: list | None = None) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        load_spec(_clip(tmp_path, exports, outputs), "tiny")
    return [(d.code, d.message) for d in info.value.diagnostics]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exports")
    spec = _clip(tmp, TOWERS)
    out = tmp / "out"
    return spec, out, compile(spec, out_dir=out, variant="tiny")


def test_plan_graphs(tmp_path):
    plan = load_spec(_clip(tmp_path, TOWERS), "tiny").plan
    assert [g.name for g in plan.graphs] == ["image_tower", "text_tower", "similarity"]
    image, text, sim = plan.graphs
    assert [n.name for n in image.nodes] == ["vision", "image_proj"]
    assert [n.name for n in text.nodes] == ["text_tower", "text_proj"]
    assert [n.name for n in sim.nodes] == ["clip"]
    assert [(gi.name, gi.info.shape) for gi in sim.inputs] == [("image_proj", ("batch", 16)),
                                                               ("text_proj", ("batch", 16))]
    assert sim.sources == ["node image_proj.embedding", "node text_proj.embedding"]
    assert [name for name, _, _ in plan.outputs] == ["image_proj", "text_proj", "clip_image_embeds",
                                                     "clip_logits_per_image", "clip_logits_per_text",
                                                     "clip_text_embeds"]


def test_graphs_run_after_their_feeders(tmp_path):
    exports = {"similarity": TOWERS["similarity"], "image_tower": TOWERS["image_tower"],
               "text_tower": TOWERS["text_tower"]}
    plan = load_spec(_clip(tmp_path, exports), "tiny").plan
    assert [g.name for g in plan.graphs] == ["image_tower", "text_tower", "similarity"]


def test_graphs_feeding_each_other_are_a_cycle(tmp_path):
    exports = {
        "projections": {"inputs": ["vision.pooled", "text_tower.pooled"], "outputs": ["image_proj", "text_proj"]},
        "rest": {"inputs": ["image", "text", "image_proj", "text_proj"],
                 "outputs": ["vision.pooled", "text_tower.pooled", "clip"]},
    }
    assert _problems(tmp_path, exports) == [("cycle", "exports: graphs projections, rest feed each other in a cycle, "
                                                      "so no order can run them; merge them, or feed the shared "
                                                      "tensors from one graph only")]


def test_missing_input_is_located(tmp_path):
    probs = _problems(tmp_path, {"sim": {"inputs": ["image_proj"], "outputs": ["clip"]}})
    assert probs == [("missing-input", "exports.sim: output 'clip' needs modality 'text', which graph 'sim' does "
                                       "not take; add `text` to exports.sim.inputs (or an input computed from it)")]


def test_unused_input_is_located(tmp_path):
    probs = _problems(tmp_path, {"towers": {"inputs": ["image", "text"], "outputs": ["image_proj"]}})
    assert probs == [("unused-input", "exports.towers.inputs: 'text' is not needed by the graph's outputs; "
                                      "remove it")]


def test_exports_and_outputs_conflict(tmp_path):
    probs = _problems(tmp_path, {"all": {"inputs": ["image", "text"], "outputs": ["clip"]}}, outputs=["clip"])
    assert [c for c, _ in probs] == ["conflict"]


def test_objectives_stay_out(tmp_path):
    probs = _problems(tmp_path, {"all": {"inputs": ["image", "text"], "outputs": ["contrastive"]}})
    assert ("training-only", "output 'contrastive' is an objective; objectives are training-only and never "
                             "exported") in probs


def test_input_and_output_names_are_unique(tmp_path):
    probs = _problems(tmp_path, {"echo": {"inputs": ["image_proj", "image"], "outputs": ["image_proj", "vision"]}})
    assert ("duplicate-name", "exports.echo: the ONNX output name 'image_proj' of image_proj.embedding is already "
                              "an input of the graph (node image_proj.embedding); export a computed tensor "
                              "instead") in probs


def test_views_capture_bit_exactly(tmp_path):
    loaded = load_spec(_clip(tmp_path, TOWERS), "tiny")
    model = build(loaded)
    for graph, view in zip(loaded.plan.graphs, graph_views(model).values(), strict=True):
        inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=3, inputs=graph.inputs)
        with torch.no_grad():
            eager, traced = view(inputs), example_call(capture(view), inputs)
        assert len(eager) == len(traced) == len(graph.outputs)
        for a, b in zip(eager, traced, strict=True):
            assert torch.equal(a, b), graph.name


def test_compile_writes_every_graph(compiled):
    spec, out, report = compiled
    stem = "clip-tiny"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{stem}.{g}.onnx" for g in TOWERS] + [f"{stem}.report.json", f"{stem}.manifest.json"])
    assert json.loads((out / f"{stem}.report.json").read_text()) == report
    assert "onnx" not in report and "verification" not in report and "passes" not in report
    assert list(report["graphs"]) == list(TOWERS)
    for g, section in report["graphs"].items():
        assert section["verification"]["passed"], g
        assert section["onnx"]["path"] == str(out / f"{stem}.{g}.onnx")
        assert section["passes"]
    manifest = json.loads((out / f"{stem}.manifest.json").read_text())
    assert manifest["graphs"]["similarity"]["inputs"] == [
        {"name": "image_proj", "shape": ["batch", 16], "dtype": "float32", "source": "node image_proj.embedding"},
        {"name": "text_proj", "shape": ["batch", 16], "dtype": "float32", "source": "node text_proj.embedding"}]
    assert manifest["graphs"]["text_tower"]["inputs"] == [
        {"name": "text", "shape": ["batch", "text_len"], "dtype": "int64", "source": "modality text"}]
    assert manifest["connections"] == [
        {"from": {"graph": g, "output": name}, "to": {"graph": "similarity", "input": name}}
        for g, name in (("image_tower", "image_proj"), ("text_tower", "text_proj"))]


def test_composition_equals_monolithic_model(compiled):
    spec, out, _ = compiled
    manifest = json.loads((out / "clip-tiny.manifest.json").read_text())
    loaded = load_spec(spec, "tiny")
    model = build(loaded)
    sizes = {**trace_sizes(loaded.plan), "batch": 3}
    inputs = make_inputs(loaded.plan, sizes, seed=7)
    with torch.no_grad():
        eager = dict(zip(model.output_names, (t.numpy() for t in model(inputs)), strict=True))
    feeds = {(c["to"]["graph"], c["to"]["input"]): (c["from"]["graph"], c["from"]["output"])
             for c in manifest["connections"]}
    results: dict[str, dict[str, np.ndarray]] = {}
    for g, entry in manifest["graphs"].items():  # manifest order is a run order
        session = ort.InferenceSession(str(out / entry["file"]), providers=["CPUExecutionProvider"])
        args = {i["name"]: results[feeds[g, i["name"]][0]][feeds[g, i["name"]][1]] if (g, i["name"]) in feeds
                else inputs[i["name"]].numpy() for i in entry["inputs"]}
        names = [o["name"] for o in entry["outputs"]]
        results[g] = dict(zip(names, session.run(names, args), strict=True))
    for g, outs in results.items():
        for name, got in outs.items():
            np.testing.assert_allclose(got, eager[name], atol=1e-4, rtol=1e-3, err_msg=f"{g}.{name}")
    assert set(results["image_tower"]) == {"image_proj"} and set(results["text_tower"]) == {"text_proj"}
    # the towers' embeddings are the monolithic graph's
    np.testing.assert_allclose(results["similarity"]["clip_image_embeds"],
                               eager["image_proj"] / np.linalg.norm(eager["image_proj"], axis=-1, keepdims=True),
                               atol=1e-4, rtol=1e-3)


def test_cli_compile_and_an_unexported_feed(tmp_path):
    spec = _clip(tmp_path, {"text_head": {"inputs": ["text_tower.pooled"], "outputs": ["text_proj"]}})
    run = subprocess.run([sys.executable, "-m", "mmspec.cli", "compile", str(spec), "--variant", "tiny", "-o",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert f"wrote {tmp_path / 'out' / 'clip-tiny.text_head.onnx'}" in run.stderr
    manifest = json.loads((tmp_path / "out" / "clip-tiny.manifest.json").read_text())
    assert manifest["graphs"]["text_head"]["inputs"][0]["source"] == "node text_tower.pooled"
    assert manifest["connections"] == [{"from": None, "to": {"graph": "text_head", "input": "text_tower_pooled"},
                                        "note": "no graph exports node text_tower.pooled; the caller provides it"}]
