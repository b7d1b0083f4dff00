"""Shape rules of `rerun` (another node's network on other inputs) and `interpolate` (examples mixed across the
batch) that the registry examples do not reach: each bad spec gets one diagnostic, located at the offending key."""

from __future__ import annotations

import pytest
import torch

from mmspec.api import build, load_spec
from mmspec.errors import SpecError
from mmspec.spec.tensors import TensorInfo

BASE = """\
mmspec: 1
name: probe
modalities:
  noise: {type: vector, dim: 4}
  text: {type: vector, dim: 6}
  wide: {type: vector, dim: 7}
  ids: {type: tokens, vocab_size: 9, max_length: 5}
  views: {type: image, channels: 1, height: 4, width: 4, count: 2}
encoders:
  noisy: {type: masking_noise, input: views}
fusion:
  mix: {type: interpolate, input: text}
heads:
  gen: {type: mlp, input: noise, dim: 3}
"""


def _diagnostic(tmp_path, node: str):
    """The one diagnostic of BASE with `node` added (to `fusion:` for an interpolate, else to `heads:`)."""
    text = BASE.replace("heads:\n", node + "heads:\n") if "interpolate" in node else BASE + node
    path = tmp_path / "probe.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as e:
        load_spec(path)
    (d,) = e.value.diagnostics
    return d, text.splitlines()[d.line - 1]


@pytest.mark.parametrize(("body", "key", "words"), [
    ("  again: {type: rerun, node: gne, inputs: {input: noise}}\n", "node:", ["(did you mean 'gen'?)"]),
    ("  again: {type: rerun, node: text, inputs: {input: noise}}\n", "node:", ["is a modality"]),
    ("  again: {type: rerun, node: noisy, inputs: {input: views}}\n", "node:", ["items folded"]),
    ("  again: {type: rerun, node: gen, inputs: {inptu: noise}}\n", "inptu:", ["no port", "(did you mean 'input'?)"]),
    ("  again: {type: rerun, node: gen, inputs: {}}\n", "inputs:", ["missing input (it reads 'noise')"]),
    ("  again: {type: rerun, node: gen, inputs: {input: wide}}\n", "input:", ["['batch', 7]", "['batch', 4]"]),
    ("  again: {type: rerun, node: gen, inputs: {input: ids}}\n", "input:", ["int64", "float32"]),
    ("  again: {type: rerun, node: gen, inputs: {input: noise}, training_only: false}\n", "training_only:",
     ["always training-only"]),
    ("  again: {type: rerun, node: gen, inputs: {input: noise}, trainable: false}\n", "trainable:", ["freeze 'gen'"]),
    ("  bad: {type: interpolate, input: ids}\n", "input:", ["int64"]),
    ("  bad: {type: interpolate, input: text, training_only: false}\n", "training_only:", ["always training-only"]),
])
def test_bad_inputs_are_located(tmp_path, body, key, words):
    d, line = _diagnostic(tmp_path, body)
    at = line[: d.col - 1].rstrip().endswith(key) or line[d.col - 1:].startswith(key)  # `key` or its value
    assert d.code == "check" and at, (d, line)
    for w in words:
        assert w in d.message, d.message


def test_rerun_needs_every_port_and_renames_a_single_field(tmp_path):
    body = """\
  again: {type: rerun, node: gen, inputs: {input: mix.mixed}}
"""
    path = tmp_path / "probe.yaml"
    path.write_text(BASE.replace("dim: 4}", "dim: 6}", 1) + body)
    loaded = load_spec(path)
    assert loaded.plan.bundles["again"] == loaded.plan.bundles["gen"]
    model = build(loaded)
    x = torch.randn(3, 6)  # B,T
    with torch.no_grad():
        mixed = model.components["mix"]({"input": {"values": x}})["mixed"]  # B,T
        again = model.components["again"]({"input": {"mixed": mixed}})["embedding"]  # B,3
        torch.testing.assert_close(again, model.components["gen"]({"input": {"values": mixed}})["embedding"])
    assert not list(model.components["again"].parameters())


def test_rerun_of_a_list_of_inputs_names_ports_by_position(tmp_path):
    path = tmp_path / "probe.yaml"
    path.write_text(BASE.replace("heads:\n", "  both: {type: concat, inputs: [noise, text]}\nheads:\n") +
                    '  swapped: {type: rerun, node: both, inputs: {"0": noise, "1": mix.mixed}}\n')
    loaded = load_spec(path)
    assert loaded.plan.bundles["swapped"] == loaded.plan.bundles["both"] == {"fused": TensorInfo(("batch", 10))}
    model = build(loaded)
    z, t = torch.randn(2, 4), torch.randn(2, 6)  # B,nz / B,T
    out = model.components["swapped"]({"0": {"values": z}, "1": {"mixed": t}})["fused"]  # B,10
    assert torch.equal(out, torch.cat([z, t], 1))
