"""export_onnx: named symbolic dims, metadata, opset checks, external data, atomic publish, silence."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

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
    discard,
    export_onnx,
    name_dims,
    onnx_signature,
    publish,
    sidecar,
    verify_onnx,
)
from mmspec.backends import onnx_export as onnx_export_module
from mmspec.blocks.attention import Attention as BlockAttention
from mmspec.blocks.attention import padding_bias
from mmspec.errors import CompileError


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        return (self.fc2(F.gelu(self.fc1(x))),)


class Attention(nn.Module):
    """SDPA block whose seq length flows through view/reshape."""

    def __init__(self, d=32, heads=4):
        super().__init__()
        self.heads, self.qkv, self.proj, self.ln = (
            heads,
            nn.Linear(d, 3 * d),
            nn.Linear(d, d),
            nn.LayerNorm(d),
        )

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, s, d)
        y = self.ln(x + self.proj(a))
        return y, y.mean(1)


class TwoInputs(nn.Module):
    """Text [batch, text_len, 16] and regions [batch, regions, 16]: batch is shared, lengths are not."""

    def __init__(self):
        super().__init__()
        self.t, self.r = nn.Linear(16, 16), nn.Linear(16, 16)

    def forward(self, text, regions):
        return (self.t(text).mean(1) * self.r(regions).amax(1),)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(8, 10)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):  # non-trivial stats so BN folding is exercised
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)

    def forward(self, image):
        return (self.fc(self.body(image)),)


class Specialises(nn.Module):
    """Broadcasting against a constant [2, 3] silently pins batch to 2 in torch.export."""

    def forward(self, x):
        return (x + torch.ones(2, 3),)


class Unsupported(nn.Module):
    def forward(self, x):
        return (torch.linalg.eigvals(x).real,)


def traced(cls: type[nn.Module]) -> torch.fx.GraphModule:
    """A seeded, eval-mode instance of `cls`, traced: the same weights every call."""
    torch.manual_seed(0)
    return torch.fx.symbolic_trace(cls().eval())


def eager_reference(module, input_names, output_names):
    def run(case):
        with torch.no_grad():
            outs = module(*(torch.from_numpy(case[n]) for n in input_names))
        return {n: o.numpy() for n, o in zip(output_names, outs, strict=True)}

    return run


def rand(*shape):
    return np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)


def dims(vi) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim]


def export_mlp(path, **kw):
    return export_onnx(
        traced(MLP),
        (torch.randn(2, 8),),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}},
        path=path,
        **kw,
    )


def test_mlp_export_is_checked_and_carries_metadata(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = export_mlp(tmp_path / "mlp.onnx", metadata={"mmspec.spec": "tiny.yaml", "mmspec.seed": "0"})
    assert [str(w.message) for w in caught] == []  # the exporter's warnings are swallowed
    model = onnx.load(str(res.path))
    onnx.checker.check_model(str(res.path), full_check=True)
    assert [dims(v) for v in model.graph.input] == [["batch", 8]]
    assert [dims(v) for v in model.graph.output] == [["batch", 4]]
    assert {p.key: p.value for p in model.metadata_props} == {"mmspec.spec": "tiny.yaml", "mmspec.seed": "0"}
    assert model.producer_name == "mmspec"
    assert [(o.domain, o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")] == [("", 20)]
    assert not res.external_data and not sidecar(res.path).exists()  # auto: small models are one file
    assert res.bytes == res.path.stat().st_size and res.opset == 20
    assert (res.inputs, res.outputs) == onnx_signature(res.path)
    assert res.inputs[0].shape == ("batch", 8) and res.inputs[0].dtype == "float32"


def test_attention_dims_are_named_and_runs_at_other_shapes(tmp_path):
    gm = traced(Attention)
    res = export_onnx(
        gm,
        (torch.randn(2, 5, 32),),
        input_names=["x"],
        output_names=["y", "pooled"],
        dynamic_axes={"x": {0: "batch", 1: "seq"}},
        path=tmp_path / "attn.onnx",
    )
    model = onnx.load(str(res.path))
    assert dims(model.graph.input[0]) == ["batch", "seq", 32]
    assert [dims(v) for v in model.graph.output] == [["batch", "seq", 32], ["batch", 32]]
    cases = [{"x": rand(*s, 32)} for s in [(2, 5), (1, 5), (3, 5), (2, 9), (3, 1)]]
    report = verify_onnx(
        res.path,
        eager_reference(gm, ["x"], ["y", "pooled"]),
        cases,
        output_names=["y", "pooled"],
        providers=available_providers(),
        **TOLERANCE_FP32,
    )
    assert report["passed"], report["failures"]
    assert max(o["max_abs"] for c in report["cases"] for o in c["outputs"].values()) < 1e-5


def test_shared_batch_is_one_dim_and_other_dims_stay_distinct(tmp_path):
    gm = traced(TwoInputs)
    res = export_onnx(
        gm,
        (torch.randn(2, 5, 16), torch.randn(2, 7, 16)),
        input_names=["text", "regions"],
        output_names=["fused"],
        dynamic_axes={"text": {0: "batch", 1: "text_len"}, "regions": {0: "batch", 1: "regions"}},
        path=tmp_path / "two.onnx",
    )
    model = onnx.load(str(res.path))
    assert [dims(v) for v in model.graph.input] == [["batch", "text_len", 16], ["batch", "regions", 16]]
    assert dims(model.graph.output[0]) == ["batch", 16]
    cases = [{"text": rand(b, t, 16), "regions": rand(b, r, 16)} for b, t, r in [(2, 5, 7), (1, 3, 9), (3, 8, 2)]]
    report = verify_onnx(
        res.path,
        eager_reference(gm, ["text", "regions"], ["fused"]),
        cases,
        output_names=["fused"],
        providers=available_providers(),
    )
    assert report["passed"], report["failures"]


def test_cnn_with_batchnorm_exports_folded_and_verifies(tmp_path):
    gm = traced(CNN)
    res = export_onnx(
        gm,
        (torch.randn(2, 3, 16, 16),),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}},
        path=tmp_path / "cnn.onnx",
    )
    model = onnx.load(str(res.path))
    assert dims(model.graph.input[0]) == ["batch", 3, 16, 16]
    assert dims(model.graph.output[0]) == ["batch", 10]
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}  # optimize=True folded BN
    report = verify_onnx(
        res.path,
        eager_reference(gm, ["image"], ["logits"]),
        [{"image": rand(b, 3, 16, 16)} for b in (2, 1, 3)],
        output_names=["logits"],
        providers=available_providers(),
    )
    assert report["passed"], report["failures"]


def test_opset_23_exports_attention_op_and_verifies(tmp_path):
    gm = traced(Attention)
    res = export_onnx(
        gm,
        (torch.randn(2, 5, 32),),
        input_names=["x"],
        output_names=["y", "pooled"],
        dynamic_axes={"x": {0: "batch", 1: "seq"}},
        path=tmp_path / "attn23.onnx",
        opset=23,
    )
    model = onnx.load(str(res.path))
    assert res.opset == 23 and {o.version for o in model.opset_import if o.domain == ""} == {23}
    assert "Attention" in {n.op_type for n in model.graph.node}
    report = verify_onnx(
        res.path,
        eager_reference(gm, ["x"], ["y", "pooled"]),
        [{"x": rand(*s, 32)} for s in [(2, 5), (1, 4), (3, 11)]],
        output_names=["y", "pooled"],
        providers=available_providers(),
    )
    assert report["passed"], report["failures"]


class PaddedCrossAttention(nn.Module):
    """mmspec's attention block: text [B, T, 16] attends to regions [B, S, 16] under a [B, 1, 1, S] padding bias."""

    def __init__(self):
        super().__init__()
        self.attn = BlockAttention(16, 16, 16, 4, 16)

    def forward(self, text, regions, regions_mask):
        return (self.attn(text, regions, padding_bias(regions_mask, text)),)  # B,T,16


