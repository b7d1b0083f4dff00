"""Reference networks of the Imagen spec (T2I-14): transformers' T5EncoderModel (the frozen T5 v1.1 text encoder)
and diffusers' UNet2DConditionModel at the base U-Net's configuration (cross-attention transformer blocks at the
three lower levels and in the middle), built on whatever device is current, for tests/references.py and
tests/coverage/test_imagen.py. Imagen has no official code or weights."""

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
              eps: float = 1e-5) -> UNet2DConditionModel:
    """The text-conditioned base U-Net: `attention` levels as CrossAttn blocks attending to `context`-wide
    states. `attention_head_dim` is diffusers' historical name for the number of heads."""
    return UNet2DConditionModel(
        sample_size=size, in_channels=3, out_channels=3, block_out_channels=widths, layers_per_block=depth,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        cross_attention_dim=context, attention_head_dim=heads, norm_num_groups=groups, norm_eps=eps)


def imagen() -> nn.ModuleList:
    """The spec's default: T5 v1.1-Large encoder + the 256-channel base U-Net."""
    return nn.ModuleList([t5_encoder(), base_unet()])
