"""Language primitives (issue 8 section 2): the `scalar` modality and encoder, items per example (`count` on image
and tokens, folded into the batch for encoders), derived axes (expressions of named axes, declared on the ONNX
outputs and checked by verification) and concatenation along the sequence axis. Each spec in specs/ compiles and
verifies at tiny size with the declared symbolic output shapes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from mmspec import api
from mmspec.backends import TOLERANCE_FP32, available_providers, export_onnx, first_failure_message, verify_onnx
from mmspec.graph.inputs import make_inputs, trace_sizes
from mmspec.spec.budget import estimate, tensor_bytes
from mmspec.spec.tensors import dim_product, dim_sum, dim_terms, dim_value

SPECS = Path(__file__).parent / "specs"
OUTPUTS = {  # spec -> ONNX output -> the shape the file declares (and verification checks at every case)
    "scalar_denoiser": {"eps": ["batch", 192]},
    "image_items": {"label": ["batch", 3], "per_image": ["batch", "media", 4], "per_patch": ["batch", "5*media", 2],
                    "per_view": ["batch", 2, 3], "cnn_features": ["batch", 2, 8, 2, 2]},
    "concat_sequence": {"tagger": ["batch", "regions + text_len", 3], "joint_mask": ["batch", "regions + text_len"]},
    "text_items": {"scores": ["batch", "choices", 1], "tokens": ["batch", "choices*seq + q_len", 2],
                   "stream_mask": ["batch", "choices*seq + q_len"]},
}


def test_derived_dims_have_one_canonical_text():
    assert dim_sum("text_len", "regions") == dim_sum("regions", "text_len") == "regions + text_len"
    assert dim_product("media", 50) == dim_product(50, "media") == "50*media"
    assert dim_product("media", "batch") == "batch*media" and dim_product(4, "media") == "4*media"
    assert dim_sum("a", "a", 3, 4) == "2*a + 7" and dim_sum(3, 4) == 7 and dim_sum("a") == "a"
    assert dim_sum(dim_product("choices", "seq"), "q_len") == "choices*seq + q_len"
    assert dim_terms("media*50") == dim_terms("50*media") == {("media",): 50}
    assert dim_terms("text_len") == {("text_len",): 1} and dim_terms(5) == {(): 5}
    assert dim_value("choices*seq + q_len + 1", {"choices": 3, "seq": 4, "q_len": 5}) == 18
    with pytest.raises(ValueError):
        dim_terms("floor(s0/2)")


def test_items_are_a_plan_level_fact():
    loaded = api.load_spec(SPECS / "image_items.yaml")
    plan = loaded.plan
    assert plan.bundles["images"]["pixels"].shape == ("batch", "media", 3, 8, 8)
    vit = plan.node("vit")
    assert plan.node_inputs(vit)["input"]["pixels"].shape == ("batch*media", 3, 8, 8)  # what the encoder sees
    assert plan.node_inputs(plan.node("cnn"))["input"]["pixels"].shape == ("2*batch", 3, 8, 8)
    assert plan.bundles["vit"]["pooled"].shape == ("batch", "media", 8)
    assert plan.bundles["vit"]["sequence"].shape == ("batch", "5*media", 8)
    assert plan.bundles["cnn"]["features"].shape == ("batch", 2, 8, 2, 2)
    assert plan.axes_max["media"] == 3
    # budgets bound a derived axis by the axes' maxima (batch 1 per example, media 3)
    est = estimate(loaded.spec, plan)
    assert tensor_bytes(plan.bundles["vit"]["sequence"], est.sizes) == 1 * 5 * 3 * 8 * 4
    text = api.load_spec(SPECS / "text_items.yaml").plan
    assert text.bundles["answer_enc"]["mask"].shape == ("batch", "choices*seq")
    assert text.bundles["stream"]["sequence"].shape == ("batch", "choices*seq + q_len", 8)


def test_folded_encoder_equals_one_run_per_item():
    loaded = api.load_spec(SPECS / "image_items.yaml")
    model = api.build(loaded)
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=3)
    with torch.no_grad():
        values = model.node_values(inputs)
        for m in range(inputs["images"].shape[1]):
            alone = model.components["vit"]({"input": {"pixels": inputs["images"][:, m]}})
            torch.testing.assert_close(values["vit"]["pooled"][:, m], alone["pooled"], atol=1e-6, rtol=1e-5)
            seq = values["vit"]["sequence"][:, 5 * m : 5 * (m + 1)]  # item m's 5 tokens, in item order
            torch.testing.assert_close(seq, alone["sequence"], atol=1e-6, rtol=1e-5)
        views = model.components["cnn"]({"input": {"pixels": inputs["views"][:, 1]}})
        torch.testing.assert_close(values["cnn"]["features"][:, 1], views["features"], atol=1e-6, rtol=1e-5)


def test_concat_sequence_mask_counts_unmasked_inputs_as_ones():
    loaded = api.load_spec(SPECS / "concat_sequence.yaml")
    model = api.build(loaded)
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=4)
    with torch.no_grad():
        joint = model.node_values(inputs)["joint"]
    regions = inputs["regions"].shape[1]
    expected = torch.cat([inputs["text_mask"], torch.ones(2, regions, dtype=torch.int64)], dim=1)
    assert joint["mask"].dtype == torch.int64 and torch.equal(joint["mask"], expected)
    assert joint["sequence"].shape == (2, inputs["text"].shape[1] + regions, 8)


def test_verification_inputs_respect_bounds_and_items():
    plan = api.load_spec(SPECS / "scalar_denoiser.yaml").plan
    x = make_inputs(plan, {"batch": 4096}, seed=1)
    assert x["timestep"].dtype == torch.int64 and x["timestep"].shape == (4096,)
    assert 0 <= int(x["timestep"].min()) and int(x["timestep"].max()) <= 999
    assert x["age"].dtype == torch.float32 and 18.0 <= float(x["age"].min()) and float(x["age"].max()) <= 90.0
    items = api.load_spec(SPECS / "text_items.yaml").plan
    mask = make_inputs(items, trace_sizes(items))["answers_mask"]  # [batch, choices, seq]: pad each item's tail
    assert mask.shape == (2, 4, 6) and torch.equal(mask[0, :, 0], torch.ones(4, dtype=torch.int64))
    assert int(mask[0].sum()) == 4 * 5 and int(mask[1].sum()) == 4 * 6


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_spec_compiles_and_verifies_with_declared_shapes(name, tmp_path):
    report = api.compile(SPECS / f"{name}.yaml", out_dir=tmp_path)
    assert report["verification"]["passed"], report["verification"]
    assert {o["name"]: o["shape"] for o in report["onnx"]["outputs"]} == OUTPUTS[name]
    assert len({json.dumps(c["shapes"], sort_keys=True) for c in report["verification"]["cases"]}) >= 3


class _Cat(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, y], dim=1)  # B,A+B


def test_verification_catches_a_wrong_derived_expression(tmp_path):
    """The file declares the spec's expression on the output; ORT's actual size must equal it at every case."""
    path = tmp_path / "cat.onnx"
    example = (torch.randn(2, 3), torch.randn(2, 4))
    axes = {"x": {0: "batch", 1: "a"}, "y": {0: "batch", 1: "b"}}
    result = export_onnx(torch.fx.symbolic_trace(_Cat()), example, input_names=["x", "y"], output_names=["z"],
                         dynamic_axes=axes, output_axes={"z": {0: "batch", 1: "a + b"}}, path=path)
    assert result.outputs[0].shape == ("batch", "a + b")
    rng = np.random.default_rng(0)
    cases = [{"x": rng.standard_normal((n, a)).astype(np.float32), "y": rng.standard_normal((n, b)).astype(np.float32)}
             for n, a, b in ((2, 3, 4), (1, 5, 2))]

    def reference(case):
        return {"z": np.concatenate([case["x"], case["y"]], axis=1)}

    def verify(p):
        return verify_onnx(p, reference, cases, output_names=["z"], providers=available_providers(), **TOLERANCE_FP32)

    assert verify(path)["passed"]
    model = onnx.load(path)
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "a + b + 1"
    onnx.save(model, tmp_path / "wrong.onnx")
    report = verify(tmp_path / "wrong.onnx")
    assert not report["passed"]
    assert first_failure_message(report).startswith(
        "output 'z' axis 1 has size 7, but the file declares 'a + b + 1' = 8 at a=3 b=4 (shapes batch=2 a=3 b=4")
