"""verify_onnx: the gate itself -- every kind of disagreement is reported, nothing is raised."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper

from mmspec.backends import (
    TOLERANCE_FP32,
    available_providers,
    export_onnx,
    first_failure_message,
    make_session,
    verify_onnx,
)
from mmspec.backends import onnxruntime as backend_ort
from mmspec.errors import CompileError

OUTPUTS = ["hidden", "pooled"]


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.out = nn.Linear(16, 32), nn.Linear(32, 16)

    def forward(self, x):
        h = self.out(F.gelu(self.fc(x)))
        return h, h.mean(1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(path, eager reference) for a [batch, seq, 16] -> ([batch, seq, 16], [batch, 16]) model."""
    torch.manual_seed(0)
    gm = torch.fx.symbolic_trace(Block().eval())
    res = export_onnx(
        gm,
        (torch.randn(2, 5, 16),),
        input_names=["x"],
        output_names=OUTPUTS,
        dynamic_axes={"x": {0: "batch", 1: "seq"}},
        path=tmp_path_factory.mktemp("verify") / "block.onnx",
    )

    def reference(case):
        with torch.no_grad():
            return {n: o.numpy() for n, o in zip(OUTPUTS, gm(torch.from_numpy(case["x"])), strict=True)}

    return res.path, reference


def cases(*shapes):
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal(s).astype(np.float32)} for s in shapes]


def run(path, reference, shapes=((2, 5, 16), (1, 5, 16), (3, 9, 16)), names=OUTPUTS):
    return verify_onnx(
        path, reference, cases(*shapes), output_names=names, providers=available_providers(), **TOLERANCE_FP32
    )


def test_passing_report_has_design_shape(exported):
    report = run(*exported)
    assert report["passed"] and report["failures"] == []
    assert report["tolerance"] == {"atol": 1e-4, "rtol": 1e-3}
    assert [(c["shapes"]["x"], c["ort_optimization"]) for c in report["cases"]] == [
        (s, o) for s in ([2, 5, 16], [1, 5, 16], [3, 9, 16]) for o in ("disabled", "all")
    ]
    for case in report["cases"]:
        assert case["provider"] == "CPUExecutionProvider"
        assert set(case["outputs"]) == set(OUTPUTS)
        assert all(0 <= v["max_abs"] < 1e-5 and v["max_rel"] >= 0 for v in case["outputs"].values())
    json.dumps(report, allow_nan=False)
    assert first_failure_message(report) == ""


def test_injected_mismatch_names_the_output_and_its_diff(exported):
    path, reference = exported

    def wrong(case):
        out = reference(case)
        return out | {"pooled": out["pooled"] + np.float32(1e-2)}

    report = run(path, wrong)
    assert not report["passed"]
    message = first_failure_message(report)
    assert message.startswith("output 'pooled' differs: max_abs 1.0e-02 max_rel ")
    assert "(shapes batch=2 seq=5, CPUExecutionProvider, ort_optimization=disabled)" in message
    assert len(report["failures"]) == 6 and all("'pooled'" in f for f in report["failures"])
    for case in report["cases"]:
        assert case["outputs"]["pooled"]["max_abs"] == pytest.approx(1e-2, abs=1e-5)
        assert case["outputs"]["hidden"]["max_abs"] < 1e-5


def test_nan_positions_must_agree(exported):
    path, reference = exported

    def nan(case):
        out = reference(case)
        out["hidden"][0, 0, 0] = np.nan
        return out

    report = run(path, nan, shapes=((2, 5, 16),))
    assert not report["passed"]
    assert first_failure_message(report).startswith("output 'hidden' has NaN/Inf at 1 positions")
    json.dumps(report, allow_nan=False)  # the stats skip non-finite positions


def test_dtype_and_shape_must_match(exported):
    path, reference = exported
    as_f64 = run(path, lambda c: reference(c) | {"pooled": reference(c)["pooled"].astype(np.float64)}, ((2, 5, 16),))
    assert "output 'pooled' has dtype float32, eager has float64" in first_failure_message(as_f64)
    reshaped = run(path, lambda c: reference(c) | {"pooled": reference(c)["pooled"].reshape(-1)}, ((2, 5, 16),))
    assert "output 'pooled' has shape [2, 16], eager has [32]" in first_failure_message(reshaped)


def test_output_order_is_checked(exported):
    path, reference = exported
    report = run(path, reference, names=["pooled", "hidden"])
    assert not report["passed"]
    assert first_failure_message(report).startswith(
        "ORT outputs are ['hidden', 'pooled'], expected ['pooled', 'hidden']"
    )


