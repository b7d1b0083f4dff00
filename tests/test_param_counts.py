"""Full-size parameter counts equal the reference implementations built with the same configuration.

Reference numbers are computed here from the reference classes on the meta device, never typed in.
"""

from __future__ import annotations

import pytest
import torch
import transformers as tf

from mmspec.api import build, load_spec, param_counts


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _clip_b32() -> torch.nn.Module:
    text = {
        "vocab_size": 49408,
        "hidden_size": 512,
        "intermediate_size": 2048,
        "num_hidden_layers": 12,
        "num_attention_heads": 8,
        "max_position_embeddings": 77,
    }
    vision = {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 224,
        "patch_size": 32,
    }
    return tf.CLIPModel(tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=512))


REFERENCES = {
    "bert": lambda: tf.BertForPreTraining(tf.BertConfig()),
    "clip": _clip_b32,
    "resnet50": lambda: tf.ResNetForImageClassification(tf.ResNetConfig(num_labels=1000)),
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_full_size_matches_reference(name):
    with torch.device("meta"):
        reference = _count(REFERENCES[name]())
    loaded = load_spec(f"specs/{name}.yaml")
    with torch.device("meta"):
        assert loaded.spec.reference.implementation == f"transformers.{type(REFERENCES[name]()).__name__}"
    assert param_counts(build(loaded, device="meta"))["total"] == reference


def _linear(i: int, o: int) -> int:
    return i * o + o


def _vilbert_official(c: dict) -> int:
    """Parameter count of the official BertForMultiModalPreTraining (vilbert-multi-task, vilbert/vilbert.py)
    from its configuration, module by module, without the q_dense1/q_dense2 of each co-attention layer, which
    that code creates and never calls."""
    h, vh, bh, ln = c["hidden_size"], c["v_hidden_size"], c["bi_hidden_size"], 2
    embeddings = (c["vocab_size"] + c["max_position_embeddings"] + c["type_vocab_size"]) * h + ln * h
    v_embeddings = _linear(c["v_feature_size"], vh) + _linear(5, vh) + ln * vh
    text_layer = (
        4 * _linear(h, h) + ln * h + _linear(h, c["intermediate_size"]) + _linear(c["intermediate_size"], h) + ln * h
    )
    v_layer = (
        4 * _linear(vh, vh)
        + ln * vh
        + _linear(vh, c["v_intermediate_size"])
        + _linear(c["v_intermediate_size"], vh)
        + ln * vh
    )
    bi_attention = 3 * _linear(vh, bh) + 3 * _linear(h, bh)
    bi_output = _linear(bh, vh) + ln * vh + _linear(bh, h) + ln * h
    connection = (
        bi_attention
        + bi_output
        + _linear(vh, c["v_intermediate_size"])
        + _linear(c["v_intermediate_size"], vh)
        + ln * vh
        + _linear(h, c["intermediate_size"])
        + _linear(c["intermediate_size"], h)
        + ln * h
    )
    poolers = _linear(h, bh) + _linear(vh, bh)
    heads = (
        _linear(h, h)
        + ln * h
        + c["vocab_size"]  # MLM transform + bias; decoder tied to word embeddings
        + _linear(bh, 2)  # bi_seq_relationship
        + _linear(vh, vh)
        + ln * vh
        + _linear(vh, c["v_target_size"])
    )  # image prediction head
    n_co = len(c["v_biattention_id"])
    total = (
        embeddings
        + v_embeddings
        + c["num_hidden_layers"] * text_layer
        + c["v_num_hidden_layers"] * v_layer
        + n_co * connection
        + poolers
        + heads
    )
    return total


OFFICIAL_VILBERT = {  # config/bert_base_6layer_6conect.json of facebookresearch/vilbert-multi-task
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "v_feature_size": 2048,
    "v_target_size": 1601,
    "v_hidden_size": 1024,
    "v_num_hidden_layers": 6,
    "v_intermediate_size": 1024,
    "bi_hidden_size": 1024,
    "v_biattention_id": [0, 1, 2, 3, 4, 5],
    "t_biattention_id": [6, 7, 8, 9, 10, 11],
}


def test_vilbert_matches_official_configuration():
    loaded = load_spec("specs/vilbert.yaml")
    ours = param_counts(build(loaded, device="meta"))["total"]
    assert ours == _vilbert_official(OFFICIAL_VILBERT)
    co = loaded.spec.fusion["coattn"].co
    assert co.text_layers == OFFICIAL_VILBERT["t_biattention_id"]
    assert co.vision_layers == OFFICIAL_VILBERT["v_biattention_id"]


def test_visualbert_matches_reference():
    """specs/visualbert.yaml: VisualBertConfig()'s sizes with the paper's 2048-d region features (the config class
    defaults visual_embedding_dim to 512; only the visual projection depends on it)."""
    default = tf.VisualBertConfig()
    with torch.device("meta"):
        reference = _count(tf.VisualBertForPreTraining(tf.VisualBertConfig(visual_embedding_dim=2048)))
        with_512 = _count(tf.VisualBertForPreTraining(default))
    assert reference - with_512 == (2048 - default.visual_embedding_dim) * default.hidden_size
    loaded = load_spec("specs/visualbert.yaml")
    assert loaded.spec.reference.implementation == "transformers.VisualBertForPreTraining"
    assert loaded.spec.modalities["image"].dim == 2048
    assert param_counts(build(loaded, device="meta"))["total"] == reference
