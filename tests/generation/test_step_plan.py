"""Planning `exports.G.cache`: the step graph's inputs and outputs, and located errors for what cannot decode."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mmspec.api import load_spec
from mmspec.errors import SpecError
from mmspec.testing import dump_spec

SPECS = Path(__file__).parent / "specs"


def _spec(tmp_path: Path, stem: str, edit) -> Path:
    tree = yaml.safe_load((SPECS / f"{stem}.yaml").read_text())
    edit(tree)
    path = tmp_path / f"{stem}.yaml"
    path.write_text(dump_spec(tree))
    return path


def _problems(tmp_path: Path, stem: str, edit) -> list[tuple[str, str, int]]:
    with pytest.raises(SpecError) as info:
        load_spec(_spec(tmp_path, stem, edit))
    return [(d.code, d.message, d.line) for d in info.value.diagnostics]


def test_step_graph_signature():
    plan = load_spec(SPECS / "tiny_seq2seq.yaml").plan
    encoder, step = plan.graphs
    assert [gi.name for gi in step.inputs] == [
        "target", "memory_mask",
        *(f"past_key_values.{i}.{p}" for i in range(2) for p in ("key", "value")),
        *(f"cross_key_values.{i}.{p}" for i in range(2) for p in ("key", "value")),
    ]  # no memory sequence: its keys/values come from the encoder graph
    assert step.output_names == ["lm", *(f"present.{i}.{p}" for i in range(2) for p in ("key", "value"))]
    present = step.cache_outputs[0].info.shape
    assert present == ("batch", 2, "past + tgt_len", 4)
    assert encoder.output_names == ["memory_mask", "memory_sequence",
                                    *(f"cross_key_values.{i}.{p}" for i in range(2) for p in ("key", "value"))]
    assert plan.axes_min == {"past": 0} and plan.axes_max["past"] == 15  # positions 16 - one new token


def test_decoder_only_step_takes_no_padding_mask():
    (step,) = load_spec(SPECS / "tiny_gpt.yaml").plan.graphs
    assert [gi.name for gi in step.inputs][:1] == ["text"]
    assert "text_mask" not in [gi.name for gi in step.inputs]


def test_cache_needs_a_causal_transformer(tmp_path):
    probs = _problems(tmp_path, "tiny_gpt", lambda t: t["encoders"]["gpt"].update(causal=False))
    assert [c for c, _, _ in probs] == ["check"]
    assert "exports.decoder_step.cache: encoders.gpt cannot decode step by step: a KV cache serves causal " \
           "self-attention; set causal: true" in probs[0][1]


def test_cache_of_an_unknown_node(tmp_path):
    probs = _problems(tmp_path, "tiny_gpt", lambda t: t["exports"]["decoder_step"].update(cache=["gtp"]))
    assert probs[0][0] == "unknown-reference" and "did you mean 'gpt'?" in probs[0][1]


def test_cache_of_a_node_the_graph_does_not_compute(tmp_path):
    probs = _problems(tmp_path, "tiny_seq2seq", lambda t: t["exports"]["encoder"].update(cache=["decoder"]))
    assert [(c, m) for c, m, _ in probs] == [("unused-input", "exports.encoder.cache: 'decoder' is not computed by "
                                              "graph 'encoder' (its outputs do not need it); remove it from cache")]


def test_cross_context_must_come_from_a_graph(tmp_path):
    probs = _problems(tmp_path, "tiny_seq2seq", lambda t: t["exports"].pop("encoder"))
    assert [c for c, _, _ in probs] == ["missing-input"]
    assert "decoder cross-attends to memory.sequence, which no graph outputs" in probs[0][1]


def test_past_axis_may_not_be_a_modality_axis(tmp_path):
    probs = _problems(tmp_path, "tiny_gpt", lambda t: t["modalities"]["text"].update(length="past"))
    assert [c for c, _, _ in probs] == ["duplicate-name"]
    assert "the past axis 'past' of gpt is already an axis" in probs[0][1]
