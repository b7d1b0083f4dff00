"""FM-02 Perceiver / Perceiver IO: the specs' sizes equal transformers' Perceiver classes built on the meta device,
the spec files are what `mmspec import hf` writes for those configs, the self-attention block's passes share one
set of weights, the language perceiver's masked-LM objective trains on the tiny variant, and the channel rules
are located. (Imported weights reproduce transformers' outputs: tests/weights/test_import_hf.py.)
FM-06, the chapter's latent-prediction proposal: its count is PerceiverModel's plus the declared regression MLP
plus the teacher's copy, its objective trains, and its export holds the student only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import transformers as tf
from torch import nn

from mmspec.api import build, capture, load_spec, param_counts
from mmspec.errors import SpecError
from mmspec.graph.inputs import make_inputs, trace_sizes
from mmspec.importers.hf import import_hf, write_spec
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
LANGUAGE = {"qk_channels": 256, "v_channels": 1280}
"""The published language perceiver's channels (deepmind/language-perceiver)."""
SIZES = {  # (spec, variant) -> the transformers class and PerceiverConfig of that size
    ("perceiver", None): (tf.PerceiverModel, {}),
    ("perceiver_lm", None): (tf.PerceiverForMaskedLM, LANGUAGE),
    ("perceiver_lm", "default_config"): (tf.PerceiverForMaskedLM, {}),
    ("perceiver_image", None): (tf.PerceiverForImageClassificationLearned, {"image_size": 224, "num_labels": 1000}),
}


@pytest.mark.parametrize(("name", "variant"), list(SIZES), ids=str)
def test_sizes_match_transformers(name, variant):
    loaded = load_spec(ROOT / "specs" / f"{name}.yaml", variant)
    cls, config = SIZES[name, variant]
    assert loaded.spec.reference.implementation == f"transformers.{cls.__name__}"
    with torch.device("meta"):
        reference = sum(p.numel() for p in cls(tf.PerceiverConfig(**config)).parameters())
    assert param_counts(build(loaded, device="meta"))["total"] == reference


@pytest.mark.parametrize(("name", "variant"), list(SIZES), ids=str)
def test_spec_is_what_import_hf_writes(name, variant, tmp_path):
    cls, config = SIZES[name, variant]
    written = tf.PerceiverConfig(**config)
    written.architectures = [cls.__name__]
    written.save_pretrained(tmp_path / "ckpt")
    tree, _ = import_hf(tmp_path / "ckpt")
    write_spec(tree, tmp_path / "imported.yaml")
    imported = load_spec(tmp_path / "imported.yaml").spec
    spec = load_spec(ROOT / "specs" / f"{name}.yaml", variant).spec
    for slot in ("modalities", "encoders", "heads", "weights"):
        assert getattr(imported, slot) == getattr(spec, slot), slot


def test_blocks_reuse_the_same_self_attention_weights():
    """Two passes through the block add no parameters but change the output (the layers run twice)."""
    loaded = load_spec(ROOT / "specs" / "perceiver.yaml", "tiny")
    once = load_spec(ROOT / "specs" / "perceiver.yaml", "tiny", sets=["encoders.perceiver.blocks=1"])
    twice, single = build(loaded), build(once)
    assert loaded.spec.encoders["perceiver"].blocks == 2
    single.load_state_dict(twice.state_dict())
    assert param_counts(twice)["total"] == param_counts(single)["total"]
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=0)
    with torch.no_grad():
        z2 = twice.node_values(inputs)["perceiver"]["sequence"]  # B,N,D
        z1 = single.node_values(inputs)["perceiver"]["sequence"]  # B,N,D
        layers = twice.components["perceiver"].layers
        again = z1
        for layer in layers:
            again = layer(again)  # B,N,D
    torch.testing.assert_close(z2, again, atol=1e-6, rtol=0)
    assert (z2 - z1).abs().max() > 1e-3


def test_masked_lm_lowers_the_loss_of_the_tiny_language_perceiver():
    loaded = load_spec(ROOT / "specs" / "perceiver_lm.yaml", "tiny")
    trainer = Trainer(loaded, lr=3e-3)
    history = trainer.fit(synthetic_batch(loaded, 4, 0), 12, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.8 * first, history.losses[::3]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["encoders.perceiver.v_channels=16"], "self-attention values (16) are added to the latents"),
        (["encoders.perceiver.qk_channels=10"], "qk_channels 10 is not divisible by the 4 heads"),
        (["heads.mlm.width=8"], "tied embeddings of 'perceiver' are 16 wide but the queries are 8"),
    ],
)
def test_channel_rules_are_located(sets, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec(ROOT / "specs" / "perceiver_lm.yaml", "tiny", sets)


def test_latent_prediction_is_a_perceiver_its_regression_mlp_and_the_teacher_copy():
    with torch.device("meta"):
        encoder = sum(p.numel() for p in tf.PerceiverModel(tf.PerceiverConfig()).parameters())
        mlp = nn.Sequential(nn.Linear(1280, 1280), nn.LayerNorm(1280), nn.GELU(), nn.Linear(1280, 1280))
        predictor = sum(p.numel() for p in mlp.parameters())
    ours = param_counts(build(load_spec(ROOT / "specs" / "latent_prediction.yaml"), device="meta"))
    assert ours["by_component"]["student"] == ours["by_component"]["teacher"] == encoder
    assert ours["trainable"] == encoder + predictor
    assert ours["total"] == 2 * encoder + predictor


def test_latent_prediction_trains_and_exports_the_student_only():
    loaded = load_spec(ROOT / "specs" / "latent_prediction.yaml", "tiny")
    history = Trainer(loaded, lr=3e-3).fit(synthetic_batch(loaded, 4, 0), 12, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.5 * first, history.losses[::3]
    assert {n.name for n in loaded.plan.export_nodes} == {"student"}
    gm = capture(build(loaded))
    modules = {str(n.target).split(".")[1] for n in gm.graph.nodes if n.op in ("call_module", "get_attr")}
    assert modules == {"student"}
