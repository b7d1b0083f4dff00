"""A graph with `cache:` run chunk by chunk (the prompt, then one position at a time) gives, at every position, the
outputs of the monolithic eager model over the whole sequence: decoder-only, encoder-decoder, Flamingo-style gated
cross-attention and a causal transformer over a continuous sequence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmspec import api
from mmspec.graph.inputs import make_inputs, trace_sizes

SPECS = Path(__file__).parent / "specs"
CASES = {"tiny_gpt": "decoder_step", "tiny_seq2seq": "decoder_step", "tiny_flamingo": "step",
         "tiny_continuous": "step"}


def _stepwise(model, loaded, name: str, inputs: dict[str, torch.Tensor], chunks: list[int]) -> dict:
    """The step graph `name` run on `inputs` split along its new-positions axis into `chunks`, fed its past and
    the outputs of the other graphs; its outputs concatenated along that axis."""
    graphs = {g.name: g for g in loaded.plan.graphs}
    step, views = graphs[name], api.graph_views(model)
    (cached,) = step.cached
    fed = dict(inputs)
    for g in loaded.plan.graphs:
        if g.name != name:
            with torch.no_grad():
                outs = views[g.name]({gi.name: inputs[gi.name] for gi in g.inputs})
            fed.update(zip(g.output_names, outs, strict=True))
    present = {(t.layer, t.part): t.name for t in step.cache_outputs if t.kind == "present"}
    batch = next(iter(inputs.values())).shape[0]
    past = {t.name: torch.zeros(batch, t.info.shape[1], 0, t.info.shape[3])  # B,H,0,d
            for t in step.cache_inputs if t.kind == "past"}
    pieces: dict[str, list[torch.Tensor]] = {}
    start = 0
    for n in chunks:
        feeds = {}
        for gi in step.inputs:
            if gi.name in past:
                feeds[gi.name] = past[gi.name]
            elif cached.length in gi.info.shape:
                feeds[gi.name] = fed[gi.name][:, start:start + n]  # B,n,...
            else:
                feeds[gi.name] = fed[gi.name]
        with torch.no_grad():
            outs = dict(zip(step.output_names, views[name](feeds), strict=True))
        past = {t.name: outs[present[t.layer, t.part]] for t in step.cache_inputs if t.kind == "past"}
        for out, _, _ in step.outputs:
            pieces.setdefault(out, []).append(outs[out])
        start += n
    return {k: torch.cat(v, dim=1) for k, v in pieces.items()}


@pytest.mark.parametrize("stem", sorted(CASES))
def test_steps_equal_the_full_forward(stem):
    loaded = api.load_spec(SPECS / f"{stem}.yaml")
    model = api.build(loaded)
    step = next(g for g in loaded.plan.graphs if g.name == CASES[stem])
    length = step.cached[0].length
    sizes = {**trace_sizes(loaded.plan), length: 9}
    inputs = make_inputs(loaded.plan, sizes, seed=3)
    for name in [n for n in inputs if n.endswith("_mask") and n.startswith(step.inputs[0].name)]:
        inputs[name] = torch.ones_like(inputs[name])  # a step attends to every past position
    with torch.no_grad():
        full = dict(zip(model.output_names, model(inputs), strict=True))
    stepped = _stepwise(model, loaded, CASES[stem], inputs, [4, 1, 1, 2, 1])
    assert sorted(stepped) == sorted(name for name, _, _ in step.outputs)
    for out, value in stepped.items():
        torch.testing.assert_close(value, full[out], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("stem", ["tiny_flamingo", "tiny_continuous"])
def test_step_graphs_compile_and_verify(stem, tmp_path):
    """Gated cross-attention and sequence positions offset by the past, verified on ONNX Runtime (past 0 and 1
    included); the other two specs compile in test_decoding.py."""
    report = api.compile(SPECS / f"{stem}.yaml", out_dir=tmp_path)
    step = report["graphs"][CASES[stem]]["verification"]
    pasts = {case["shapes"]["past_key_values.0.key"][2] for case in step["cases"]}
    assert step["passed"] and {0, 1} <= pasts