@pytest.mark.parametrize("opset", [23, 25])
def test_native_attention_takes_a_broadcast_padding_mask(tmp_path, opset):
    """From opset 23 SDPA is ONNX's Attention, whose ORT kernel refuses a mask whose dims -2, -1 are not exactly
    [T, S]; the export expands it, so a padding mask verifies (queries and keys of different lengths)."""
    gm = traced(PaddedCrossAttention)
    res = export_onnx(
        gm,
        (torch.randn(2, 5, 16), torch.randn(2, 7, 16), torch.ones(2, 7, dtype=torch.int64)),
        input_names=["text", "regions", "regions_mask"],
        output_names=["y"],
        dynamic_axes={"text": {0: "batch", 1: "text_len"}, "regions": {0: "batch", 1: "regions"},
                      "regions_mask": {0: "batch", 1: "regions"}},
        path=tmp_path / "masked.onnx",
        opset=opset,
    )
    model = onnx.load(str(res.path))
    attention = [n for n in model.graph.node if n.op_type == "Attention"]
    assert len(attention) == 1 and attention[0].input[3].startswith("mmspec_attn_mask_")

    def case(b, t, s):
        mask = (np.arange(s)[None, :] < np.arange(s - b, s)[:, None]).astype(np.int64)  # row i keeps s - b + i
        return {"text": rand(b, t, 16), "regions": rand(b, s, 16), "regions_mask": mask}

    report = verify_onnx(
        res.path,
        eager_reference(gm, ["text", "regions", "regions_mask"], ["y"]),
        [case(2, 5, 7), case(1, 3, 9), case(3, 8, 4)],
        output_names=["y"],
        providers=available_providers(),
    )
    assert report["passed"], report["failures"]


