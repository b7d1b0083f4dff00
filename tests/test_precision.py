"""`compile --precision fp16` and `--quantize int8`: the files are what they claim (fp16 initializers, int8
quantized products), verification applies the precision's rule and can fail, and the report says how far the
outputs moved from the fp32 eager model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from safetensors.torch import save_file

import mmspec.backends
from mmspec.api import compile, load_spec
from mmspec.cli import run
from mmspec.errors import VerificationError
from mmspec.graph.inputs import make_inputs

ROOT = Path(__file__).resolve().parents[1]
BERT, VIT = ROOT / "specs" / "bert.yaml", ROOT / "specs" / "vit.yaml"


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


@pytest.fixture(scope="module")
def fp16(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("fp16")
    return compile(BERT, out, "tiny", precision="fp16")


@pytest.fixture(scope="module")
def int8(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("int8")
    return compile(BERT, out, "tiny", quantize="int8")


def test_fp16_file_and_rule(fp16):
    model = onnx.load(fp16["onnx"]["path"])
    floats = [t for t in model.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    assert floats and all(t.data_type == onnx.TensorProto.FLOAT16 for t in floats if len(t.dims) == 2)
    assert [i["dtype"] for i in fp16["onnx"]["inputs"]] == ["int64"] * 3  # inputs and outputs keep their types
    assert [o["dtype"] for o in fp16["onnx"]["outputs"]] == ["float32"] * 2
    v = fp16["verification"]
    assert v["passed"] and v["tolerance"] == {"atol": 1e-2, "rtol": 1e-2, "cosine": 0.999}
    assert all(0.999 <= s["cosine"] <= 1 + 1e-9 for case in v["cases"] for s in case["outputs"].values())
    p = fp16["precision"]
    assert p["mode"] == "fp16" and set(p["vs_fp32"]) == {"mlm", "nsp"}
    assert all(0 < d["max_abs"] < 1e-2 for d in p["vs_fp32"].values())  # moved, within the fp16 rule


def test_int8_file_and_delta(int8):
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= _ops(Path(int8["onnx"]["path"]))
    assert int8["verification"]["passed"] and int8["verification"]["tolerance"] is None
    p = int8["precision"]
    assert p["mode"] == "int8" and p["method"] == "dynamic int8 quantization"
    assert 0 < p["vs_fp32"]["mlm"]["max_abs"] < 0.5
    assert 0.8 <= p["vs_fp32"]["mlm"]["top1_agreement"] <= 1.0  # classifier heads get arg-max agreement
    assert "top1_agreement" in p["vs_fp32"]["nsp"]
    assert p["vs_fp32"]["mlm"]["top1_margin"] > 0


def test_top1_margin_is_the_median_gap_of_the_reference():
    ref = np.array([[3.0, 1.0, 0.5], [0.0, 2.0, 1.75], [1.0, 1.0, 0.0]], np.float32)
    got = ref + np.array([[0, 0, 0], [0, -0.5, 0], [0, 0, 0]], np.float32)
    delta = mmspec.backends.accuracy_delta({"y": got}, {"y": ref}, {"y"})["y"]
    assert delta["top1_margin"] == pytest.approx(float(np.median([2.0, 0.25, 0.0])))
    assert delta["top1_agreement"] == pytest.approx(2 / 3) and delta["max_abs"] == pytest.approx(0.5)


def test_static_int8_with_calibration(tmp_path):
    loaded = load_spec(VIT, "tiny")
    batch = make_inputs(loaded.plan, {"batch": 4}, seed=3)
    save_file({k: v.contiguous() for k, v in batch.items()}, tmp_path / "calib.safetensors")
    report = compile(VIT, tmp_path / "out", "tiny", quantize="int8", calibration=tmp_path / "calib.safetensors")
    assert report["precision"]["method"] == "static int8 quantization"
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(Path(report["onnx"]["path"]))
    assert report["precision"]["vs_fp32"]["classifier"]["top1_agreement"] >= 0.5


def test_fp16_verification_can_fail(tmp_path, monkeypatch):
    """A conversion that moves the outputs beyond the fp16 rule fails verification and leaves nothing."""
    convert = mmspec.backends.to_fp16

    def bad(src, dst):
        convert(src, dst)
        model = onnx.load(str(dst))
        for t in model.graph.initializer:
            if t.data_type == onnx.TensorProto.FLOAT16 and len(t.dims) == 2:
                values = onnx.numpy_helper.to_array(t) * np.float16(1.5)
                t.CopyFrom(onnx.numpy_helper.from_array(values, t.name))
        onnx.save(model, str(dst))

    monkeypatch.setattr(mmspec.backends, "to_fp16", bad)
    with pytest.raises(VerificationError, match=r"\(fp16\)"):
        compile(BERT, tmp_path, "tiny", precision="fp16")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("argv", "message"), [
    (["--precision", "fp16", "--quantize", "int8"], "leave out --precision fp16"),
    (["--calibration", "x.safetensors"], "add it"),
    (["--precision", "fp8"], "fp8"),
])
def test_option_errors(argv, message, tmp_path, capsys):
    assert run(["compile", str(BERT), "--variant", "tiny", "-o", str(tmp_path), "-q", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_calibration_file_is_checked(tmp_path, capsys):
    save_file({"text": torch.zeros(2, 4, dtype=torch.int64)}, tmp_path / "calib.safetensors")
    code = run(["compile", str(BERT), "--variant", "tiny", "-o", str(tmp_path / "out"), "-q", "--quantize", "int8",
                "--calibration", str(tmp_path / "calib.safetensors")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--calibration" in err and "missing text_mask, text_segments" in err


def test_multi_graph_specs_refuse_lower_precision(tmp_path, capsys):
    assert run(["compile", str(ROOT / "specs" / "gpt2.yaml"), "--variant", "tiny", "-o", str(tmp_path), "-q",
                "--precision", "fp16"]) == 2
    assert "exports:" in capsys.readouterr().err


def test_report_json_round_trips(fp16):
    assert json.loads(Path(fp16["onnx"]["path"]).with_suffix(".report.json").read_text())["precision"] == \
        fp16["precision"]


def test_int8_quantizes_a_softmax_tied_to_its_embedding(int8):
    """BERT's MLM decoder reads the word table through a Transpose; int8 gives it its own quantized weight."""
    graph = onnx.load(str(Path(int8["onnx"]["path"]))).graph
    tables = {i.name for i in graph.initializer}
    assert not [n.name for n in graph.node if n.op_type == "Transpose" and n.input[0] in tables]
    consumers = [n.op_type for n in graph.node if any(i.endswith(".untied_quantized") for i in n.input)]
    assert consumers and set(consumers) <= {"MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}
