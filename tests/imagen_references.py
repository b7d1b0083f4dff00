"""Reference networks of the Imagen spec (T2I-14): transformers' T5EncoderModel (the frozen T5 v1.1 text encoder)
and diffusers' UNet2DConditionModel at the base U-Net's configuration (cross-attention transformer blocks at the
three lower levels and in the middle, the attention-pooled text added to the timestep embedding:
addition_embed_type "text") and at the super-resolution stages' (6 input channels: x_t and the resized low-resolution
image; the augmentation level embedded like the timestep: class_embed_type "timestep"), as DeepFloyd IF configures
it, built on whatever device is current, for tests/references.py and tests/coverage/test_imagen.py. Imagen has no
official code or weights."""

from __future__ import annotations

import transformers as tf
from diffusers import UNet2DConditionModel
from torch import nn

T5_LARGE = {"d_model": 1024, "num_layers": 24, "num_heads": 16, "d_ff": 2816}
"""T5 v1.1-Large (the spec's default text encoder)."""
T5_XXL = {"d_model": 4096, "num_layers": 24, "num_heads": 64, "d_ff": 10240}
"""T5 v1.1-XXL (the paper's text encoder)."""


def t5_encoder(size: dict | None = None, vocab: int = 32128) -> tf.T5EncoderModel:
    """A T5 v1.1 encoder: gated-GELU feed-forward, 64-wide heads, untied from any LM head."""
    return tf.T5EncoderModel(tf.T5Config(vocab_size=vocab, d_kv=64, feed_forward_proj="gated-gelu",
                                         **(size or T5_LARGE)))


def base_unet(widths: tuple[int, ...] = (256, 512, 768, 1024), context: int = 1024, size: int = 64, depth: int = 3,
              attention: tuple[bool, ...] = (False, True, True, True), heads: int = 8, groups: int = 32,
              eps: float = 1e-5, pooled_heads: int = 64, super_resolution: bool = False) -> UNet2DConditionModel:
    """The text-conditioned U-Net: `attention` levels as CrossAttn blocks attending to `context`-wide states, the
    text pooled by `pooled_heads` heads into the time embedding; `depth` an int or one per level;
    `super_resolution`: the low-resolution image's 3 channels in and the augmentation level's embedding.
    `attention_head_dim` is diffusers' historical name for the number of heads."""
    return UNet2DConditionModel(
        sample_size=size, in_channels=6 if super_resolution else 3, out_channels=3, block_out_channels=widths,
        layers_per_block=depth,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        cross_attention_dim=context, attention_head_dim=heads, norm_num_groups=groups, norm_eps=eps,
        addition_embed_type="text", addition_embed_type_num_heads=pooled_heads,
        class_embed_type="timestep" if super_resolution else None)


def sr_unet(size: int = 256, context: int = 1024) -> UNet2DConditionModel:
    """A super-resolution stage at the spec's sr256 / sr1024 variants: widths 128..1024, 2, 4, 8, 8 blocks,
    cross-attention at the lowest level and in the middle."""
    return base_unet((128, 256, 512, 1024), context, size, (2, 4, 8, 8), (False, False, False, True),
                     super_resolution=True)


def imagen() -> nn.ModuleList:
    """The spec's default: T5 v1.1-Large encoder + the 256-channel base U-Net."""
    return nn.ModuleList([t5_encoder(), base_unet()])


def imagen_sr(size: int) -> nn.ModuleList:
    """The sr256 / sr1024 variants: T5 v1.1-Large encoder + a super-resolution U-Net."""
    return nn.ModuleList([t5_encoder(), sr_unet(size)])
