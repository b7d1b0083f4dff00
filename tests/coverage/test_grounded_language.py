"""Grounded language models ISL-12 (specs/vokenization.yaml) ...: the full sizes against the references of
tests/references.py, outputs against the reference modules with the same weights, and `mmspec fit` on every
tiny variant (every objective's loss goes down)."""

from __future__ import annotations

import json
from pathlib import Path

import grounded_references as GR
import pytest
import torch
from hf_reference import PARITY_ATOL, randomize
from references import reference_count
from safetensors.torch import save_model

from mmspec.api import build, load_spec, param_counts
from mmspec.cli import run
from mmspec.graph.inputs import make_inputs, trace_sizes

SPECS = Path(__file__).resolve().parents[2] / "specs"
VOKENIZATION = SPECS / "vokenization.yaml"


@pytest.mark.parametrize(("path", "variant"), [(VOKENIZATION, "tiny")])
def test_mmspec_fit_lowers_every_objective(path, variant, tmp_path):
    out = tmp_path / "fit.json"
    assert run(["fit", str(path), "--variant", variant, "--steps", "30", "--json", str(out), "-q"]) == 0
    history = json.loads(out.read_text())
    assert history["losses"][-1] < history["losses"][0], history["losses"][::10]
    for name, losses in history["objectives"].items():
        assert losses[-1] < losses[0], (name, losses[::10])


@pytest.mark.parametrize(("path", "variant", "key"), [(VOKENIZATION, None, "vokenization"),
                                                      (VOKENIZATION, "small", "vokenization:small")])
def test_full_sizes_equal_the_references(path, variant, key):
    assert param_counts(build(load_spec(path, variant), device="meta"))["total"] == reference_count(key)[0]


def test_vokenization_logits_match_the_official_model_with_its_weights(tmp_path):
    """The tiny LM loads a CoLwithBert-named checkpoint (bert.*, cls.predictions.*, visual_cls_head.*) and
    gives its MLM and voken logits; the voken head is trained but not exported."""
    loaded = load_spec(VOKENIZATION, "tiny")
    reference = randomize(GR.vokenization(16, 1, 2, 32, vokens=10, vocab=64, positions=16))
    save_model(reference, str(tmp_path / "model.safetensors"))
    model = build(loaded, weights=tmp_path)
    assert model.weights_report["loaded"] == model.weights_report["tensors"] and not model.weights_report["new"]
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=1)
    with torch.no_grad():
        values = model.node_values(inputs)
        mlm, vokens = reference(inputs["text"], inputs["text_mask"], inputs["text_segments"])
    assert vokens.abs().max() > 0.1
    torch.testing.assert_close(values["mlm"]["logits"], mlm, atol=PARITY_ATOL, rtol=0)
    torch.testing.assert_close(values["voken"]["logits"], vokens, atol=PARITY_ATOL, rtol=0)
    assert model.output_names == ["bert_sequence"]


def test_per_token_cross_entropy_skips_unlabelled_positions():
    model = build(load_spec(VOKENIZATION, "tiny"))
    loss = model.objectives["voken_loss"]
    logits = torch.randn(2, 5, 10, generator=torch.Generator().manual_seed(0))  # B,S,vokens
    labels = torch.tensor([[1, 2, -100, 3, 4], [-100, -100, 5, 6, 7]])  # B,S
    kept = labels != -100
    expected = torch.nn.functional.cross_entropy(logits[kept], labels[kept])
    with torch.no_grad():
        ours = loss({"input": {"logits": logits}}, {"labels": labels})
    torch.testing.assert_close(ours, expected)
