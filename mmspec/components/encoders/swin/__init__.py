"""Swin Transformer (Liu et al. 2021) and Florence's CoSwin (Yuan et al. 2021): a hierarchical vision Transformer
whose self-attention runs in local windows, shifted by half a window every other layer, with a learned 2-D relative
position bias per window; stages halve the grid and double the width."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.common import require
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Ref
from mmspec.spec.layout import Rule
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_HF_BLOCK = (("attention.self.query", "block.attn.q"), ("attention.self.key", "block.attn.k"),
             ("attention.self.value", "block.attn.v"), ("attention.output.dense", "block.attn.out"),
             ("attention.q_proj", "block.attn.q"), ("attention.k_proj", "block.attn.k"),
             ("attention.v_proj", "block.attn.v"), ("attention.o_proj", "block.attn.out"),
             ("layernorm_before", "block.attn_res.norm"), ("layernorm_after", "block.ffn_res.norm"),
             ("intermediate.dense", "block.ffn.fc1"), ("output.dense", "block.ffn.fc2"),
             ("mlp.fc1", "block.ffn.fc1"), ("mlp.fc2", "block.ffn.fc2"))
"""transformers' SwinLayer parts -> ours (each with its weight and bias): the checkpoint names (what
save_pretrained writes and the hub holds), then the in-memory ones of transformers 5."""
_HF_SWIN = (Rule("embeddings.patch_embeddings.projection.{p}", "embed.conv.{p}"),
            Rule("embeddings.norm.{p}", "embed.norm.{p}"), Rule("layernorm.{p}", "norm.{p}"))

_IMAGE = {"image": {"type": "image", "channels": 3, "height": 32, "width": 32}}
_TINY = {"input": "image", "width": 8, "depths": [2, 1], "heads": [2, 4], "window": 4}
SWIN_EXAMPLES = (
    Example(_IMAGE, _TINY, name="tiny"),
    Example(_IMAGE, {**_TINY, "conv_embed": True}, name="coswin"),
)


@register("encoders", examples=SWIN_EXAMPLES)
class SwinEncoder(ComponentConfig):
    """Patch embedding (a `patch_size` strided conv, or with `conv_embed` CoSwin's CvT-style 7x7 stride-4 conv,
    padding 2) + LayerNorm; stages of pre-norm blocks whose attention runs inside `window` x `window` windows
    (shifted by window/2 on odd layers, masked across the cyclic wrap) with a relative position table
    [(2 window - 1)^2, heads]; between stages, patch merging (2x2 neighbours concatenated, LayerNorm, bias-free
    Linear 4C -> 2C) or, with `conv_embed`, a 3x3 stride-2 conv C -> 2C + LayerNorm. Final LayerNorm. Emits
    `sequence` [batch, tokens of the last stage, C_last] and `pooled` [batch, C_last] (their mean)."""

    type: Literal["swin"]
    input: Ref
    width: PositiveInt = 96
    """C, the first stage's width; stage i has C * 2^i."""
    depths: Annotated[list[PositiveInt], Field(min_length=1)] = [2, 2, 6, 2]
    """Blocks per stage (Swin-T 2-2-6-2, Swin-B/L 2-2-18-2)."""
    heads: Annotated[list[PositiveInt], Field(min_length=1)] = [3, 6, 12, 24]
    """Attention heads per stage."""
    window: PositiveInt = 7
    """Window side in tokens; every stage's grid must tile into windows (a grid of one window is not shifted)."""
    patch_size: PositiveInt = 4
    """Side of the plain patch embedding (ignored with `conv_embed`, whose stem strides 4)."""
    conv_embed: bool = False
    """CoSwin: convolutional embeddings (CvT) in place of the patch embedding and the patch merging."""
    mlp_ratio: PositiveFloat = 4.0
    """Feed-forward hidden width / stage width."""
    activation: Literal["gelu"] = "gelu"
    """Feed-forward activation."""
    eps: PositiveFloat = 1e-5

    weight_layouts = {"swin": _HF_SWIN}  # + the blocks and merges, numbered by stage (weight_rules)

    def weight_rules(self, layout: str) -> tuple[Rule, ...]:
        """transformers' SwinModel: stage s's merge is its `downsample` (ours opens stage s + 1, so later stages
        number their blocks from 1)."""
        if layout != "swin":
            return super().weight_rules(layout)
        rules = list(_HF_SWIN)
        for s, depth in enumerate(self.depths):
            for b in range(depth):
                theirs, ours = f"encoder.layers.{s}.blocks.{b}", f"stages.{s}.{b + (s > 0)}"
                rules += [Rule(f"{theirs}.{x}.{{p}}", f"{ours}.{y}.{{p}}") for x, y in _HF_BLOCK]
                rules += [Rule(f"{theirs}.attention.{x}relative_position_bias_table", f"{ours}.relative.table")
                          for x in ("self.", "relative_position_bias.")]
                rules.append(Rule(f"{theirs}.attention.self.relative_position_index", None))
            if s:
                rules.append(Rule(f"encoder.layers.{s - 1}.downsample.{{x*}}", f"stages.{s}.0.{{x*}}"))
        return tuple(rules)

    def stages(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """(width C_i, heads, grid height, grid width) of every stage for an image height x width."""
        if self.conv_embed:
            h, w = (height - 3) // 4 + 1, (width - 3) // 4 + 1
        else:
            if height % self.patch_size or width % self.patch_size:
                raise CheckError("patch_size", f"the image {height}x{width} does not split into "
                                               f"{self.patch_size}-pixel patches")
            h, w = height // self.patch_size, width // self.patch_size
        out = []
        for i, heads in enumerate(self.heads):
            if i:
                if not self.conv_embed and (h % 2 or w % 2):
                    raise CheckError("depths", f"patch merging needs an even grid; stage {i - 1} is {h}x{w}")
                h, w = (h + 1) // 2, (w + 1) // 2
            c = self.width * 2**i
            if c % heads:
                raise CheckError("heads", f"stage {i}: width {c} does not split into {heads} heads")
            if h % self.window or w % self.window:
                raise CheckError("window", f"stage {i}: the {h}x{w} grid does not tile into {self.window}-windows")
            out.append((c, heads, h, w))
        return out

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        pixels = require(inputs["input"].get("pixels"), "pixels", 4, "image")
        if len(self.heads) != len(self.depths):
            raise CheckError("heads", f"{len(self.heads)} head counts for {len(self.depths)} stages")
        c, _, h, w = self.stages(*pixels.shape[2:])[-1]
        batch = pixels.shape[0]
        return {"sequence": TensorInfo((batch, h * w, c)), "pooled": TensorInfo((batch, c))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Stem conv (+ bias) and LayerNorm; per block two LayerNorms, q/k/v/out projections with biases, the
        relative table and the MLP; per merge a LayerNorm + bias-free Linear (or conv + bias + LayerNorm); the
        final LayerNorm."""
        cin = inputs["input"]["pixels"].shape[1]
        stages = self.stages(*inputs["input"]["pixels"].shape[2:])
        c = self.width
        kernel = 49 if self.conv_embed else self.patch_size**2
        total = cin * c * kernel + c + 2 * c
        for i, ((c, heads, _, _), depth) in enumerate(zip(stages, self.depths, strict=True)):
            if i:
                half = c // 2
                total += 9 * half * c + c + 2 * c if self.conv_embed else 2 * 4 * half + 4 * half * c
            ffn = int(c * self.mlp_ratio)
            total += depth * (4 * c + 4 * (c * c + c) + (2 * self.window - 1) ** 2 * heads + 2 * c * ffn + ffn + c)
        return total + 2 * c

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.swin.module import SwinModule

        pixels = inputs["input"]["pixels"].shape
        return SwinModule(pixels[1], self.stages(*pixels[2:]), self.depths, self.window, self.patch_size,
                          self.conv_embed, self.mlp_ratio, self.activation, self.eps)
