"""specs/visualbert.yaml computes what transformers.VisualBertForPreTraining computes: the tiny variant, given the
reference's (random) weights, matches its pre-training logits."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers as tf

from mmspec.api import build, load_spec

SPEC = Path(__file__).resolve().parents[2] / "specs" / "visualbert.yaml"
LAYER = {  # ours -> transformers, inside one layer
    "attn.q": "attention.self.query",
    "attn.k": "attention.self.key",
    "attn.v": "attention.self.value",
    "attn.out": "attention.output.dense",
    "attn_res.norm": "attention.output.LayerNorm",
    "ffn.fc1": "intermediate.dense",
    "ffn.fc2": "output.dense",
    "ffn_res.norm": "output.LayerNorm",
}


def _names(layers: int) -> dict[str, str]:
    """Our parameter names -> VisualBertForPreTraining's."""
    e, c = "visual_bert.embeddings.", "components."
    names = {
        f"{c}text_embed.embed.word.weight": f"{e}word_embeddings.weight",
        f"{c}text_embed.embed.position.weight": f"{e}position_embeddings.weight",
        f"{c}text_embed.embed.segment.weight": f"{e}token_type_embeddings.weight",
        f"{c}image_embed.embed.position.weight": f"{e}visual_position_embeddings.weight",
        f"{c}image_embed.embed.segment.weight": f"{e}visual_token_type_embeddings.weight",
        f"{c}mlm.bias": "cls.predictions.bias",
        f"{c}mlm.weight": "cls.predictions.decoder.weight",
    }
    for p in ("weight", "bias"):
        names |= {
            f"{c}image_embed.embed.features.{p}": f"{e}visual_projection.{p}",
            f"{c}joint.embed.norm.{p}": f"{e}LayerNorm.{p}",
            f"{c}joint.pool.dense.{p}": f"visual_bert.pooler.dense.{p}",
            f"{c}mlm.transform.0.{p}": f"cls.predictions.transform.dense.{p}",
            f"{c}mlm.transform.2.{p}": f"cls.predictions.transform.LayerNorm.{p}",
            f"{c}sentence_image.mlp.0.{p}": f"cls.seq_relationship.{p}",
        }
        for i in range(layers):
            names |= {f"{c}joint.layers.{i}.{ours}.{p}": f"visual_bert.encoder.layer.{i}.{theirs}.{p}"
                      for ours, theirs in LAYER.items()}
    return names


def test_tiny_matches_transformers_visualbert():
    loaded = load_spec(SPEC, "tiny")
    joint = loaded.spec.encoders["joint"]
    config = tf.VisualBertConfig(
        vocab_size=loaded.spec.modalities["text"].vocab_size,
        hidden_size=joint.width,
        num_hidden_layers=joint.layers,
        num_attention_heads=joint.heads,
        intermediate_size=joint.ffn,
        max_position_embeddings=loaded.spec.encoders["text_embed"].embed.positions,
        visual_embedding_dim=loaded.spec.modalities["image"].dim,
    )
    torch.manual_seed(0)
    reference = tf.VisualBertForPreTraining(config).eval()
    theirs = reference.state_dict()
    model = build(loaded)
    ours = model.state_dict()
    names = _names(joint.layers)
    assert set(names) == set(ours)
    model.load_state_dict({k: theirs[v] for k, v in names.items()})

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, config.vocab_size, (3, 7), generator=g)
    text_mask = torch.ones(3, 7, dtype=torch.int64)
    text_mask[1, 5:] = 0
    segments = torch.randint(0, 2, (3, 7), generator=g)
    regions = torch.randn(3, 5, config.visual_embedding_dim, generator=g)
    image_mask = torch.ones(3, 5, dtype=torch.int64)
    image_mask[2, 3:] = 0
    with torch.no_grad():
        mlm, match = model({"text": ids, "text_mask": text_mask, "text_segments": segments, "image": regions,
                            "image_mask": image_mask})
        out = reference(input_ids=ids, attention_mask=text_mask, token_type_ids=segments, visual_embeds=regions,
                        visual_attention_mask=image_mask)
    assert mlm.shape == out.prediction_logits.shape == (3, 12, config.vocab_size)
    torch.testing.assert_close(mlm, out.prediction_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(match, out.seq_relationship_logits, atol=1e-5, rtol=1e-4)
