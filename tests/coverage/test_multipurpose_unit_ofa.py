"""Multipurpose models of the survey's Section 4.3 (issue 15): MP-03 UniT (= ISL-11, specs/unit.yaml). The count
against mmf's UniT composed from transformers' DETR and BERT blocks (tests/unit_references.py); every task's
outputs of the tiny variant against that composition holding the same weights; the Hungarian matching of the
set prediction loss against brute force; `mmspec fit` on the tiny variant."""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path

import pytest
import torch
from hf_reference import randomize
from references import reference_count
from unit_references import CLASSIFICATION, TEXT_TASKS, UniTReference, tiny_unit

from mmspec import api
from mmspec.cli import run
from mmspec.components.objectives.set_prediction.loss import hungarian
from mmspec.graph.inputs import make_inputs, trace_sizes

UNIT = Path(__file__).resolve().parents[2] / "specs" / "unit.yaml"
ATOL, RTOL = 1e-5, 1e-4
_DETR_NAMES = (("attn.q.", "self_attn.q_proj."), ("attn.k.", "self_attn.k_proj."), ("attn.v.", "self_attn.v_proj."),
               ("attn.out.", "self_attn.o_proj."), ("cross_attn.q.", "encoder_attn.q_proj."),
               ("cross_attn.k.", "encoder_attn.k_proj."), ("cross_attn.v.", "encoder_attn.v_proj."),
               ("cross_attn.out.", "encoder_attn.o_proj."), ("attn_norm.", "self_attn_layer_norm."),
               ("cross_norm.", "encoder_attn_layer_norm."), ("ffn.fc", "mlp.fc"), ("ffn_norm.", "final_layer_norm."))
_HEADS = {"coco_classes": "class_embeds.coco", "coco_boxes": "bbox_embeds.coco",
          "vg_classes": "class_embeds.visual_genome", "vg_boxes": "bbox_embeds.visual_genome",
          "vqa2_answer": "classifiers.vqa2",
          **{f"{t}_label": f"classifiers.{t}" for t in CLASSIFICATION if t != "vqa2"}}


def _detr_name(name: str) -> str:
    """Our DETR layer tensor name -> transformers' (layers.0.attn.q.weight -> layers.0.self_attn.q_proj.weight)."""
    for ours, theirs in _DETR_NAMES:
        if f".{ours}" in f".{name}":
            return name.replace(ours, theirs, 1)
    return name


def _rule_map(rules, theirs: dict[str, torch.Tensor]) -> dict[str, str]:
    """Our name -> their name for every tensor of `theirs` that a weight-layout rule matches."""
    out = {}
    for rule in rules:
        pattern = re.escape(rule.src).replace(r"\{", "{").replace(r"\}", "}")
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^.]+)", pattern)
        for key in theirs:
            m = re.fullmatch(pattern, key)
            if m:
                out[rule.dst.format(**m.groupdict())] = key
    return out


def _copy(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], names: dict[str, str] | None = None):
    """Copy our tensors into theirs: by the name map, else pairwise in order (same structure)."""
    pairs = [(o, names[o]) for o in ours] if names is not None else list(zip(ours, theirs, strict=True))
    for o, t in pairs:
        assert ours[o].shape == theirs[t].shape, (o, t)
        theirs[t].copy_(ours[o])


