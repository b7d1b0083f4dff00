"""`mmspec export-triton`: Triton model repositories that Triton's own model-config schema accepts, whose models
match their ONNX files, and whose ensembles, run step by step on ONNX Runtime as Triton would run them, give the
eager model's outputs."""

from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient
from google.protobuf import text_format

from mmspec.api import build, eager_graph, export_triton, load_spec
from mmspec.cli import run
from mmspec.runtime.triton import plan_repository

ROOT = Path(__file__).resolve().parents[1]
ATOL, RTOL = 1e-5, 1e-4
ORT_TYPES = {"TYPE_FP32": "tensor(float)", "TYPE_INT64": "tensor(int64)", "TYPE_BOOL": "tensor(bool)",
             "TYPE_INT32": "tensor(int32)", "TYPE_FP16": "tensor(float16)"}
NP_TYPES = {"TYPE_FP32": np.float32, "TYPE_INT64": np.int64, "TYPE_BOOL": np.bool_, "TYPE_INT32": np.int32}
CASES = {"clip-tiny_towers": ("clip.yaml", "tiny_towers"), "t5-tiny": ("t5.yaml", "tiny"),
         "bert-tiny": ("bert.yaml", "tiny")}


def _model_config_pb2():
    """Triton's model_config.proto definitions as the tritonclient package ships them (loaded by file: the
    package's grpc/__init__ needs grpcio, which these tests do not)."""
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PB2 = _model_config_pb2()
ModelConfig = PB2.ModelConfig


def parse(path: Path):
    return text_format.Parse(path.read_text(), ModelConfig())


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    out = {}
    for stem, (spec, variant) in CASES.items():
        repo = tmp_path_factory.mktemp(stem)
        out[stem] = repo, export_triton(ROOT / "specs" / spec, repo, variant)
    return out


@pytest.mark.parametrize("stem", CASES)
def test_every_config_parses_and_matches_its_onnx_file(repos, stem):
    repo, report = repos[stem]
    models = report["triton"]["models"]
    assert sorted(p.name for p in repo.iterdir()) == sorted(models)
    graphs = report.get("graphs", {stem: report})
    assert len(models) == len(graphs) + (len(graphs) > 1)  # one per graph, plus the ensemble of several
    for name in models:
        config = parse(repo / name / "config.pbtxt")
        assert config.name == name
        if config.platform == "ensemble":
            continue
        assert config.platform == "onnxruntime_onnx"
        session = ort.InferenceSession(str(repo / name / "1" / config.default_model_filename),
                                       providers=["CPUExecutionProvider"])
        batch = [-1] if config.max_batch_size else []
        for declared, actual in [(config.input, session.get_inputs()), (config.output, session.get_outputs())]:
            assert [t.name for t in declared] == [t.name for t in actual]
            for t, a in zip(declared, actual, strict=True):
                assert ORT_TYPES[_type_name(t.data_type)] == a.type, t.name
                dims = batch + list(t.dims)
                assert len(dims) == len(a.shape), t.name
                for d, axis in zip(dims, a.shape, strict=True):  # -1 exactly where the ONNX axis is symbolic
                    assert (d == -1 and not isinstance(axis, int)) or d == axis, (t.name, dims, a.shape)
        assert config.max_batch_size in (0, 8)
        assert config.HasField("dynamic_batching") == bool(config.max_batch_size)
        assert [g.kind for g in config.instance_group] == [PB2.ModelInstanceGroup.KIND_AUTO]


def _type_name(code: int) -> str:
    return PB2.DataType.Name(code)


def _random(config_tensor, batch: int, sizes: dict, rng) -> np.ndarray:
    """An input for one ensemble tensor: variable axes get the named test sizes (past caches start empty)."""
    shape = [batch] + [d if d >= 0 else sizes.get(config_tensor.name, sizes["*"]) for d in config_tensor.dims]
    kind = _type_name(config_tensor.data_type)
    if kind == "TYPE_INT64":
        return rng.integers(0, 16, shape).astype(np.int64)
    return rng.standard_normal(shape).astype(NP_TYPES[kind])


def run_ensemble(repo: Path, name: str, feeds: dict) -> dict:
    """What Triton does with an ensemble: run its steps in order on each model's ONNX file, mapping tensors by
    the steps' input_map/output_map; returns the ensemble's declared outputs."""
    config = parse(repo / name / "config.pbtxt")
    tensors = dict(feeds)
    for step in config.ensemble_scheduling.step:
        model = parse(repo / step.model_name / "config.pbtxt")
        session = ort.InferenceSession(str(repo / step.model_name / "1" / model.default_model_filename),
                                       providers=["CPUExecutionProvider"])
        outs = session.run(None, {k: tensors[v] for k, v in step.input_map.items()})
        produced = dict(zip([o.name for o in session.get_outputs()], outs, strict=True))
        for k, v in step.output_map.items():
            assert v not in tensors, f"{v} is produced twice"
            tensors[v] = produced[k]
    return {t.name: tensors[t.name] for t in config.output}


def test_clip_ensemble_gives_both_towers_of_the_eager_model(repos):
    repo, _ = repos["clip-tiny_towers"]
    config = parse(repo / "clip-tiny_towers" / "config.pbtxt")
    rng = np.random.default_rng(0)
    feeds = {t.name: _random(t, 3, {"*": 7}, rng) for t in config.input}
    got = run_ensemble(repo, "clip-tiny_towers", feeds)
    model = build(load_spec(ROOT / "specs" / "clip.yaml", "tiny_towers"))
    image, text = eager_graph(model, "image"), eager_graph(model, "text")
    want = {**image({"image": feeds["image"]}), **text({"text": feeds["text"]})}
    assert sorted(got) == sorted(want) == ["image_proj", "text_proj"]
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=ATOL, rtol=RTOL, err_msg=k)


