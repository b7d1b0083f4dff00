"""ISL-14, multifaceted visually grounded word embeddings (specs/shahmohammadi.yaml): the full (placeholder) size
and the tiny variant's outputs against the plain-torch rebuild of tests/shahmohammadi_references.py with the same
weights, the reversed GRU against torch's bidirectional GRU, M shared both ways, the export holding only the
grounded lookup, and `mmspec fit` lowering every objective."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import shahmohammadi_references as SR
import torch
from torch import nn

from mmspec.api import build, load_spec, param_counts
from mmspec.cli import run
from mmspec.errors import SpecError

SPEC = Path(__file__).resolve().parents[2] / "specs" / "shahmohammadi.yaml"
ATOL, RTOL = 1e-5, 1e-5


def test_full_size_equals_the_rebuild():
    with torch.device("meta"):
        reference = SR.GroundedMultiTask()
    expected = sum(p.numel() for p in reference.parameters())
    assert param_counts(build(load_spec(SPEC), device="meta"))["total"] == expected


def _tiny_pair() -> tuple[nn.Module, SR.GroundedMultiTask]:
    """The tiny model and the rebuild at its widths, with the rebuild's random weights copied into the model."""
    torch.manual_seed(0)
    model = build(load_spec(SPEC, "tiny")).eval()
    reference = SR.GroundedMultiTask(vocab=30, words=5, grounded=4, image=6, hidden=3).eval()
    params = dict(model.named_parameters())
    assert set(params) == set(SR.SPEC_NAMES)  # every parameter mapped, M stored once
    ref = dict(reference.named_parameters())
    with torch.no_grad():
        for ours, theirs in SR.SPEC_NAMES.items():
            params[ours].copy_(ref[theirs])
    return model, reference


def test_tiny_outputs_equal_the_rebuild():
    model, reference = _tiny_pair()
    g = torch.Generator().manual_seed(1)
    caption, image = torch.randint(0, 30, (3, 6), generator=g), torch.randn(3, 6, generator=g)  # B,S / B,I
    with torch.no_grad():
        values = model.node_values({"caption": caption, "image": image})
        (exported,) = model({"caption": caption, "image": image})
        grounded, nxt, prev, match = reference(caption, image)
    assert prev.abs().max() > 0.1 and match.abs().max() > 0.1
    torch.testing.assert_close(exported, grounded, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(values["next_word"]["logits"], nxt, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(values["previous_word"]["logits"], prev, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(values["match"]["logits"], match, atol=ATOL, rtol=RTOL)


def test_one_matrix_maps_both_ways_and_only_the_lookup_is_exported():
    loaded = load_spec(SPEC, "tiny")
    c = build(loaded).components
    assert c["forward_text"].weight is c["grounded"].mlp[0].weight is c["backward_text"].weight
    assert not c["glove"].table.weight.requires_grad
    (graph,) = loaded.plan.graphs
    assert [gi.name for gi in graph.inputs] == ["caption"] and graph.output_names == ["grounded"]
    assert [n.name for n in graph.nodes] == ["glove", "grounded"]


def test_reverse_gru_is_the_backward_half_of_a_bidirectional_gru():
    """From the same start state, the reversed GRU's states and final state are torch's backward direction."""
    model, _ = _tiny_pair()
    gru = model.components["backward_gru"]
    both = nn.GRU(4, 4, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(both, f"{p}_l0_reverse").copy_(getattr(gru.rnn, f"{p}_l0"))
        g = torch.Generator().manual_seed(2)
        x, h0 = torch.randn(3, 6, 4, generator=g), torch.randn(3, 4, generator=g)  # B,S,G / B,G
        out = gru({"input": {"embedding": x}, "init": {"embedding": h0}})
        states, last = both(x, torch.stack([torch.zeros_like(h0), h0]))  # B,S,2G; 2,B,G
    torch.testing.assert_close(out["sequence"], states[..., 4:], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out["final"], last[1], atol=ATOL, rtol=RTOL)


def test_mmspec_fit_lowers_every_objective(tmp_path):
    out = tmp_path / "fit.json"
    assert run(["fit", str(SPEC), "--variant", "tiny", "--steps", "30", "--json", str(out), "-q"]) == 0
    history = json.loads(out.read_text())
    assert history["losses"][-1] < history["losses"][0], history["losses"][::10]
    for name, losses in history["objectives"].items():
        assert losses[-1] < losses[0], (name, losses[::10])


@pytest.mark.parametrize(("change", "message"), [
    ("heads.forward_text.transpose_of=start", "heads.forward_text: transpose_of 'start' must name a one-layer"),
    ("encoders.backward_gru.bidirectional=true", "encoders.backward_gru: a bidirectional rnn already reads"),
    ("encoders.forward_gru.cell=lstm", "encoders.forward_gru: needs the final states ['h', 'c']"),
])
def test_misuse_is_a_located_diagnostic(change, message):
    with pytest.raises(SpecError) as info:
        load_spec(SPEC, "tiny", sets=[change])
    assert message in str(info.value), str(info.value)
