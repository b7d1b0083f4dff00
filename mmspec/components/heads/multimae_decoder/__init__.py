"""MultiMAE's per-modality decoder (Bachmann et al. 2022): queries for one input's patches cross-attend once to
the encoder's visible tokens, then a few self-attention blocks and a per-patch linear output. Training-only in
pre-training: the export keeps the encoder."""

from __future__ import annotations

from typing import Literal

from mmspec.components.common import StackConfig
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, Name, PositiveFloat, PositiveInt, Probability, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_RGB = {"type": "image", "channels": 3, "height": 8, "width": 8}
_ENCODER = {"type": "multimae", "patch_size": 2, "visible": 6, "width": 8, "layers": 1, "heads": 2, "ffn": 16}
MULTIMAE_DECODER_EXAMPLES = (
    Example(  # the depth decoder of an RGB + depth encoder: 16 patches of 2 x 2 x 1 values
        {"rgb": _RGB, "depth": {**_RGB, "channels": 1}},
        {"input": "enc", "domain": "d", "dim": 4, "width": 6, "layers": 1, "heads": 2, "ffn": 12},
        {"encoders": {"enc": {**_ENCODER, "inputs": {"c": "rgb", "d": "depth"}}}},
        name="depth",
    ),
    Example(  # no self-attention blocks after the cross-attention; queries from mask token and positions only
        {"rgb": _RGB},
        {"input": "enc", "domain": "c", "task_queries": False, "dim": 12, "width": 4, "layers": 0, "heads": 1,
         "ffn": 8},
        {"encoders": {"enc": {**_ENCODER, "inputs": {"c": "rgb"}, "visible": 3}}},
        name="rgb",
    ),
)


@register("heads", examples=MULTIMAE_DECODER_EXAMPLES)
class MultiMAEDecoder(StackConfig, ComponentConfig):
    """Reads a `multimae` encoder. Its visible tokens, projected to `width`, go back to their places among learned
    mask tokens; every place adds learned positions (one grid for all inputs) and its input's learned embedding.
    The places of input `domain` are the queries (see
    `task_queries`): LN -> cross-attention to the LN of the visible tokens plus the
    global tokens (no residual), + MLP(LN(.)) residual, then `layers` pre-norm blocks and Linear(width, dim) per
    patch. Emits `pixels` [batch, patches, dim] (dim = channels x patch area, or classes x area for a semantic map)
    and `dropped` [batch, patches], the encoder's for this input (what `reconstruction` reads)."""

    type: Literal["multimae_decoder"]
    input: Ref
    domain: Name
    """The encoder input whose patches this decoder predicts (and whose `dropped` it passes on)."""
    task_queries: bool = True
    """The queries are that input's places (visible tokens and mask tokens with their embeddings); false: mask
    tokens plus positions only (the official use_task_queries: false, for an output that is no input)."""
    dim: PositiveInt
    """Values predicted per patch (e.g. p*p*3 pixels, or p*p*K class logits)."""
    width: PositiveInt = 256
    """Width of the decoder's tokens and layers."""
    layers: int = 2
    """Transformer blocks after the cross-attention."""
    heads: PositiveInt = 8
    ffn: PositiveInt = 1024
    """Hidden width of each block's feed-forward layer."""
    norm: Literal["pre"] = "pre"
    """Layer placement: `pre` (x + f(LN(x)))."""
    eps: PositiveFloat = 1e-6
    dropout: Probability = 0.0
    attention_dropout: Probability = 0.0

    def encoder(self, inputs: dict[str, Bundle], ctx):
        """(the encoder's config, its inputs in token order)."""
        name = self.input.split(".")[0]
        enc = ctx.spec.encoders.get(name)
        if enc is None or enc.type != "multimae" or "." in self.input:
            raise CheckError("input", f"{self.input!r} must name a multimae encoder (its whole bundle)")
        domains = enc.spec_domains(ctx.spec)
        if self.domain not in enc.inputs:
            raise CheckError("domain", f"domain {self.domain!r} is not an input of {name!r}: {sorted(enc.inputs)}")
        return enc, domains

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        self.check_heads()
        _, domains = self.encoder(inputs, ctx)
        batch = inputs["input"]["sequence"].shape[0]
        tokens = next(d.tokens for d in domains if d.name == self.domain)
        return {"pixels": TensorInfo((batch, tokens, self.dim)), "dropped": TensorInfo((batch, tokens), "int64")}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        from mmspec.components import params as P

        enc, domains = self.encoder(inputs, ctx)
        w = self.width
        embeds = w + domains[0].tokens * w + len(domains) * w  # mask token, positions, input embeddings
        cross = P.attention(w, w, w, w) + 3 * P.layer_norm(w) + P.feed_forward(w, self.ffn)
        return P.linear(enc.width, w) + embeds + cross + P.stack(self) + P.linear(w, self.dim)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.multimae_decoder.module import MultiMAEDecoderModule

        enc, domains = self.encoder(inputs, ctx)
        return MultiMAEDecoderModule(self, enc, domains)
