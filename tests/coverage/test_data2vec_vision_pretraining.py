"""data2vec vision pre-training (BOTH-01): the spec counts transformers' Data2VecVisionModel (shared relative
positions) twice, student and EMA teacher, plus the regression head; the student loads a Data2VecVisionModel
checkpoint and gives its hidden states; BEiT block masking masks the asked share of patches in rectangles of at
least `min_block` and zeroes exactly their pixels; `fit` on the tiny variant lowers the regression loss."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers as tf
from hf_reference import PARITY_ATOL, randomize

from mmspec.api import build, load_spec, param_counts
from mmspec.blocks.masking import block_mask
from mmspec.graph.inputs import make_inputs, trace_sizes
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPEC = Path(__file__).resolve().parents[2] / "specs" / "data2vec_vision_pretraining.yaml"


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_count_is_student_teacher_and_head():
    with torch.device("meta"):
        student = tf.Data2VecVisionModel(tf.Data2VecVisionConfig(use_shared_relative_position_bias=True))
    counts = param_counts(build(load_spec(SPEC), device="meta"))
    assert counts["by_component"]["student"] == counts["by_component"]["teacher"] == _count(student)
    assert counts["total"] == 2 * _count(student) + 768 * 768 + 768


def test_tiny_student_loads_a_data2vec_vision_checkpoint(tmp_path):
    loaded = load_spec(SPEC, "tiny")
    enc = loaded.spec.encoders["student"]
    config = tf.Data2VecVisionConfig(image_size=32, patch_size=enc.embed.patch_size, hidden_size=enc.width,
                                     num_hidden_layers=enc.layers, num_attention_heads=enc.heads,
                                     intermediate_size=enc.ffn, use_shared_relative_position_bias=True)
    torch.manual_seed(0)
    reference = randomize(tf.Data2VecVisionModel(config)).eval()
    reference.save_pretrained(tmp_path / "ckpt")
    model = build(loaded, weights=tmp_path / "ckpt").eval()
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=1)
    with torch.no_grad():
        (sequence,) = model(inputs)
        theirs = reference(pixel_values=inputs["image"]).last_hidden_state
    assert (sequence - theirs).abs().max().item() <= PARITY_ATOL


def test_block_masking_masks_rectangles_of_the_asked_share():
    masked = block_mask(8, 14, 14, 118, torch.Generator().manual_seed(0)).view(8, 14, 14)
    assert (masked.sum((1, 2)) <= 118).all() and masked.sum((1, 2)).float().mean() > 110
    assert (masked.sum((1, 2)) >= 16).all()  # at least one block of min_block patches


def test_masking_zeroes_exactly_the_masked_patches():
    loaded = load_spec(SPEC, "tiny")
    model = build(loaded)
    objective = model.objectives["data2vec"]
    batch = synthetic_batch(loaded, 4, 0)
    clean = batch.inputs["image"].clone()
    masked = objective.corrupt(batch, torch.Generator().manual_seed(0))["masked"]  # B,N
    p, rows, cols = objective.grid
    assert masked.shape == (4, rows * cols) and (masked.sum(1) == round(0.5 * rows * cols)).all()
    zero = (batch.inputs["image"] == 0).all(1)  # B,H,W
    per_patch = zero.view(4, rows, p, cols, p).all(4).all(2).flatten(1)  # B,N
    assert torch.equal(per_patch, masked)
    kept = ~masked.view(4, 1, rows, 1, cols, 1).expand(4, 3, rows, p, cols, p).reshape(clean.shape)
    assert torch.equal(batch.inputs["image"][kept], clean[kept])


def test_fit_lowers_the_loss_of_the_tiny_variant():
    loaded = load_spec(SPEC, "tiny")
    history = Trainer(loaded, lr=3e-3).fit(synthetic_batch(loaded, 4, 0), 20, seed=0)
    first, last = sum(history.losses[:3]) / 3, sum(history.losses[-3:]) / 3  # a fresh masking every step
    assert last < 0.9 * first, history.losses[::3]
