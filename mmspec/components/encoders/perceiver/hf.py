"""Hugging Face Perceiver configs -> specs: PerceiverModel without pre/post-processors (the input array is given)
and PerceiverForMaskedLM (the language perceiver: text preprocessor, masked-LM decoder, tied byte embeddings)."""

from __future__ import annotations

from typing import Any

from mmspec.components.hf import Config, hf_family, num_labels

_DEFAULTS = {
    "num_latents": 256,
    "d_latents": 1280,
    "d_model": 768,
    "num_blocks": 1,
    "num_self_attends_per_block": 26,
    "num_self_attention_heads": 8,
    "num_cross_attention_heads": 8,
    "qk_channels": None,
    "v_channels": None,
    "cross_attention_shape_for_attention": "kv",
    "self_attention_widening_factor": 1,
    "cross_attention_widening_factor": 1,
    "hidden_act": "gelu",
    "attention_probs_dropout_prob": 0.1,
    "use_query_residual": True,
    "vocab_size": 262,
    "max_position_embeddings": 2048,
    "image_size": 56,
    "num_labels": 2,
}
"""PerceiverConfig's defaults of the keys read here (layer_norm_eps is unused by its layers: LayerNorm eps 1e-5)."""


def _optional(cfg: Config, key: str) -> int | None:
    return cfg.get(key, (int, type(None)))


def _encoder(cfg: Config, source: str) -> dict:
    shape = cfg.get("cross_attention_shape_for_attention", str)
    if shape not in ("kv", "q"):
        raise cfg.error("cross_attention_shape_for_attention", f"expected 'kv' or 'q', got {shape!r}")
    return {
        "type": "perceiver",
        "input": source,
        "latents": cfg.int("num_latents"),
        "width": cfg.int("d_latents"),
        "layers": cfg.int("num_self_attends_per_block"),
        "blocks": cfg.int("num_blocks"),
        "heads": cfg.int("num_self_attention_heads"),
        "cross_heads": cfg.int("num_cross_attention_heads"),
        "qk_channels": _optional(cfg, "qk_channels"),
        "v_channels": _optional(cfg, "v_channels"),
        "cross_qk": {"kv": "keys", "q": "queries"}[shape],
        "widening": cfg.int("self_attention_widening_factor"),
        "cross_widening": cfg.int("cross_attention_widening_factor"),
        "query_residual": cfg.get("use_query_residual", bool),
        "activation": cfg.activation("hidden_act"),
        "eps": 1e-5,
        "attention_dropout": cfg.float("attention_probs_dropout_prob"),
    }


@hf_family(
    "perceiver",
    ("PerceiverModel", "PerceiverForMaskedLM", "PerceiverForImageClassificationLearned"),
    _DEFAULTS,
    survey=["FM-02"],
    paper="Jaegle et al. Perceiver IO: A General Architecture for Structured Inputs & Outputs. ICLR 2022.",
)
def _perceiver(cfg: Config, arch: str) -> dict:
    """PerceiverModel: the input array [batch, seq, d_model] -> the latents. PerceiverForMaskedLM: bytes of the
    fixed length max_position_embeddings -> per-byte logits (transformers' masked-LM decoder has one query per
    position of that length)."""
    d_model = cfg.int("d_model")
    if arch == "PerceiverModel":
        tree: dict[str, Any] = {
            "modalities": {"inputs": {"type": "sequence", "dim": d_model, "length": "seq", "max_length": 2048}},
            "encoders": {"perceiver": _encoder(cfg, "inputs")},
            "outputs": ["perceiver.sequence"],
        }
        return {**tree, "weights": {"nodes": {"perceiver": {"prefix": "", "layout": "perceiver"}}}}
    if arch == "PerceiverForImageClassificationLearned":
        return _image_classifier(cfg)
    length = cfg.int("max_position_embeddings")
    encoder = {**_encoder(cfg, "text"), "embed": {"type": "tokens", "width": d_model, "positions": length}}
    decoder = {
        "type": "perceiver_decoder",
        "input": "perceiver.sequence",
        "queries": length,
        "width": d_model,
        "heads": 8,
        "qk_channels": 256,
        "v_channels": d_model,
        "cross_qk": encoder["cross_qk"],
        "query_residual": False,
        "activation": encoder["activation"],
        "attention_dropout": encoder["attention_dropout"],
        "tie_to": "perceiver",
    }
    text = {"type": "tokens", "vocab_size": cfg.int("vocab_size"), "length": length, "max_length": length,
            "mask": True}
    nodes = {"perceiver": {"prefix": "perceiver", "layout": "perceiver"},
             "mlm": {"prefix": "", "layout": "perceiver_mlm_decoder"}}
    return {"modalities": {"text": text}, "encoders": {"perceiver": encoder}, "heads": {"mlm": decoder},
            "weights": {"nodes": nodes}}


def _image_classifier(cfg: Config) -> dict:
    """transformers' PerceiverForImageClassificationLearned: 1x1 conv to 256 channels and 256 learned position
    channels (projected by a Linear) per pixel, the encoder, one learned query decoded to the classes."""
    size = cfg.int("image_size")
    encoder = {**_encoder(cfg, "image"), "embed": {"type": "pixels", "channels": 256, "positions": 256,
                                                   "project": 256}}
    decoder = {
        "type": "perceiver_decoder",
        "input": "perceiver.sequence",
        "queries": 1,
        "width": cfg.int("d_latents"),
        "cross_qk": encoder["cross_qk"],
        "query_residual": True,
        "activation": encoder["activation"],
        "attention_dropout": encoder["attention_dropout"],
        "project": num_labels(cfg),
        "single": True,
    }
    nodes = {"perceiver": {"prefix": "perceiver", "layout": "perceiver"},
             "classifier": {"prefix": "perceiver.decoder", "layout": "perceiver_classification_decoder"}}
    return {"modalities": {"image": {"type": "image", "channels": 3, "height": size, "width": size}},
            "encoders": {"perceiver": encoder}, "heads": {"classifier": decoder},
            "objectives": {"classification": {"type": "cross_entropy", "input": "classifier"}},
            "weights": {"nodes": nodes}}
