"""ISL-10 FLAVA: specs/flava.yaml is FlavaModel(FlavaConfig()) (total and per encoder, counted on the meta device) and
what `mmspec import hf` writes for it; an imported random checkpoint gives transformers' contrastive logits (its
encoder outputs are compared in tests/weights/test_import_hf.py); the contrastive objective trains on the tiny
variant; the importer's sub-config defaults are transformers'."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers as tf
from hf_reference import PARITY_ATOL, randomize

from mmspec.api import build, load_spec, param_counts
from mmspec.components.encoders.transformer.hf import FLAVA_IMAGE, FLAVA_MULTIMODAL, FLAVA_TEXT
from mmspec.graph.inputs import make_inputs, trace_sizes
from mmspec.importers.hf import import_hf, write_spec
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPEC = Path(__file__).resolve().parents[2] / "specs" / "flava.yaml"
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37}
TINY = tf.FlavaConfig(text_config={**SMALL, "vocab_size": 99, "max_position_embeddings": 16},
                      image_config={**SMALL, "image_size": 32, "patch_size": 8},
                      multimodal_config={**SMALL, "num_hidden_layers": 1}, projection_dim=16)  # fmt: skip


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_size_matches_flava_model_and_its_encoders():
    with torch.device("meta"):
        reference = tf.FlavaModel(tf.FlavaConfig())
    ours = param_counts(build(load_spec(SPEC), device="meta"))
    assert ours["total"] == _count(reference)
    by = ours["by_component"]
    assert by["image_tower"] == _count(reference.image_model)
    assert by["text_tower"] == _count(reference.text_model)
    assert by["multimodal"] == _count(reference.multimodal_model)
    assert by["image_to_mm"] == _count(reference.image_to_mm_projection)
    assert by["flava"] == reference.logit_scale.numel()


def test_spec_is_what_import_hf_writes(tmp_path):
    config = tf.FlavaConfig()
    config.architectures = ["FlavaModel"]
    config.save_pretrained(tmp_path / "ckpt")
    tree, _ = import_hf(tmp_path / "ckpt")
    write_spec(tree, tmp_path / "imported.yaml")
    imported, spec = load_spec(tmp_path / "imported.yaml").spec, load_spec(SPEC).spec
    for slot in ("modalities", "encoders", "fusion", "heads", "objectives", "outputs", "weights"):
        assert getattr(imported, slot) == getattr(spec, slot), slot


def test_imported_contrastive_logits_match_transformers(tmp_path):
    """Global contrastive logits: exp(logit_scale) x cosines of the projected [CLS_I] / [CLS_T] states, which
    FlavaForPreTraining computes from FlavaModel's image_projection and text_projection."""
    torch.manual_seed(0)
    reference = randomize(tf.FlavaModel(TINY)).eval()
    reference.save_pretrained(tmp_path / "ckpt")
    tree, _ = import_hf(tmp_path / "ckpt")
    write_spec(tree, tmp_path / "m.yaml")
    loaded = load_spec(tmp_path / "m.yaml")
    model = build(loaded, weights=tmp_path / "ckpt")
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=1)
    with torch.no_grad():
        ours = model.node_values(inputs)["flava"]
        out = reference(input_ids=inputs["text"], attention_mask=inputs["text_mask"], pixel_values=inputs["image"])
        image = torch.nn.functional.normalize(reference.image_projection(out.image_embeddings[:, 0]), dim=-1)  # B,P
        text = torch.nn.functional.normalize(reference.text_projection(out.text_embeddings[:, 0]), dim=-1)  # B,P
        logits = reference.logit_scale.exp() * image @ text.T  # B,B
    diff = (ours["logits_per_image"] - logits).abs().max().item()
    assert diff <= PARITY_ATOL and logits.abs().max() > 0.1, f"max abs diff {diff:.3g}"
    torch.testing.assert_close(ours["logits_per_text"], logits.T, atol=PARITY_ATOL, rtol=0)


def test_contrastive_objective_lowers_the_loss_of_the_tiny_variant():
    loaded = load_spec(SPEC, "tiny")
    trainer = Trainer(loaded, lr=3e-3)
    history = trainer.fit(synthetic_batch(loaded, 4, 0), 12, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.8 * first, history.losses[::3]


@pytest.mark.parametrize(("sub", "ours"), [("text_config", FLAVA_TEXT), ("image_config", FLAVA_IMAGE),
                                           ("multimodal_config", FLAVA_MULTIMODAL)])
def test_sub_config_defaults_are_those_of_transformers(sub, ours):
    reference = getattr(tf.FlavaConfig(), sub)
    for key, value in ours.items():
        assert getattr(reference, key) == value, f"{sub}.{key}"
