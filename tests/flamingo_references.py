"""IDEFICS configurations (transformers.IdeficsForVisionText2Text, the open Flamingo reproduction) that
specs/flamingo.yaml is compared with, and the `--set` overrides that give the spec each size."""

from __future__ import annotations

import transformers as tf

DEFAULT = {  # specs/flamingo.yaml's default: CLIP ViT-B/16 tower, 16-layer Llama of width 2048, interval 4
    "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 16, "num_attention_heads": 16,
    "cross_layer_interval": 4,
    "vision_config": {"embed_dim": 768, "image_size": 224, "patch_size": 16, "intermediate_size": 3072,
                      "num_hidden_layers": 12, "num_attention_heads": 12},
    "perceiver_config": {"use_resampler": True, "resampler_depth": 6, "resampler_n_heads": 12,
                         "resampler_head_dim": 64, "resampler_n_latents": 64},
}
IDEFICS_9B = {  # HuggingFaceM4/idefics-9b's config.json: ViT-H/14, Llama-7B, interval 4
    "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
    "cross_layer_interval": 4,
    "vision_config": {"embed_dim": 1280, "image_size": 224, "patch_size": 14, "intermediate_size": 5120,
                      "num_hidden_layers": 32, "num_attention_heads": 16},
    "perceiver_config": {"use_resampler": True, "resampler_depth": 6, "resampler_n_heads": 16,
                         "resampler_head_dim": 96, "resampler_n_latents": 64},
}
IDEFICS_9B_SETS = [  # specs/flamingo.yaml --set overrides for IDEFICS-9B (with --max-params)
    "encoders.vision.embed.patch_size=14", "encoders.vision.width=1280", "encoders.vision.layers=32",
    "encoders.vision.heads=16", "encoders.vision.ffn=5120", "encoders.resampler.heads=16",
    "encoders.resampler.head_dim=96", "encoders.lm.width=4096", "encoders.lm.layers=32", "encoders.lm.heads=32",
    "encoders.lm.ffn=11008",
]


def idefics(sizes: dict = DEFAULT) -> tf.IdeficsForVisionText2Text:
    """IdeficsForVisionText2Text of `sizes` with the resampler on and (unless `sizes` says otherwise) IDEFICS's
    vocabulary of 32000 + 2 added tokens."""
    return tf.IdeficsForVisionText2Text(tf.IdeficsConfig(**{"vocab_size": 32000, "additional_vocab_size": 2,
                                                            "use_resampler": True, **sizes}))