def test_t5_ensemble_is_the_encoder_and_first_decoder_step(repos):
    repo, _ = repos["t5-tiny"]
    config = parse(repo / "t5-tiny" / "config.pbtxt")
    rng = np.random.default_rng(1)
    feeds = {t.name: _random(t, 2, {"*": 5, **{t.name: 0 for t in config.input if t.name.startswith("past")}}, rng)
             for t in config.input}
    feeds["source_mask"] = np.ones_like(feeds["source"])
    got = run_ensemble(repo, "t5-tiny", feeds)
    model = build(load_spec(ROOT / "specs" / "t5.yaml", "tiny"))
    encoder, step = eager_graph(model, "encoder"), eager_graph(model, "decoder_step")
    enc = encoder({n: feeds[n] for n in encoder.input_names})
    dec = step({n: enc[n] if n in enc else feeds[n] for n in step.input_names})
    want = {**enc, **dec}
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=ATOL, rtol=RTOL, err_msg=k)


def test_cli_writes_a_repository_and_leaves_other_models_alone(tmp_path):
    other = tmp_path / "someone_elses_model" / "config.pbtxt"
    other.parent.mkdir()
    other.write_text('name: "someone_elses_model"\n')
    stale = tmp_path / "bert-tiny" / "config.pbtxt"
    stale.parent.mkdir()
    stale.write_text("stale\n")
    code = run(["export-triton", str(ROOT / "specs" / "bert.yaml"), "--variant", "tiny", "-o", str(tmp_path), "-q",
                "--max-batch-size", "4", "--instances", "cpu", "--instance-count", "2"])
    assert code == 0
    assert other.read_text() == 'name: "someone_elses_model"\n'
    config = parse(stale)
    assert config.max_batch_size == 4
    assert [(g.kind, g.count) for g in config.instance_group] == [(PB2.ModelInstanceGroup.KIND_CPU, 2)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bert-tiny", "someone_elses_model"]


def test_nothing_is_written_when_a_model_file_may_not_be_replaced(tmp_path):
    config = tmp_path / "bert-tiny" / "config.pbtxt"
    config.parent.mkdir()
    config.write_text("kept\n")
    os.chmod(config, stat.S_IRUSR)
    code = run(["export-triton", str(ROOT / "specs" / "bert.yaml"), "--variant", "tiny", "-o", str(tmp_path), "-q"])
    assert code == 1
    assert config.read_text() == "kept\n"
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "bert-tiny", "bert-tiny/config.pbtxt"]


@pytest.mark.parametrize("argv", [["--max-batch-size", "0"], ["--instances", "tpu"], ["--instance-count", "0"]])
def test_bad_options_are_usage_errors(tmp_path, argv, capsys):
    assert run(["export-triton", str(ROOT / "specs" / "bert.yaml"), "-o", str(tmp_path), *argv]) == 2
    assert list(tmp_path.iterdir()) == []
    assert "Traceback" not in capsys.readouterr().err


def _entry(inputs, outputs, file="g.onnx"):
    return {"file": file, "inputs": inputs, "outputs": outputs}


def _t(name, shape, dtype="float32", source=None):
    return {"name": name, "shape": shape, "dtype": dtype, **({"source": source} if source else {})}


def test_a_graph_without_a_leading_batch_axis_runs_unbatched():
    (model,) = plan_repository("s", {"g": _entry([_t("x", [4, "n"])], [_t("y", ["batch", 2])])}, [])
    config = text_format.Parse(model.config, ModelConfig())
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [4, -1] and list(config.output[0].dims) == [-1, 2]


def test_ensemble_renames_outputs_that_clash_and_shares_inputs_of_one_source():
    graphs = {"a": _entry([_t("x", ["batch", 3], source="modality x")], [_t("y", ["batch", 3])]),
              "b": _entry([_t("x", ["batch", 3], source="modality x")], [_t("y", ["batch", 3])])}
    *_, ensemble = plan_repository("s", graphs, [])
    config = text_format.Parse(ensemble.config, ModelConfig())
    assert [t.name for t in config.input] == ["x"]
    assert [t.name for t in config.output] == ["a.y", "b.y"]
    assert [dict(s.output_map) for s in config.ensemble_scheduling.step] == [{"y": "a.y"}, {"y": "b.y"}]


def test_ensemble_orders_producers_first_and_refuses_cycles():
    graphs = {"late": _entry([_t("h", ["batch", 2])], [_t("out", ["batch", 2])]),
              "early": _entry([_t("x", ["batch", 2])], [_t("h", ["batch", 2])])}
    fed = [{"from": {"graph": "early", "output": "h"}, "to": {"graph": "late", "input": "h"}}]
    *_, ensemble = plan_repository("s", graphs, fed)
    config = text_format.Parse(ensemble.config, ModelConfig())
    assert [s.model_name for s in config.ensemble_scheduling.step] == ["s_early", "s_late"]
    assert [t.name for t in config.input] == ["x"]
    cycle = [*fed, {"from": {"graph": "late", "output": "out"}, "to": {"graph": "early", "input": "x"}}]
    with pytest.raises(ValueError, match="cycle"):
        plan_repository("s", graphs, cycle)


def test_a_dtype_triton_lacks_is_refused():
    with pytest.raises(ValueError, match="no data type"):
        plan_repository("s", {"g": _entry([_t("x", ["batch"], dtype="complex64")], [])}, [])
