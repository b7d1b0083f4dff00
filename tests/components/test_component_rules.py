"""Registry-wide properties and component shape rules that the reference specs do not exercise."""

from __future__ import annotations

import pytest
import torch

from mmspec.api import build, capture, load_spec
from mmspec.errors import SpecError
from mmspec.graph.capture import example_call
from mmspec.graph.inputs import make_inputs, trace_sizes
from mmspec.registry import list_components

BASE = """\
mmspec: 1
name: probe
modalities:
  text: {type: tokens, vocab_size: 50, max_length: 16}
  tab: {type: vector, dim: 8}
encoders:
  enc:
    type: transformer
    input: text
    embed: {type: tokens, positions: 16}
    width: 8
    layers: LAYERS
    heads: 2
    ffn: 16
    pool: {type: mean}
"""


def _spec(tmp_path, body: str, layers: int = 1):
    path = tmp_path / "probe.yaml"
    path.write_text(BASE.replace("LAYERS", str(layers)) + body)
    return path


@pytest.mark.parametrize("component", list_components(), ids=lambda c: f"{c.slot}/{c.name}")
def test_every_component_documents_itself(component):
    assert component.summary, f"{component.name}: the config class needs a docstring (shown by `mmspec components`)"
    assert callable(getattr(component.config, "infer", None)) and callable(getattr(component.config, "build", None))


def test_same_reference_twice_is_two_inputs(tmp_path):
    body = """\
fusion:
  square: {type: elementwise, op: product, inputs: [enc.pooled, enc.pooled]}
heads:
  out: {type: classifier, input: square.fused, num_classes: 3}
"""
    loaded = load_spec(_spec(tmp_path, body))
    model = build(loaded)
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan))
    with torch.no_grad():
        (eager,) = model(inputs)
        pooled = model.components["enc"]({"input": {"ids": inputs["text"]}})["pooled"]
        expected = model.components["out"]({"input": {"fused": pooled * pooled}})["logits"]
        (traced,) = example_call(capture(model), inputs)
    torch.testing.assert_close(eager, expected, atol=0, rtol=0)
    assert torch.equal(eager, traced)


def test_negative_layers_is_a_range_error(tmp_path):
    with pytest.raises(SpecError) as e:
        load_spec(_spec(tmp_path, "heads:\n  out: {type: classifier, input: enc.pooled, num_classes: 2}\n", -1))
    (d,) = e.value.diagnostics
    assert (d.line, d.code) == (12, "range") and "layers" in d.message


def test_tie_to_suggests_the_encoder(tmp_path):
    body = "heads:\n  lm: {type: token_classifier, input: enc.sequence, tie_to: emc}\n"
    with pytest.raises(SpecError) as e:
        load_spec(_spec(tmp_path, body))
    (d,) = e.value.diagnostics
    assert d.code == "check" and "(did you mean 'enc'?)" in d.message


def test_concat_sums_widths_and_mean_pool_ignores_padding(tmp_path):
    body = """\
fusion:
  joint: {type: concat, inputs: [enc.pooled, tab]}
heads:
  out: {type: classifier, input: joint.fused, num_classes: 2}
"""
    path = _spec(tmp_path, body)
    loaded = load_spec(path)
    assert loaded.plan.bundles["joint"]["fused"].shape == ("batch", 16)
    masked = load_spec(path, sets=["modalities.text.mask=true"])
    model = build(masked)
    inputs = make_inputs(masked.plan, trace_sizes(masked.plan))
    seq = model.components["enc"]({"input": {"ids": inputs["text"], "mask": inputs["text_mask"]}})
    keep = inputs["text_mask"][0].bool()
    torch.testing.assert_close(seq["pooled"][0], seq["sequence"][0][keep].mean(0), atol=1e-6, rtol=1e-5)
