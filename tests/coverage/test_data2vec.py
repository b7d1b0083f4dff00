"""data2vec (BOTH-01): the text spec's student equals transformers' Data2VecTextModel (count on the meta device,
and outputs with a random checkpoint's weights), its training-only parts are the regression head and the teacher
copy, and `fit` on the tiny variant lowers the data2vec loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers as tf
from hf_reference import PARITY_ATOL, randomize

from mmspec.api import build, load_spec, param_counts
from mmspec.errors import SpecError
from mmspec.graph.inputs import make_inputs, trace_sizes
from mmspec.importers.hf import import_hf, write_spec
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPECS = Path(__file__).resolve().parents[2] / "specs"
TEXT = SPECS / "data2vec_text.yaml"
AUDIO = SPECS / "data2vec_audio.yaml"
ROBERTA = {"vocab_size": 50265, "max_position_embeddings": 514, "type_vocab_size": 1, "pad_token_id": 1,
           "layer_norm_eps": 1e-5}
"""Data2VecTextConfig's defaults are BERT's; the released data2vec text model has RoBERTa's sizes."""


def _count(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def test_text_matches_transformers():
    """Student = Data2VecTextModel; + the linear regression head; + the teacher, a second copy of the student."""
    config = tf.Data2VecTextConfig(**ROBERTA)
    with torch.device("meta"):
        student, teacher = tf.Data2VecTextModel(config), tf.Data2VecTextModel(config)
        head = torch.nn.Linear(config.hidden_size, config.hidden_size)
    counts = param_counts(build(load_spec(TEXT), device="meta"))
    assert counts["by_component"]["student"] == _count(student)
    assert counts["by_component"]["teacher"] == _count(teacher)
    assert counts["total"] == _count(student, head, teacher)
    assert counts["trainable"] == _count(student, head)  # the teacher only follows the EMA


def test_text_student_is_what_import_hf_writes(tmp_path):
    config = tf.Data2VecTextConfig(**ROBERTA)
    config.architectures = ["Data2VecTextModel"]
    config.save_pretrained(tmp_path / "ckpt")
    tree, _ = import_hf(tmp_path / "ckpt")
    write_spec(tree, tmp_path / "imported.yaml")
    imported, spec = load_spec(tmp_path / "imported.yaml").spec, load_spec(TEXT).spec
    assert imported.encoders["data2vec_text"] == spec.encoders["student"].model_copy(update={"dropout": 0.1})
    assert imported.modalities == spec.modalities


def test_text_student_loads_a_data2vec_checkpoint(tmp_path):
    """The tiny spec's student with a random Data2VecTextModel's weights gives its sequence and pooled outputs
    (padding tokens where the mask is 0, so the positions counted from the padding id show)."""
    spec = load_spec(TEXT, "tiny").spec
    enc = spec.encoders["student"]
    config = tf.Data2VecTextConfig(vocab_size=spec.modalities["text"].vocab_size, hidden_size=enc.width,
                                   num_hidden_layers=enc.layers, num_attention_heads=enc.heads,
                                   intermediate_size=enc.ffn, max_position_embeddings=enc.embed.positions,
                                   type_vocab_size=1, pad_token_id=1, layer_norm_eps=1e-5)
    torch.manual_seed(0)
    reference = randomize(tf.Data2VecTextModel(config))
    reference.save_pretrained(tmp_path / "ckpt")
    loaded = load_spec(TEXT, "tiny")
    model = build(loaded, weights=tmp_path / "ckpt").eval()
    new = model.weights_report["new"]  # the training-only parts, initialised here
    assert new and all(n.startswith(("regress.", "teacher.")) for n in new) and not model.weights_report["ignored"]
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=1)
    inputs["text"][inputs["text_mask"] == 0] = 1
    assert (inputs["text_mask"] == 0).any()
    with torch.no_grad():
        sequence, pooled = model(inputs)  # B,S,D; B,D
        theirs = reference(input_ids=inputs["text"], attention_mask=inputs["text_mask"])
    for ours, ref in ((sequence, theirs.last_hidden_state), (pooled, theirs.pooler_output)):
        diff = (ours - ref).abs().max().item()
        assert diff <= PARITY_ATOL, f"max abs diff {diff:.3g}"