def _tiny_pair() -> tuple[torch.nn.Module, UniTReference, object]:
    """The tiny spec's model with random weights (norms and frozen BatchNorm statistics included) and the
    reference composition holding the same ones."""
    loaded = api.load_spec(UNIT, "tiny")
    model = randomize(api.build(loaded), seed=1).eval()
    c = model.components
    with torch.no_grad():
        for name, buf in c["backbone"].named_buffers():
            buf.copy_(torch.rand_like(buf) + 0.5 if name.endswith("running_var") else torch.randn_like(buf) * 0.1)
    ref = tiny_unit().eval()
    sd = lambda m: dict(m.state_dict(keep_vars=True))  # noqa: E731
    with torch.no_grad():
        theirs = sd(ref.backbone.model)
        rules = loaded.spec.encoders["backbone"].weight_rules("resnet")
        _copy(sd(c["backbone"]), theirs, _rule_map(rules, theirs))
        enc = sd(c["image_encoder"])
        _copy({"proj.weight": enc.pop("proj.weight"), "proj.bias": enc.pop("proj.bias")},
              sd(ref.input_projection), {"proj.weight": "weight", "proj.bias": "bias"})
        _copy(enc, sd(ref.encoder), {k: _detr_name(k) for k in enc})
        stack = c["vqa2"].stack
        _copy(sd(stack.layers), sd(ref.decoder.layers), {k: _detr_name(k) for k in sd(stack.layers)})
        for mine, theirs_module in ((stack.norm, ref.decoder.layernorm), (stack.image_proj, ref.enc2dec_proj),
                                    (stack.image_pos_proj, ref.pos_embed_proj), (stack.text_proj, ref.bert_projection),
                                    (stack.text_pos_proj, ref.bert_pos_projection)):
            _copy(sd(mine), sd(theirs_module))
        for task in ref.query_embeds:
            _copy(sd(c[task].queries), sd(ref.query_embeds[task]))
        _copy({k: v for k, v in sd(c["bert"]).items()}, sd(ref.bert))
        for head, path in _HEADS.items():
            _copy(sd(c[head]), sd(ref.get_submodule(path)))
    return model, ref, loaded


def test_unit_count_equals_the_composed_reference():
    loaded = api.load_spec(UNIT)
    total = api.param_counts(api.build(loaded, device="meta"))["total"]
    assert total == reference_count("unit")[0]
    # every component's formula (the decoders', the DETR encoder's, the mlp box heads') agrees with what is built
    assert loaded.estimate.params == total


def test_every_task_of_the_tiny_variant_equals_the_composed_reference():
    model, ref, loaded = _tiny_pair()
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=3)
    inputs["text_mask"][0, -2:] = 0  # padding in the first example
    with torch.no_grad():
        ours = model.node_values(inputs)
        for task, classes, boxes in (("coco", "coco_classes", "coco_boxes"),
                                     ("visual_genome", "vg_classes", "vg_boxes")):
            logits, box = ref(task, image=inputs["image"])
            torch.testing.assert_close(ours[classes]["logits"], logits, atol=ATOL, rtol=RTOL)
            torch.testing.assert_close(ours[boxes]["embedding"], box, atol=ATOL, rtol=RTOL)
            assert box.abs().max() > 1e-3
        for task in TEXT_TASKS:
            head = "vqa2_answer" if task == "vqa2" else f"{task}_label"
            (logits,) = ref(task, inputs["image"], inputs["text"], inputs["text_mask"], inputs["text_segments"])
            torch.testing.assert_close(ours[head]["logits"], logits, atol=ATOL, rtol=RTOL)
            assert logits.abs().max() > 1e-3


def test_a_decoder_reads_the_text_padding_mask():
    model, _, loaded = _tiny_pair()
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=3)
    with torch.no_grad():
        before = model.node_values(inputs)["vqa2_answer"]["logits"]
        inputs["text_mask"][:, -1] = 0
        after = model.node_values(inputs)["vqa2_answer"]["logits"]
    assert (before - after).abs().max() > 1e-6


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (3, 3), (3, 5), (4, 6)])
def test_hungarian_matching_is_the_cheapest_assignment(shape):
    rng = random.Random(sum(shape))
    rows, cols = shape
    for _ in range(5):
        cost = [[rng.uniform(-1, 2) for _ in range(cols)] for _ in range(rows)]
        got = hungarian(cost)
        assert len(set(got)) == rows
        best = min(sum(cost[r][c] for r, c in enumerate(p)) for p in itertools.permutations(range(cols), rows))
        assert sum(cost[r][c] for r, c in enumerate(got)) == pytest.approx(best)


def test_unit_fit_lowers_the_loss(tmp_path):
    out = tmp_path / "fit.json"
    assert run(["fit", str(UNIT), "--variant", "tiny", "--steps", "30", "--json", str(out), "-q"]) == 0
    losses = json.loads(out.read_text())["losses"]
    assert losses[-1] < losses[0], losses[::10]
