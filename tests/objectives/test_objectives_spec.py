"""Spec rules of training-time parts: `training_only`, `trainable`, objective references and fields."""

from __future__ import annotations

import pytest

from mmspec.api import build, load_spec
from mmspec.errors import SpecError
from mmspec.registry import list_components

BASE = """\
mmspec: 1
name: probe
modalities:
  text: {type: tokens, vocab_size: 50, max_length: 16, mask: true}
  image: {type: image, channels: 3, height: 8, width: 8}
encoders:
  enc:
    type: transformer
    input: text
    embed: {type: tokens, positions: 16}
    width: 8
    layers: 2
    heads: 2
    ffn: 16
    pool: {type: mean}
  cnn: {type: resnet, input: image, block: basic, depths: [1], widths: [8], stem: 8}
"""


def _load(tmp_path, body: str):
    path = tmp_path / "probe.yaml"
    path.write_text(BASE + body)
    return load_spec(path)


def _error(tmp_path, body: str):
    with pytest.raises(SpecError) as e:
        _load(tmp_path, body)
    return e.value.diagnostics


def test_training_only_heads_are_not_default_outputs(tmp_path):
    loaded = _load(
        tmp_path,
        """\
heads:
  proj: {type: mlp, input: enc.pooled, dim: 4, training_only: true}
  cls: {type: classifier, input: enc.pooled, num_classes: 2}
objectives:
  ce: {type: cross_entropy, input: cls}
""",
    )
    assert [o for o, _, _ in loaded.plan.outputs] == ["cls"]
    assert "proj" not in {n.name for n in loaded.plan.export_nodes}


def test_output_naming_a_training_only_node(tmp_path):
    (d,) = _error(
        tmp_path,
        """\
heads:
  proj: {type: mlp, input: enc.pooled, dim: 4, training_only: true}
outputs: [proj]
""",
    )
    assert d.code == "training-only" and "training_only: true" in d.message and d.line == 19


def test_exported_head_on_a_training_only_node(tmp_path):
    (d,) = _error(
        tmp_path,
        """\
heads:
  proj: {type: mlp, input: enc.pooled, dim: 4, training_only: true}
  cls: {type: classifier, input: proj.embedding, num_classes: 2}
""",
    )
    assert d.code == "training-only" and "'cls' depends on training-only node 'proj'" in d.message
    assert d.line == 19  # heads.cls


def test_components_cannot_read_objectives(tmp_path):
    diags = _error(
        tmp_path,
        """\
heads:
  proj: {type: mlp, input: enc.pooled, dim: 4, training_only: true}
  on_teacher: {type: mlp, input: teacher.embedding, dim: 4, training_only: true}
  cls: {type: classifier, input: enc.pooled, num_classes: 2}
objectives:
  teacher: {type: ema_teacher, student: proj}
""",
    )
    assert [d.code for d in diags] == ["training-only"] and "only objectives may use" in diags[0].message


def test_objectives_need_no_training_only_key(tmp_path):
    (d,) = _error(
        tmp_path,
        """\
heads:
  cls: {type: classifier, input: enc.pooled, num_classes: 2}
objectives:
  ce: {type: cross_entropy, input: cls, training_only: true}
""",
    )
    assert d.code == "training-only" and "always training-only" in d.message


def test_updates_names_are_checked(tmp_path):
    (d,) = _error(
        tmp_path,
        """\
heads:
  cls: {type: classifier, input: enc.pooled, num_classes: 2}
objectives:
  ce: {type: cross_entropy, input: cls, updates: [clss]}
""",
    )
    assert d.code == "unknown-reference" and "(did you mean 'cls'?)" in d.message


def test_objective_reference_fields_are_located(tmp_path):
    (d,) = _error(
        tmp_path,
        """\
heads:
  pred: {type: mlp, input: enc.pooled, dim: 4}
objectives:
  byol:
    type: byol_normalized_mse
    input: pred
    target: teachr.embedding
    augment: {modality: image}
""",
    )
    assert d.code == "unknown-reference" and (d.line, d.col) == (23, 13)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            """\
heads:
  pred: {type: mlp, input: cnn.pooled, dim: 4}
objectives:
  teacher: {type: ema_teacher, student: cnn, emit: layers}
""",
            "needs a transformer encoder",
        ),
        (
            """\
heads:
  lm: {type: token_classifier, input: enc.sequence, num_classes: 50}
objectives:
  mlm: {type: masked_lm, input: lm, mask_token: 50}
""",
            "mask_token 50 is not below the vocab_size 50",
        ),
        (
            """\
heads:
  lm: {type: token_classifier, input: enc.sequence, num_classes: 50}
objectives:
  ar: {type: autoregressive_lm, input: lm, tokens: image}
""",
            "must name a tokens modality",
        ),
        (
            """\
heads:
  cls: {type: classifier, input: enc.pooled, num_classes: 2}
objectives:
  teacher: {type: ema_teacher, student: enc, weight: 2.0}
""",
            "no loss",
        ),
        (
            """\
heads:
  a: {type: mlp, input: enc.pooled, dim: 4}
  b: {type: mlp, input: cnn.pooled, dim: 4}
objectives:
  one: {type: nt_xent, input: a, augment: {modality: image}}
  two: {type: nt_xent, input: b, augment: {modality: image}}
""",
            "only one objective may augment",
        ),
        (
            """\
heads:
  reg: {type: mlp, input: enc.sequence, dim: 8}
objectives:
  teacher: {type: ema_teacher, student: enc, emit: layers}
  d2v:
    type: data2vec_regression
    input: reg
    target: teacher
    top_k: 2
    mask: {type: uniform, prob: 0.5, modality: text}
""",
            "mask.mask_token 103 is not below the vocab_size 50",
        ),
        (
            """\
heads:
  lm: {type: token_classifier, input: enc.sequence, num_classes: 7}
objectives:
  mlm: {type: masked_lm, input: lm, mask_token: 3}
""",
            "masked_lm needs logits [batch, S, vocab] = ['batch', 'seq', 50] over the tokens of 'text'",
        ),
    ],
)
def test_objective_shape_rules(tmp_path, body, needle):
    diags = _error(tmp_path, body)
    assert any(needle in d.message for d in diags), [d.message for d in diags]


def test_trainable_false_freezes_the_component(tmp_path):
    loaded = _load(
        tmp_path,
        """\
heads:
  cls: {type: classifier, input: enc.pooled, num_classes: 2, trainable: false}
objectives:
  ce: {type: cross_entropy, input: cls}
""",
    )
    model = build(loaded)
    assert not any(p.requires_grad for p in model.components["cls"].parameters())
    assert all(p.requires_grad for p in model.components["enc"].parameters())


def test_every_objective_is_training_only():
    for c in list_components():
        if c.slot == "objectives":
            assert c.training_only, c.name
