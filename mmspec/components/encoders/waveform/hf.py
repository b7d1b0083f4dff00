"""The Hugging Face data2vec-audio family: the waveform encoder, then a post-norm `transformer` over its frames."""

from __future__ import annotations

from mmspec.components.hf import Config, hf_family

SAMPLES = 16000
"""The imported spec's audio length: one second at 16 kHz (config.json does not fix one; edit `length`)."""


@hf_family(
    "data2vec-audio",
    ("Data2VecAudioModel",),
    {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "hidden_dropout": 0.1,
        "attention_dropout": 0.1,
        "layer_norm_eps": 1e-5,
        "feat_extract_activation": "gelu",
        "conv_dim": [512, 512, 512, 512, 512, 512, 512],
        "conv_stride": [5, 2, 2, 2, 2, 2, 2],
        "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
        "conv_bias": False,
        "num_conv_pos_embeddings": 5,
        "num_conv_pos_embedding_groups": 16,
        "conv_pos_kernel_size": 19,
        "mask_time_prob": 0.05,
        "mask_feature_prob": 0.0,
        "add_adapter": False,
    },
    survey=["BOTH-01"],
    paper="Baevski et al. data2vec: A General Framework for Self-supervised Learning in Speech, Vision and "
    "Language. ICML 2022.",
)
def _data2vec_audio(cfg: Config, arch: str) -> dict:
    """Feature encoder, projection and conv positions (`waveform`), then the encoder's post-norm layers. The
    SpecAugment vector `masked_spec_embed` (present when mask_time_prob > 0) only replaces masked frames while
    transformers trains; mmspec's data2vec objective masks its own way, so the vector is ignored."""
    cfg.require("feat_extract_activation", "gelu", "another feature-encoder activation")
    cfg.require("add_adapter", False, "the adapter after the encoder")
    rows = [cfg.get(k, list) for k in ("conv_dim", "conv_kernel", "conv_stride")]
    if len({len(r) for r in rows}) != 1:
        raise cfg.error("conv_dim", "conv_dim, conv_kernel and conv_stride must have one entry per conv")
    width = cfg.int("hidden_size")
    features = {
        "type": "waveform",
        "input": "audio",
        "convs": [list(r) for r in zip(*rows, strict=True)],
        "conv_bias": cfg.get("conv_bias", bool),
        "width": width,
        "position_layers": cfg.int("num_conv_pos_embeddings"),
        "position_kernel": cfg.int("conv_pos_kernel_size"),
        "position_groups": cfg.int("num_conv_pos_embedding_groups"),
        "eps": cfg.float("layer_norm_eps"),
        "dropout": cfg.float("hidden_dropout"),
    }
    encoder = {
        "type": "transformer",
        "input": "features",
        "embed": {"type": "sequence"},
        "width": width,
        "layers": cfg.int("num_hidden_layers"),
        "heads": cfg.int("num_attention_heads"),
        "ffn": cfg.int("intermediate_size"),
        "activation": cfg.activation("hidden_act"),
        "eps": cfg.float("layer_norm_eps"),
        "dropout": cfg.float("hidden_dropout"),
        "attention_dropout": cfg.float("attention_dropout"),
        "norm": "post",
    }
    masked = cfg.float("mask_time_prob") > 0 or cfg.float("mask_feature_prob") > 0
    return {
        "modalities": {"audio": {"type": "sequence", "dim": 1, "length": SAMPLES}},
        "encoders": {"features": features, "encoder": encoder},
        "outputs": ["encoder.sequence"],
        "weights": {
            "nodes": {"features": {"prefix": "", "layout": "data2vec_audio"},
                      "encoder": {"prefix": "encoder.layers", "layout": "wav2vec2_layers"}},
            **({"ignore": ["masked_spec_embed"]} if masked else {}),
        },
    }