@pytest.mark.parametrize(
    ("opset", "message"),
    [
        (26, "exporter wrote opset 18, asked for 26"),  # the exporter returns normally with a broken file
        (30, "opset 30 is not supported"),  # beyond what onnx knows: refused before exporting
    ],
)
def test_unsupported_opset_is_compile_error_and_leaves_no_file(tmp_path, opset, message):
    with pytest.raises(CompileError, match=message):
        export_mlp(tmp_path / "mlp.onnx", opset=opset)
    assert os.listdir(tmp_path) == []


def test_frozen_dynamic_axis_is_compile_error(tmp_path):
    with pytest.raises(CompileError, match=r"input 'x' axis 0 \('batch'\) was frozen to 2"):
        export_onnx(
            traced(Specialises),
            (torch.randn(2, 3),),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}},
            path=tmp_path / "s.onnx",
        )
    assert os.listdir(tmp_path) == []


def test_exporter_failure_is_one_line(tmp_path):
    with pytest.raises(CompileError) as info:
        export_onnx(
            Unsupported(),
            (torch.randn(2, 3, 3),),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}},
            path=tmp_path / "u.onnx",
        )
    message = str(info.value)
    assert message.startswith("ONNX export failed: ") and "linalg_eig" in message
    assert "\n" not in message and "Traceback" not in message and "\x1b" not in message
    assert os.listdir(tmp_path) == []


def test_bad_dim_name_is_refused_before_export(tmp_path):
    with pytest.raises(CompileError, match="not an identifier"):
        export_onnx(
            MLP(),
            (torch.randn(2, 8),),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "bad name"}},
            path=tmp_path / "m.onnx",
        )


def test_external_data_sidecar_and_publish_moves_both(tmp_path):
    stage, out = tmp_path / ".stage", tmp_path / "build"
    stage.mkdir()
    out.mkdir()
    res = export_mlp(stage / "mlp.onnx", external_data=True)
    assert res.external_data and sidecar(res.path).exists()
    assert res.bytes == res.path.stat().st_size + sidecar(res.path).stat().st_size
    locations = {
        e.value
        for t in onnx.load(str(res.path), load_external_data=False).graph.initializer
        for e in t.external_data
        if e.key == "location"
    }
    assert locations == {"mlp.onnx.data"}  # relative, next to the file
    final = publish(res.path, out / "mlp.onnx")
    assert sorted(os.listdir(out)) == ["mlp.onnx", "mlp.onnx.data"] and os.listdir(stage) == []
    onnx.checker.check_model(str(final), full_check=True)
    gm = traced(MLP)
    report = verify_onnx(
        final,
        eager_reference(gm, ["x"], ["y"]),
        [{"x": rand(3, 8)}],
        output_names=["y"],
        providers=available_providers(),
    )
    assert report["passed"], report["failures"]


def test_publish_single_file_removes_stale_sidecar(tmp_path):
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "mlp.onnx").write_bytes(b"old")
    (tmp_path / "build" / "mlp.onnx.data").write_bytes(b"stale")
    res = export_mlp(tmp_path / "mlp.onnx")
    publish(res.path, tmp_path / "build" / "mlp.onnx")
    assert os.listdir(tmp_path / "build") == ["mlp.onnx"]
    onnx.checker.check_model(str(tmp_path / "build" / "mlp.onnx"), full_check=True)


def test_publish_refuses_to_rename_a_file_with_sidecar(tmp_path):
    (tmp_path / "a.onnx").write_bytes(b"x")
    (tmp_path / "a.onnx.data").write_bytes(b"y")
    with pytest.raises(ValueError, match="pins the file name"):
        publish(tmp_path / "a.onnx", tmp_path / "b.onnx")


def test_discard_leaves_nothing(tmp_path):
    res = export_mlp(tmp_path / "mlp.onnx", external_data=True)
    assert sorted(os.listdir(tmp_path)) == ["mlp.onnx", "mlp.onnx.data"]
    discard(res.path)
    assert os.listdir(tmp_path) == []


def test_auto_external_data_follows_threshold(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export_module, "EXTERNAL_DATA_THRESHOLD", 100)
    assert export_mlp(tmp_path / "big.onnx").external_data


QUIET_SCRIPT = """
import pathlib, sys, torch
from mmspec.backends import export_onnx
from mmspec.errors import CompileError
out = pathlib.Path(sys.argv[1])
model = torch.fx.symbolic_trace(torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.GELU()).eval())
kw = dict(input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}})
export_onnx(model, (torch.randn(2, 8),), path=out / "ok.onnx", **kw)
try:
    export_onnx(model, (torch.randn(2, 8),), path=out / "bad.onnx", opset=26, **kw)
except CompileError:
    pass
"""


