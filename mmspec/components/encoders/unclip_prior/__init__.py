"""unCLIP's diffusion prior (Ramesh et al. 2022, "Hierarchical Text-Conditional Image Generation with CLIP
Latents"; diffusers PriorTransformer, the Karlo configuration): a causal transformer over the caption's CLIP token
states, its CLIP text embedding, the timestep, the noisy CLIP image embedding and a learned query, predicting the
clean image embedding. Composed from `mmspec.blocks`."""

from __future__ import annotations

from typing import Literal

from mmspec.components.common import require
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Ref
from mmspec.spec.layout import Rule
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

ADDITIONAL = 4
"""Tokens after the caption's: its text embedding, the timestep, the noisy image embedding, the query."""

UNCLIP_PRIOR_EXAMPLES = (
    Example({"x_t": {"type": "vector", "dim": 6}, "t": {"type": "scalar", "dtype": "int64", "high": 1000},
             "embed": {"type": "vector", "dim": 6},
             "states": {"type": "sequence", "dim": 6, "length": 3},
             "text": {"type": "tokens", "vocab_size": 9, "length": 3, "mask": True}},
            {"input": "x_t", "timestep": "t", "text_embed": "embed", "text_states": "states", "text_mask": "text",
             "heads": 2, "head_dim": 4, "layers": 1}, name="tiny"),
)


_BLOCK = (("norm1", "attn_res.norm"), ("attn1.to_q", "attn.q"), ("attn1.to_k", "attn.k"), ("attn1.to_v", "attn.v"),
          ("attn1.to_out.0", "attn.out"), ("norm3", "ffn_res.norm"), ("ff.net.0.proj", "ffn.fc1"),
          ("ff.net.2", "ffn.fc2"))
DIFFUSERS_PRIOR = (*(Rule(f"transformer_blocks.{{i}}.{src}.{{p}}", f"blocks.{{i}}.{dst}.{{p}}") for src, dst in _BLOCK),
                   Rule("{name*}", "{name*}"))
"""diffusers PriorTransformer names -> the module's (the rest are diffusers' own)."""


@register("encoders", examples=UNCLIP_PRIOR_EXAMPLES)
class UnclipPriorEncoder(ComponentConfig):
    """Noisy CLIP image embedding x_t [batch, D], timestep [batch], the caption's CLIP text embedding [batch, D],
    its token states [batch, S, D] and padding mask [batch, S] -> `x0` [batch, D] (the predicted clean, normalised
    image embedding) and `image_embedding` [batch, D] = x0 * clip_std + clip_mean (what the decoder reads). Each
    input is projected to heads * head_dim; tokens [states; text embedding; time embedding; x_t; query] plus
    learned positions pass `layers` pre-LN blocks (GELU, 4x feed-forward) under a causal mask that also hides the
    caption's padding; LayerNorm and a projection of the query's state give x0."""

    type: Literal["unclip_prior"]
    input: Ref
    """The noisy image embedding x_t (a vector modality)."""
    timestep: Ref
    """The diffusion timestep, one per example (a scalar modality)."""
    text_embed: Ref
    """The caption's CLIP text embedding [batch, D] (a text tower's projection)."""
    text_states: Ref
    """The caption's CLIP token states [batch, S, D] (a text tower's `sequence`)."""
    text_mask: Ref
    """The caption's tokens modality; its `mask` [batch, S] (1 = token) hides the padding."""
    heads: PositiveInt = 32
    """Attention heads; the transformer is heads * head_dim wide (Karlo: 32 x 64 = 2048)."""
    head_dim: PositiveInt = 64
    """Width of one attention head (diffusers `attention_head_dim`)."""
    layers: PositiveInt = 20
    """Transformer blocks (diffusers `num_layers`)."""

    weight_layouts = {"diffusers": DIFFUSERS_PRIOR}  # diffusers PriorTransformer (Karlo's prior)

    def references(self) -> dict[str, str]:
        return {"input": self.input, "timestep": self.timestep, "text_embed": self.text_embed,
                "text_states": self.text_states, "text_mask": self.text_mask}

    def _dims(self, inputs: dict[str, Bundle]) -> tuple[int, int]:
        """(embedding width D, caption length S)."""
        x = require(next(iter(inputs["input"].values())), "input", 2, "vector [batch, D]")
        states = require(next(iter(inputs["text_states"].values())), "text_states", 3, "sequence [batch, S, D]")
        embed = require(next(iter(inputs["text_embed"].values())), "text_embed", 2, "vector [batch, D]")
        if "mask" not in inputs["text_mask"]:
            raise CheckError("text_mask", f"{self.text_mask!r} must be a tokens modality with `mask: true`")
        length = states.shape[1]
        if not isinstance(length, int):
            raise CheckError("text_states", f"{self.text_states!r} needs a fixed length (the position table)")
        if not (x.shape[1] == embed.shape[1] == states.shape[2]):
            raise CheckError("input", f"x_t, text_embed and text_states must share the width D; got {x.shape[1]}, "
                                      f"{embed.shape[1]}, {states.shape[2]}")
        return x.shape[1], length

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        d, _ = self._dims(inputs)
        batch = next(iter(inputs["input"].values())).shape[0]
        return {"x0": TensorInfo((batch, d)), "image_embedding": TensorInfo((batch, d))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        d, length = self._dims(inputs)
        w = self.heads * self.head_dim
        block = 2 * w + 4 * (w * w + w) + 2 * w + (w * 4 * w + 4 * w) + (4 * w * w + w)
        time = 2 * (w * w + w)
        projections = 3 * (d * w + w)  # x_t, text embedding, token states
        return (time + projections + (length + ADDITIONAL) * w + w + self.layers * block + 2 * w + (w * d + d)
                + 2 * d)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.unclip_prior.module import UnclipPriorModule

        d, length = self._dims(inputs)
        return UnclipPriorModule(d, length, self.heads, self.head_dim, self.layers)
