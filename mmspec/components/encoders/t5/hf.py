"""Hugging Face T5 (v1.0 and v1.1) onto `t5` stacks: T5ForConditionalGeneration (encoder, decoder, LM head) and
T5EncoderModel (the encoder alone, as Imagen uses it)."""

from __future__ import annotations

from typing import Any

from mmspec.components.hf import Config, hf_family

_FEED_FORWARD = {"relu": "relu", "gated-gelu": "gated-gelu"}
"""T5Config.feed_forward_proj -> ours."""


@hf_family(
    "t5",
    ("T5ForConditionalGeneration", "T5EncoderModel"),
    {
        "vocab_size": 32128,
        "d_model": 512,
        "d_kv": 64,
        "d_ff": 2048,
        "num_layers": 6,
        "num_heads": 8,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "dropout_rate": 0.1,
        "layer_norm_epsilon": 1e-6,
        "feed_forward_proj": "relu",
        "tie_word_embeddings": True,
        "is_encoder_decoder": True,
    },
    survey=["NLP-10"],
    paper="Raffel et al. Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer. JMLR 2020.",
)
def _t5(cfg: Config, arch: str) -> dict:
    proj = cfg.get("feed_forward_proj", str)
    if proj not in _FEED_FORWARD:
        raise cfg.error("feed_forward_proj", f"{proj!r} is not supported yet; supported: {', '.join(_FEED_FORWARD)}")
    vocab = cfg.int("vocab_size")
    stack = {
        "width": cfg.int("d_model"),
        "heads": cfg.int("num_heads"),
        "head_dim": cfg.int("d_kv"),
        "ffn": cfg.int("d_ff"),
        "feed_forward": _FEED_FORWARD[proj],
        "eps": cfg.float("layer_norm_epsilon"),
        "dropout": cfg.float("dropout_rate"),
        "buckets": cfg.int("relative_attention_num_buckets"),
        "max_distance": cfg.int("relative_attention_max_distance"),
    }
    source = {"type": "tokens", "vocab_size": vocab, "length": "src_len", "max_length": 512, "mask": True}
    encoder = {"type": "t5", "input": "source", "layers": cfg.int("num_layers"), **stack}
    nodes: dict[str, Any] = {"encoder": {"prefix": "", "layout": "t5"}}
    if arch == "T5EncoderModel":
        return {"modalities": {"source": source}, "encoders": {"encoder": encoder},
                "outputs": ["encoder.sequence"], "weights": {"nodes": nodes}}
    decoder_layers = cfg.data.get("num_decoder_layers")
    tied = cfg.get("tie_word_embeddings", bool)
    # transformers scales the decoder output before the head when `scale_decoder_outputs` (written by transformers 5)
    # says so, else when the head is tied (T5 v1.0; v1.1 configs untie it and do not scale)
    scale = cfg.data.get("scale_decoder_outputs", tied)
    if not isinstance(scale, bool):
        raise cfg.error("scale_decoder_outputs", f"expected bool, got {scale!r}")
    decoder = {
        "type": "t5",
        "input": "target",
        "layers": cfg.int("num_layers") if decoder_layers is None else cfg.int("num_decoder_layers"),
        **stack,
        "share": "encoder",
        "cross": {"input": "encoder"},
        "lm_head": {"tied": tied, "scale": scale},
    }
    nodes["decoder"] = {"prefix": "", "layout": "t5"}
    return {
        "modalities": {"source": source, "target": {**source, "length": "tgt_len"}},
        "encoders": {"encoder": encoder, "decoder": decoder},
        "outputs": ["decoder.logits"],
        "weights": {"nodes": nodes},
    }
