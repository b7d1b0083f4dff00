"""Hugging Face IDEFICS configs -> specs: IdeficsForVisionText2Text (HuggingFaceM4's open Flamingo) as a CLIP
vision tower, a `perceiver_resampler` and a `gated_xattn_lm`, with the checkpoint's layouts."""

from __future__ import annotations

from mmspec.components.hf import Config, hf_family

_DEFAULTS = {
    "vocab_size": 32000, "additional_vocab_size": 0, "hidden_size": 4096, "intermediate_size": 11008,
    "num_hidden_layers": 32, "num_attention_heads": 32, "dropout": 0.0, "hidden_act": "silu",
    "rms_norm_eps": 1e-6, "cross_layer_interval": 1, "qk_layer_norms": False, "use_resampler": False,
    "alpha_type": "float", "tie_word_embeddings": False, "max_position_embeddings": 2048,
}  # fmt: skip
"""IdeficsConfig's defaults of the keys read here."""
_VISION = {
    "embed_dim": 768, "image_size": 224, "intermediate_size": 5120, "patch_size": 14, "num_hidden_layers": 32,
    "num_attention_heads": 16, "num_channels": 3, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
    "attention_dropout": 0.0,
}  # fmt: skip
"""IdeficsVisionConfig's defaults."""
_PERCEIVER = {"resampler_n_latents": 64, "resampler_depth": 6, "resampler_n_heads": 16, "resampler_head_dim": 96,
              "qk_layer_norms_perceiver": False}
"""IdeficsPerceiverConfig's defaults."""


@hf_family(
    "idefics",
    ("IdeficsForVisionText2Text",),
    _DEFAULTS,
    survey=["BOTH-03"],
    paper="Alayrac et al. Flamingo: a Visual Language Model for Few-Shot Learning. NeurIPS 2022 (IDEFICS: "
          "Laurencon et al. OBELICS. NeurIPS 2023).",
)
def _idefics(cfg: Config, arch: str) -> dict:
    """Images [batch, media, C, H, W] and interleaved ids -> next-token logits. `<image>` is taken to be the last
    added token (id vocab_size + additional_vocab_size - 1, as in IDEFICS's tokenizer)."""
    vision, perceiver = cfg.sub("vision_config", _VISION), cfg.sub("perceiver_config", _PERCEIVER)
    cfg.require("use_resampler", True, "the spec resamples every image with a perceiver_resampler")
    cfg.require("qk_layer_norms", False, "gated_xattn_lm has no query/key norms")
    cfg.require("alpha_type", "float", "gated_xattn_lm's gates are scalars")
    cfg.require("tie_word_embeddings", False, "gated_xattn_lm's head is untied")
    perceiver.require("qk_layer_norms_perceiver", False, "perceiver_resampler has no query/key norms")
    added = cfg.int("additional_vocab_size")
    if added < 1:
        raise cfg.error("additional_vocab_size", "needs the added <image> token (IDEFICS: 2)")
    vocab = cfg.int("vocab_size") + added
    size = vision.int("image_size")
    width = vision.int("embed_dim")
    return {
        "modalities": {
            "image": {"type": "image", "channels": vision.int("num_channels"), "height": size, "width": size,
                      "count": "media", "max_count": 5},
            "text": {"type": "tokens", "vocab_size": vocab, "length": "seq",
                     "max_length": cfg.int("max_position_embeddings")},
        },
        "encoders": {
            "vision": {
                "type": "transformer", "input": "image",
                "embed": {"type": "patches", "patch_size": vision.int("patch_size"), "class_token": True,
                          "bias": False, "norm": True},
                "width": width, "layers": vision.int("num_hidden_layers"),
                "heads": vision.int("num_attention_heads"), "ffn": vision.int("intermediate_size"),
                "activation": vision.activation("hidden_act"), "norm": "pre", "eps": vision.float("layer_norm_eps"),
                "dropout": 0.0, "attention_dropout": vision.float("attention_dropout"),
                "pool": {"type": "cls", "norm": True}, "trainable": False,
            },
            "resampler": {
                "type": "perceiver_resampler", "input": "vision.sequence",
                "depth": perceiver.int("resampler_depth"), "heads": perceiver.int("resampler_n_heads"),
                "head_dim": perceiver.int("resampler_head_dim"), "latents": perceiver.int("resampler_n_latents"),
            },
            "lm": {
                "type": "gated_xattn_lm", "input": "text", "media": "resampler",
                "width": cfg.int("hidden_size"), "layers": cfg.int("num_hidden_layers"),
                "heads": cfg.int("num_attention_heads"), "ffn": cfg.int("intermediate_size"),
                "every": cfg.int("cross_layer_interval"), "image_token": vocab - 1, "added_tokens": added,
                "activation": cfg.activation("hidden_act"), "eps": cfg.float("rms_norm_eps"),
                "dropout": cfg.float("dropout"),
            },
        },
        "objectives": {"lm_loss": {"type": "autoregressive_lm", "input": "lm.logits", "tokens": "text"}},
        "exports": {"media": {"inputs": ["image"], "outputs": ["resampler"]},
                    "decoder_step": {"inputs": ["text", "resampler"], "outputs": ["lm.logits"], "cache": ["lm"]}},
        "weights": {"nodes": {"vision": {"prefix": "model.vision_model", "layout": "clip"},
                              "resampler": {"prefix": "model.perceiver_resampler", "layout": "idefics"},
                              "lm": {"prefix": "", "layout": "idefics"}}},
    }  # fmt: skip
