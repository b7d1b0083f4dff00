"""Flamingo (Alayrac et al. 2022; IDEFICS, HuggingFaceM4's open reproduction): a Perceiver resampler that turns
each media item's visual tokens into a fixed set of latents, and a decoder-only LM (pre-RMSNorm, rotary, SwiGLU)
with tanh-gated cross-attention dense blocks before every `every`-th layer and image-causal masking."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.common import Activation, require, require_float, sequence_of
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, KVLayout, PositiveFloat, PositiveInt, Probability, Ref
from mmspec.spec.layout import Rule
from mmspec.spec.tensors import Bundle, CheckError, Dim, TensorInfo, dim_product, dim_terms, format_dim

_FEATURES = {"features": {"type": "sequence", "dim": 8, "length": 6}}
_IMAGES = {"image": {"type": "image", "channels": 3, "height": 8, "width": 8, "count": "media", "max_count": 3}}
_VISION = {"type": "transformer", "input": "image", "embed": {"type": "patches", "patch_size": 4},
           "width": 8, "layers": 1, "heads": 2, "ffn": 16, "norm": "pre"}
_TEXT = {"text": {"type": "tokens", "vocab_size": 24, "length": "seq", "max_length": 10}}
_RESAMPLER = {"type": "perceiver_resampler", "input": "vision", "depth": 1, "heads": 2, "head_dim": 4,
              "latents": 3}
RESAMPLER_EXAMPLES = (
    Example(_FEATURES, {"input": "features", "depth": 2, "heads": 2, "head_dim": 4, "latents": 3}, name="one_media"),
    Example(_IMAGES, {"input": "vision", "depth": 1, "heads": 2, "head_dim": 4, "latents": 3},
            {"encoders": {"vision": _VISION}}, name="images"),
    Example({"image": {**_IMAGES["image"], "count": 3}},
            {"input": "vision", "depth": 1, "heads": 2, "head_dim": 4, "latents": 2, "frames": 3,
             "time_embedding": True, "activation": "gelu", "tokens": 5},
            {"encoders": {"vision": _VISION}}, name="video"),
    Example(_FEATURES, {"input": "features", "depth": 1, "heads": 2, "head_dim": 4, "latents": 3, "width": 12,
                        "activation": "sq_relu"}, name="projected"),
)
LM_EXAMPLES = (
    Example({**_IMAGES, **_TEXT}, {"input": "text", "media": "resampler", "width": 8, "layers": 2, "heads": 2,
                                   "ffn": 16, "every": 1, "image_token": 23, "added_tokens": 2},
            {"encoders": {"vision": _VISION, "resampler": _RESAMPLER}}, name="interleaved"),
    Example({**_FEATURES, **_TEXT}, {"input": "text", "media": "resampler", "width": 8, "layers": 4, "heads": 2,
                                     "ffn": 16, "every": 2, "image_token": 23},
            {"encoders": {"resampler": {**_RESAMPLER, "input": "features"}}}, name="every_2"),
    Example({**_FEATURES, **_TEXT}, {"input": "text", "media": "resampler", "width": 8, "layers": 3, "heads": 2,
                                     "ffn": 32, "every": 2, "image_token": 23, "gated": False, "activation": "gelu",
                                     "xattn_activation": "sq_relu"},
            {"encoders": {"resampler": {**_RESAMPLER, "input": "features"}}}, name="chinchilla"),
)


_IDEFICS_LM_PARTS = (("input_layernorm", "attn_norm"), ("post_attention_layernorm", "ffn_norm"),
                     ("mlp.gate_proj", "ffn.gate"), ("mlp.up_proj", "ffn.fc1"), ("mlp.down_proj", "ffn.fc2"),
                     ("{attn}.q_proj", "attn.q"), ("{attn}.k_proj", "attn.k"), ("{attn}.v_proj", "attn.v"),
                     ("{attn}.o_proj", "attn.out"))
IDEFICS_LM = (  # transformers IdeficsForVisionText2Text, prefix "" (its vision tower and resampler are other nodes)
    Rule("model.embed_tokens.weight", "embed.weight"),
    Rule("model.embed_tokens.additional_embedding.weight", "added.weight"),
    Rule("lm_head.weight", "head.weight"),
    Rule("lm_head.additional_fc.weight", "added_head.weight"),
    Rule("model.norm.weight", "norm.weight"),
    Rule("model.{x*}.rotary_emb.inv_freq", None),
    *(Rule(f"model.{theirs}.{{i}}.{a}.{{p}}", f"{ours}.{{i}}.{b}.{{p}}")
      for theirs, ours, attn in (("layers", "layers", "self_attn"), ("gated_cross_attn_layers", "xattn", "cross_attn"))
      for a, b in ((t.replace("{attn}", attn), o) for t, o in _IDEFICS_LM_PARTS)),
    Rule("model.gated_cross_attn_layers.{i}.alpha_cross_attn", "xattn.{i}.attn_gate"),
    Rule("model.gated_cross_attn_layers.{i}.alpha_dense", "xattn.{i}.ffn_gate"),
)
IDEFICS_RESAMPLER = (  # transformers IdeficsPerceiverResampler (prefix model.perceiver_resampler)
    Rule("latents", "resampler.latents"),
    Rule("layer_norm.{p}", "resampler.norm.{p}"),
    Rule("blocks.{i}.0.context_layer_norm.{p}", "resampler.layers.{i}.context_norm.{p}"),
    Rule("blocks.{i}.0.latents_layer_norm.{p}", "resampler.layers.{i}.latents_norm.{p}"),
    *(Rule(f"blocks.{{i}}.0.{x}_proj.weight", f"resampler.layers.{{i}}.attn.{x}.weight") for x in "qkv"),
    Rule("blocks.{i}.0.output_proj.weight", "resampler.layers.{i}.attn.out.weight"),
    Rule("blocks.{i}.1.ln.{p}", "resampler.layers.{i}.ffn_norm.{p}"),
    Rule("blocks.{i}.1.fc.weight", "resampler.layers.{i}.ffn.fc1.weight"),
    Rule("blocks.{i}.1.c_proj.weight", "resampler.layers.{i}.ffn.fc2.weight"),
)


def media_items(length: Dim, tokens: int | None) -> tuple[Dim, int | None]:
    """(items, tokens per item) of a media sequence of `length`: `tokens` when given, else N from a length
    N * axis (an encoder over items with `count`); otherwise the whole sequence is one item (1, None)."""
    terms = dim_terms(length)
    if tokens is not None:
        if any(c % tokens for c in terms.values()):
            raise CheckError("tokens", f"a media length {length!r} is not a multiple of {tokens} tokens per item")
        return format_dim({k: c // tokens for k, c in terms.items()}), tokens
    if len(terms) == 1:
        ((axes, coef),) = terms.items()
        if axes and coef > 1:
            return format_dim({axes: 1}), coef
    return 1, None


@register("encoders", examples=RESAMPLER_EXAMPLES)
class PerceiverResampler(ComponentConfig):
    """Visual tokens [batch, M*S, D] (M media items of S tokens; the outputs of a vision encoder over images with
    `count`) -> per item, `latents` learned queries through `depth` layers of attention over [LN(x); LN(latents)]
    as keys/values and a bias-free feed-forward, then a LayerNorm. Emits `latents` [batch, M, latents, D]
    (IDEFICS's IdeficsPerceiverResampler; Flamingo adds learned time embeddings to a video's frames)."""

    weight_layouts = {"idefics": IDEFICS_RESAMPLER}

    type: Literal["perceiver_resampler"]
    input: Ref
    depth: PositiveInt = 6
    """Resampler layers."""
    heads: PositiveInt = 16
    head_dim: PositiveInt = 96
    """Width of one attention head (heads x head_dim need not equal the width)."""
    latents: PositiveInt = 64
    """Learned queries, hence output tokens per media."""
    ffn: PositiveInt | None = None
    """Feed-forward hidden width; null: 4 x the width."""
    activation: Activation = "relu"
    """The feed-forward's activation (IDEFICS: relu; flamingo-pytorch: gelu)."""
    frames: PositiveInt = 1
    """Consecutive items that make one media (a video's frames), resampled together."""
    time_embedding: bool = False
    """Add a learned embedding per frame (Flamingo's temporal embeddings) before flattening the frames."""
    tokens: PositiveInt | None = None
    """Tokens per item; null: derived from an input length N x item axis, else the input is one item."""
    width: PositiveInt | None = None
    """Width of the latents; null: the input's. Otherwise a bias-free Linear maps the input to it first (Flamingo:
    NFNet-F6's 3072 features resampled at 1536)."""
    eps: PositiveFloat = 1e-5

    def _source(self, inputs: dict[str, Bundle]) -> TensorInfo:
        return require_float(sequence_of(inputs["input"], self.input)[1], self.input)

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        src = self._source(inputs)
        items, _ = media_items(src.shape[1], self.tokens)
        if self.frames > 1:
            if not isinstance(items, int) or items % self.frames:
                raise CheckError("frames", f"{self.frames} frames per media need a fixed item count that they "
                                           f"divide; the input has {items!r} items")
            items //= self.frames
        return {"latents": TensorInfo((src.shape[0], items, self.latents, self.width or src.shape[2]))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """The input projection (with `width`); latents and time embeddings; per layer three LayerNorms,
        q/k/v/out and the feed-forward (no biases); the final LayerNorm."""
        src = self._source(inputs).shape[2]
        d, inner = self.width or src, self.heads * self.head_dim
        layer = 6 * d + 4 * d * inner + 2 * d * (self.ffn or 4 * d)
        proj = src * d if d != src else 0
        return proj + (self.latents + (self.frames if self.time_embedding else 0)) * d + self.depth * layer + 2 * d

    def internal_shapes(self, inputs: dict[str, Bundle], ctx) -> list[tuple]:
        src = self._source(inputs)
        return [(src.shape[0], self.heads, self.latents, src.shape[1]), (src.shape[0], src.shape[1], src.shape[2])]

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.flamingo.module import ResamplerModule

        src = self._source(inputs)
        _, tokens = media_items(src.shape[1], self.tokens)
        return ResamplerModule(self, sequence_of(inputs["input"], self.input)[0], src.shape[2], tokens)


@register("encoders", examples=LM_EXAMPLES)
class GatedXattnLM(ComponentConfig):
    """Token ids [batch, T] -> a decoder-only LM of `layers` pre-RMSNorm layers (rotary self-attention, SwiGLU,
    no biases) with a GATED XATTN-DENSE block before layers 0, every, 2 every, ...: tanh-gated cross-attention
    to the `media` latents [batch, M, N, D_media] (gates start at 0) and a tanh-gated SwiGLU. Image-causal: a token
    reads only the media item of the last `image_token` at or before it (the k-th `image_token` is item k, the
    last item for any beyond M), none before the first. Final RMSNorm and a bias-free LM head. Emits `logits`
    [batch, T, vocab_size] (IDEFICS's IdeficsForVisionText2Text text side)."""

    weight_layouts = {"idefics": IDEFICS_LM}

    type: Literal["gated_xattn_lm"]
    input: Ref
    media: Ref
    """The visual tokens [batch, M, N, D_media] of M media items (a `perceiver_resampler`'s latents)."""
    width: PositiveInt = 4096
    """The LM's hidden width."""
    layers: PositiveInt = 32
    """LM layers."""
    heads: PositiveInt = 32
    ffn: PositiveInt = 11008
    """SwiGLU hidden width (the LM's and the gated blocks')."""
    every: PositiveInt = 4
    """A gated cross-attention block before layers 0, every, 2 every, ... (ceil(layers / every) blocks; Flamingo:
    1, 4, 7 for 3B, 9B, 80B)."""
    image_token: int = 32001
    """Id of the `<image>` token that marks where a media item stands in the text."""
    added_tokens: Annotated[int, Field(ge=0)] = 0
    """The last rows of the vocabulary (new tokens such as `<image>`) in their own embedding and head tables, which
    train while the LM's own rows are frozen (IDEFICS's decoupled tables: 2)."""
    activation: Activation = "silu"
    """The gate activation of the LM's and the gated blocks' SwiGLU (Llama, IDEFICS: silu; Chinchilla: gelu)."""
    gated: bool = True
    """SwiGLU feed-forwards (Llama, IDEFICS); false: plain bias-free ones of `ffn` (Chinchilla, Flamingo)."""
    xattn_activation: Activation | None = None
    """The gated blocks' feed-forward activation; null: `activation` (Flamingo: sq_relu)."""
    lm_trainable: bool = False
    """false: the LM's layers, final norm and own token rows are frozen (Flamingo); the gated blocks, the added
    tokens and the head train."""
    eps: PositiveFloat = 1e-6
    dropout: Probability = 0.0

    def references(self) -> dict[str, str]:
        return {"input": self.input, "media": self.media}

    def _vocab(self, ctx) -> int:
        modality = ctx.spec.modalities.get(self.input.split(".")[0])
        if modality is None or modality.type != "tokens":
            raise CheckError("input", f"needs a tokens modality; {self.input!r} is not one")
        return modality.vocab_size

    def _media(self, inputs: dict[str, Bundle]) -> TensorInfo:
        media = require(inputs["media"].get("latents"), "latents", 4, "media latents [batch, M, N, D]")
        return require_float(media, self.media, "media")

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        ids = require(inputs["input"].get("ids"), "ids", 2, "token ids")
        self._media(inputs)
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise CheckError("heads", f"width {self.width} / heads {self.heads} must be an even head width "
                                      f"(rotary positions rotate pairs)")
        if not 0 <= self.image_token < self._vocab(ctx):
            raise CheckError("image_token", f"image_token {self.image_token} is outside the vocabulary")
        if self.added_tokens >= self._vocab(ctx):
            raise CheckError("added_tokens", f"{self.added_tokens} added tokens leave no LM vocabulary")
        return {"logits": TensorInfo((*ids.shape, self._vocab(ctx)))}

    def kv_layout(self, inputs: dict[str, Bundle], ctx) -> KVLayout:
        """Self-attention caches per LM layer and the count of `<image>` tokens so far (state `images` [batch, 1]);
        the media come in whole every step."""
        batch, length = inputs["input"]["ids"].shape
        if not isinstance(length, str):
            raise CheckError("input", f"the new positions of a step need a named dynamic length axis; "
                                      f"{self.input!r} has length {length!r}")
        dropped = ("mask",) if "mask" in inputs["input"] else ()
        return KVLayout(self.layers, self.heads, self.width // self.heads, batch, length, None, dropped,
                        states=(("images", (batch, 1)),))

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Embedding and head (untied); per LM layer two RMSNorms, q/k/v/out and the SwiGLU (or MLP); per gated
        block two RMSNorms, q/out from the width and k/v from the media width, the SwiGLU (or MLP) and two gates;
        the final norm."""
        w, vocab, media = self.width, self._vocab(ctx), self._media(inputs).shape[3]
        swiglu = (3 if self.gated else 2) * w * self.ffn
        layer = 2 * w + 4 * w * w + swiglu
        block = 2 * w + 2 * w * w + 2 * media * w + swiglu + 2
        return 2 * vocab * w + self.layers * layer + -(-self.layers // self.every) * block + w

    def internal_shapes(self, inputs: dict[str, Bundle], ctx) -> list[tuple]:
        batch, length = inputs["input"]["ids"].shape
        media = self._media(inputs).shape
        return [(batch, self.heads, length, length), (batch, self.heads, length, dim_product(*media[1:3])),
                (batch, length, self.ffn)]

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.flamingo.module import GatedXattnLMModule

        return GatedXattnLMModule(self, self._vocab(ctx), self._media(inputs).shape[3])
