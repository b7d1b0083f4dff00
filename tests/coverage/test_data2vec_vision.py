"""data2vec vision (BOTH-01): the vision spec equals transformers' Data2VecVisionForImageClassification, its
student the Data2VecVisionModel with its pooler (counts on the meta device for the default and relative-position
variants; outputs with a random checkpoint's weights for per-layer and shared relative position biases), and
`fit` on the tiny variant lowers the cross-entropy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers as tf
from hf_reference import PARITY_ATOL, randomize

from mmspec.api import build, load_spec, param_counts
from mmspec.graph.inputs import make_inputs, trace_sizes
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPEC = Path(__file__).resolve().parents[2] / "specs" / "data2vec_vision.yaml"
VARIANTS = {  # our variant -> the Data2VecVisionConfig options it stands for
    None: {},
    "relative": {"use_relative_position_bias": True},
    "shared_relative": {"use_shared_relative_position_bias": True},
}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_count_matches_transformers(variant):
    with torch.device("meta"):
        reference = tf.Data2VecVisionForImageClassification(tf.Data2VecVisionConfig(**VARIANTS[variant],
                                                                                    num_labels=1000))
    counts = param_counts(build(load_spec(SPEC, variant), device="meta"))
    assert counts["by_component"]["student"] == _count(reference.data2vec_vision)
    assert counts["total"] == _count(reference)


def _tiny_config(variant: str, **options) -> tf.Data2VecVisionConfig:
    enc = load_spec(SPEC, "tiny").spec.encoders["student"]
    return tf.Data2VecVisionConfig(image_size=32, patch_size=enc.embed.patch_size, hidden_size=enc.width,
                                   num_hidden_layers=enc.layers, num_attention_heads=enc.heads,
                                   intermediate_size=enc.ffn, num_labels=5, **VARIANTS[variant], **options)


@pytest.mark.parametrize("variant", ["relative", "shared_relative"])
def test_tiny_student_loads_a_data2vec_vision_checkpoint(tmp_path, variant):
    """A random Data2VecVisionForImageClassification (relative position tables and layer scales random too): our
    tiny spec with its weights gives its student's last hidden state, the mean-pooled, LayerNormed output and the
    logits."""
    options = {} if variant == "relative" else {"use_relative_position_bias": False}
    torch.manual_seed(0)
    reference = randomize(tf.Data2VecVisionForImageClassification(_tiny_config(variant, **options))).eval()
    reference.save_pretrained(tmp_path / "ckpt")
    loaded = load_spec(SPEC, "tiny")
    if variant == "shared_relative":
        loaded = load_spec(SPEC, "tiny", ["encoders.student.relative_position=shared"])
    model = build(loaded, weights=tmp_path / "ckpt").eval()
    assert not model.weights_report["new"] and not model.weights_report["ignored"]
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=1)
    with torch.no_grad():
        sequence, pooled, logits = model(inputs)  # B,1+N,D; B,D; B,C
        student = reference.data2vec_vision(pixel_values=inputs["image"])
        theirs = reference(pixel_values=inputs["image"]).logits  # B,C
    for ours, ref in ((sequence, student.last_hidden_state), (pooled, student.pooler_output), (logits, theirs)):
        diff = (ours - ref).abs().max().item()
        assert diff <= PARITY_ATOL, f"max abs diff {diff:.3g}"


def test_fit_lowers_the_loss_of_the_tiny_variant():
    loaded = load_spec(SPEC, "tiny")
    history = Trainer(loaded, lr=3e-3).fit(synthetic_batch(loaded, 4, 0), 12, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]