def test_text_fit_lowers_the_loss_of_the_tiny_variant():
    loaded = load_spec(TEXT, "tiny")
    history = Trainer(loaded, lr=3e-3).fit(synthetic_batch(loaded, 4, 0), 12, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]


AUDIO_TINY = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 24,
              "conv_dim": [8, 12, 12], "conv_kernel": [10, 3, 2], "conv_stride": [5, 2, 2], "conv_bias": True,
              "num_conv_pos_embeddings": 2, "conv_pos_kernel_size": 4, "num_conv_pos_embedding_groups": 4}
"""Three convs (one with an even kernel), an even position kernel (its extra frame dropped), biases."""


def test_audio_import_hf_reproduces_transformers(tmp_path):
    """A random Data2VecAudioModel: the imported spec with its weights gives its last hidden state, and the
    frame count follows the convs."""
    torch.manual_seed(0)
    reference = randomize(tf.Data2VecAudioModel(tf.Data2VecAudioConfig(**AUDIO_TINY)))
    reference.save_pretrained(tmp_path / "ckpt")
    tree, arch = import_hf(tmp_path / "ckpt")
    assert arch == "Data2VecAudioModel"
    tree["modalities"]["audio"]["length"] = 400
    write_spec(tree, tmp_path / "audio.yaml")
    loaded = load_spec(tmp_path / "audio.yaml")
    model = build(loaded, weights=tmp_path / "ckpt").eval()
    assert model.weights_report["ignored"] == ["masked_spec_embed"] and not model.weights_report["new"]
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=1)
    with torch.no_grad():
        (ours,) = model(inputs)  # B,T,D
        theirs = reference(input_values=inputs["audio"][..., 0]).last_hidden_state  # B,T,D
    assert ours.shape == theirs.shape and ours.shape[1:] == (19, 16)  # 400 samples -> 79 -> 39 -> 19 frames
    diff = (ours - theirs).abs().max().item()
    assert diff <= PARITY_ATOL, f"max abs diff {diff:.3g}"


def test_audio_matches_transformers():
    """Student = Data2VecAudioModel without the SpecAugment vector; + the regression head; + the teacher copy."""
    config = tf.Data2VecAudioConfig(mask_time_prob=0.0)
    with torch.device("meta"):
        student, teacher = tf.Data2VecAudioModel(config), tf.Data2VecAudioModel(config)
        head = torch.nn.Linear(config.hidden_size, config.hidden_size)
    counts = param_counts(build(load_spec(AUDIO), device="meta"))
    parts = counts["by_component"]
    assert parts["features"] + parts["student"] == parts["teacher"] == _count(student)
    assert counts["total"] == _count(student, head, teacher)


def test_audio_spec_is_what_import_hf_writes(tmp_path):
    config = tf.Data2VecAudioConfig()
    config.architectures = ["Data2VecAudioModel"]
    config.save_pretrained(tmp_path / "ckpt")
    tree, _ = import_hf(tmp_path / "ckpt")
    write_spec(tree, tmp_path / "imported.yaml")
    imported, spec = load_spec(tmp_path / "imported.yaml").spec, load_spec(AUDIO).spec
    assert imported.modalities == spec.modalities
    assert imported.encoders["features"] == spec.encoders["features"]
    assert imported.encoders["encoder"] == spec.encoders["student"]  # the spec's teacher follows `student`
    assert imported.weights.nodes["encoder"] == spec.weights.nodes["student"]


def test_audio_fit_lowers_the_loss_of_the_tiny_variant():
    loaded = load_spec(AUDIO, "tiny")
    history = Trainer(loaded, lr=3e-3).fit(synthetic_batch(loaded, 4, 0), 12, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["modalities.audio.length=12"], "12 samples leave no frame"),
        (["modalities.audio.length=seq"], "must be a fixed number of samples"),
        (["modalities.audio.dim=2"], "needs raw audio [batch, samples, 1]"),
        (["encoders.features.position_groups=5"], "not divisible by position_groups 5"),
    ],
)
def test_waveform_shape_rules_are_located(sets, message):
    with pytest.raises(SpecError) as info:
        load_spec(AUDIO, "tiny", sets)
    text = str(info.value)
    assert message in text and "error[check]: encoders.features:" in text, text