def test_exporter_prints_nothing_in_a_fresh_process(tmp_path):
    """Progress lines, registry warnings and the version converter's logged traceback all stay quiet.

    A fresh process, because pytest's own capture rebinds the torch logger's stream and root logging.
    """
    proc = subprocess.run(
        [sys.executable, "-c", QUIET_SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout, proc.stderr) == ("", "")
    assert os.listdir(tmp_path) == ["ok.onnx"]


def _model(inputs, outputs, value_info=()):
    def vi(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [vi(n, s) for n, s in inputs],
        [vi(n, s) for n, s in outputs],
        value_info=[vi(n, s) for n, s in value_info],
    )
    return helper.make_model(graph)


def test_name_dims_maps_exporter_symbols_everywhere():
    model = _model([("x", ["s72", "s70", 4])], [("y", ["s72*s70", 4])], [("v", ["s72", "(s70//2)"])])
    name_dims(model, {"x": {0: "batch", 1: "seq"}})
    assert dims(model.graph.input[0]) == ["batch", "seq", 4]
    assert dims(model.graph.output[0]) == ["batch*seq", 4]
    assert dims(model.graph.value_info[0]) == ["batch", "(seq//2)"]


def test_name_dims_rejects_merged_and_undeclared_dims():
    with pytest.raises(CompileError, match="made dims 'text_len' and 'regions' one"):
        name_dims(
            _model([("x", ["s0", "s1", "s1"])], [("y", [1])]),
            {"x": {0: "batch", 1: "text_len", 2: "regions"}},
        )
    with pytest.raises(CompileError, match="input 'x' axis 1 is dynamic but not declared"):
        name_dims(_model([("x", ["s0", "s1"])], [("y", [1])]), {"x": {0: "batch"}})


def test_dim_max_reaches_torch_export(tmp_path):
    with pytest.raises(CompileError, match=r"ONNX export failed: 4 not in range \[1, 3\]"):
        export_onnx(  # the example's batch 4 is out of range
            traced(MLP),
            (torch.randn(4, 8),),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}},
            path=tmp_path / "m.onnx",
            dim_max={"batch": 3},
        )


class TinyConstants(nn.Module):
    """Constants close to each binary op's no-op value, where an all-zero input tells whether they survived."""

    def forward(self, x):
        normed = x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)  # B,D (StyleGAN's pixel norm)
        return normed * 1.000001 / 0.9999995 - 1e-9 + (1e-10 + x)  # B,D


def test_constants_near_a_no_op_value_survive_the_optimizer(tmp_path):
    """onnxscript's no-op rules match 0 and 1 within a tolerance (1e-8 absolute, 1e-5 relative): the `+ 1e-8`
    of a pixel norm was dropped and a zero row gave NaN. Every such constant is still in the graph and an
    all-zero input matches eager."""
    res = export_onnx(traced(TinyConstants), (torch.randn(2, 8),), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}}, path=tmp_path / "c.onnx")  # fmt: skip
    model = onnx.load(str(res.path))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Add") == 3 and ops.count("Sub") == 1 and ops.count("Div") == 1, ops
    session = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    for x in (np.zeros((3, 8), np.float32), rand(3, 8)):
        got = session.run(None, {"x": x})[0]
        want = TinyConstants()(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


class PassThrough(nn.Module):
    """An encoder whose padding mask is also an output, unchanged (Parti's and NÜWA's `encoder` graphs)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x, mask):
        return self.fc(x) * mask.unsqueeze(-1), mask  # B,S,D; B,S


def test_an_input_returned_unchanged_keeps_its_name(tmp_path):
    """The exporter names such an input after its output and the optimizer (onnx-ir >= 1.1) then renames it
    `<output>_orig`: the file still has the requested input and output names, and runs."""
    res = export_onnx(traced(PassThrough), (torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.int64)),
                      input_names=["x", "x_mask"], output_names=["y", "y_mask"],
                      dynamic_axes={"x": {0: "batch", 1: "seq"}, "x_mask": {0: "batch", 1: "seq"}},
                      path=tmp_path / "p.onnx")  # fmt: skip
    model = onnx.load(str(res.path))
    assert [v.name for v in model.graph.input] == ["x", "x_mask"]
    assert [v.name for v in model.graph.output] == ["y", "y_mask"]
    mask = np.array([[1, 1, 0, 0]], np.int64)
    got = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"]).run(None, {"x": rand(1, 4, 8),
                                                                                          "x_mask": mask})
    np.testing.assert_array_equal(got[1], mask)