def _hand_model(tmp_path, node, inputs, outputs, initializers=()):
    graph = helper.make_graph([node], "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    path = tmp_path / "hand.onnx"
    onnx.save(model, str(path))
    return path


def test_ort_run_failure_is_recorded_not_raised(tmp_path):
    """A shape frozen inside the graph: declared [batch, 4] but reshaped to a constant [2, 4]."""
    path = _hand_model(
        tmp_path,
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor("shape", TensorProto.INT64, [2], [2, 4])],
    )
    report = verify_onnx(
        path,
        lambda c: {"y": c["x"]},
        [{"x": np.ones((2, 4), np.float32)}, {"x": np.ones((1, 4), np.float32)}],
        output_names=["y"],
        providers=["CPUExecutionProvider"],
    )
    assert not report["passed"] and len(report["failures"]) == 2
    message = first_failure_message(report)
    assert message.startswith("ORT run failed: ") and "Reshape" in message
    assert message.endswith("(shapes batch=1, CPUExecutionProvider, ort_optimization=disabled) (+1 more)")
    assert [c["outputs"] != {} for c in report["cases"]] == [True, True, False, False]


def test_ort_load_failure_is_recorded(tmp_path):
    path = _hand_model(
        tmp_path,
        helper.make_node("NoSuchOp", ["x"], ["y"]),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])],
    )
    report = verify_onnx(
        path,
        lambda c: {"y": c["x"]},
        [{"x": np.ones(2, np.float32)}],
        output_names=["y"],
        providers=["CPUExecutionProvider"],
    )
    assert not report["passed"]
    assert first_failure_message(report).startswith("ORT cannot load the model: ")
    assert "\n" not in first_failure_message(report)


def test_integer_outputs_must_be_exact(tmp_path):
    path = _hand_model(
        tmp_path,
        helper.make_node("Identity", ["x"], ["y"]),
        [helper.make_tensor_value_info("x", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, ["n"])],
    )
    case = {"x": np.array([5000, 7], np.int64)}  # 1 <= atol + rtol * 5000 would pass a float gate
    report = verify_onnx(
        path,
        lambda c: {"y": c["x"] + np.array([1, 0])},
        [case],
        output_names=["y"],
        providers=["CPUExecutionProvider"],
    )
    assert not report["passed"] and "output 'y' differs: max_abs 1.0e+00" in first_failure_message(report)


def test_relative_tolerance_scales_with_magnitude(tmp_path):
    """Around |ref| = 100 the gate is 1e-4 + 1e-3 * 100: a 5e-4 relative error passes, 2e-3 fails."""
    path = _hand_model(
        tmp_path,
        helper.make_node("Identity", ["x"], ["y"]),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
    )
    case = [{"x": np.full(4, 100.0, np.float32)}]

    def verify(rel):
        return verify_onnx(
            path,
            lambda c: {"y": c["x"] * np.float32(1 + rel)},
            case,
            output_names=["y"],
            providers=["CPUExecutionProvider"],
        )

    ok, bad = verify(5e-4), verify(2e-3)
    assert ok["passed"], ok["failures"]
    assert ok["cases"][0]["outputs"]["y"]["max_rel"] == pytest.approx(5e-4, rel=1e-2)
    assert not bad["passed"] and first_failure_message(bad).startswith("output 'y' differs: max_abs 2.0e-01")


def test_no_cases_is_a_failure(exported):
    report = verify_onnx(exported[0], exported[1], [], output_names=OUTPUTS, providers=["CPUExecutionProvider"])
    assert not report["passed"] and report["failures"] == ["no verification cases"]


def test_available_providers(monkeypatch):
    assert available_providers() == ["CPUExecutionProvider"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(CompileError, match="torch sees no CUDA device"):
        available_providers("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(backend_ort.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(CompileError, match="has no CUDAExecutionProvider"):
        available_providers("cuda")
    monkeypatch.setattr(
        backend_ort.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert available_providers("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("optimization", "level"),
    [
        ("disabled", ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
        ("all", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
    ],
)
def test_make_session_options(exported, optimization, level):
    session = make_session(exported[0], "CPUExecutionProvider", optimization)
    options = session.get_session_options()
    assert options.graph_optimization_level == level
    assert options.log_severity_level == 3
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert session.get_providers() == ["CPUExecutionProvider"]
