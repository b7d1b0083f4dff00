"""VATT tower (Akbari et al. 2021): raw video or waveform cut into non-overlapping patches (video voxel tubes,
waveform segments), or word ids looked up in a table, a linear projection, factorised learned positions per patch
axis summed and layer-normed, DropToken while training, an aggregation token and a pre-norm Transformer stack with a
final LayerNorm. Towers may run one shared stack (VATT-MA, the modality-agnostic backbone)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.common import Activation, StackConfig
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, Name, PositiveFloat, PositiveInt, Probability, Ref, StrictModel
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_STACK = {"width": 8, "layers": 1, "heads": 2, "ffn": 16}
VATT_EXAMPLES = (
    Example(  # video: 4 frames of 3 x 8 x 8, tubes of 2 x 4 x 4 -> 2 x 2 x 2 tokens, half kept while training
        {"video": {"type": "image", "channels": 3, "height": 8, "width": 8, "count": 4}},
        {"input": "video", "patch": [2, 4, 4], **_STACK},
        name="video",
    ),
    Example(  # waveform: 64 mono samples in segments of 8 -> 8 tokens, no DropToken
        {"audio": {"type": "sequence", "dim": 1, "length": 64}},
        {"input": "audio", "patch": [8], "keep": 1.0, **_STACK},
        name="waveform",
    ),
    Example(  # VATT-MA: word ids through a frozen 5-d table, a Dense + GELU, the video tower's stack
        {"video": {"type": "image", "channels": 3, "height": 8, "width": 8, "count": 4},
         "text": {"type": "tokens", "vocab_size": 30, "length": 6, "mask": True}},
        {"input": "text", "table": {"dim": 5}, "project": "gelu", "share_stack": "video_tower", **_STACK},
        {"encoders": {"video_tower": {"type": "vatt", "input": "video", "patch": [2, 4, 4], "project": "gelu",
                                      **_STACK}}},
        name="shared_text",
    ),
)


class VATTTable(StrictModel):
    """Word vectors for a tokens input (VATT-MA's word2vec table)."""

    dim: PositiveInt = 300
    """Columns of the table."""
    trainable: bool = False
    """false (VATT): the table is frozen; the rest of the tower trains."""


_SHARED = ("width", "layers", "heads", "ffn", "activation", "norm", "eps", "dropout", "attention_dropout")


@register("encoders", examples=VATT_EXAMPLES)
class VATTEncoder(StackConfig, ComponentConfig):
    """One VATT modality tower. A video is an image modality with `count` frames [batch, T, C, H, W] and `patch`
    [t, h, w] (voxel tubes, a Conv3d with stride = kernel); a waveform is a sequence modality of fixed length
    [batch, L, C] and `patch` [l] (segments of l samples); text is a tokens modality of fixed length [batch, S]
    read through `table` (several texts per example are folded into the batch; `patch` is unused). `project` adds
    a Dense + activation after the patch projection or the table. Each patch axis has its own learned position
    table (VATT's temporal / vertical / horizontal buckets; S word buckets for text); their sum goes through a
    LayerNorm before it is added. While training DropToken keeps a random `keep` share of the patch tokens (one
    draw per batch, as the official code; never words); the aggregation token is prepended; `layers` pre-norm
    blocks (padding masked), then a final LayerNorm, or those of `share_stack`.

    Emits `sequence` [batch, 1 + N, width] (every patch token at inference) and `pooled` [batch, width] (the
    aggregation token)."""

    type: Literal["vatt"]
    input: Ref
    """A video (an image modality with `count` frames), a waveform (a sequence modality of fixed length) or text (a
    tokens modality of fixed length, with `table`)."""
    patch: Annotated[list[PositiveInt], Field(min_length=1, max_length=3)] = [4, 16, 16]
    """Patch size along each patch axis: [frames, rows, columns] of a video, [samples] of a waveform."""
    keep: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    """DropToken: share of the patch tokens kept while training (VATT's patch_sampling_rate); 1 = no drop."""
    width: PositiveInt = 768
    """Width of the tokens and of the tower's transformer layers."""
    norm: Literal["pre"] = "pre"
    """Layer placement: `pre` (x + f(LN(x))), then a final LayerNorm."""
    eps: PositiveFloat = 1e-6
    dropout: Probability = 0.0
    attention_dropout: Probability = 0.0
    table: VATTTable | None = None
    """Word vectors for a tokens input (required there, and only there)."""
    project: Activation | None = None
    """A Dense(-> width, with a bias) and this activation after the patch projection or the table (VATT-MA's
    pre-Transformer projection; needed with a table of another width than `width`); null: none."""
    share_stack: Name | None = None
    """Run the layers and final LayerNorm of this other `vatt` encoder, planned before this one: VATT-MA's one
    Transformer for video, audio and text, each tower keeping its own projection, positions and aggregation token.
    The stack fields must equal the owner's; the shared parameters count once, for the owner."""

    def planned_after(self) -> tuple[str, ...]:
        return (self.share_stack,) if self.share_stack else ()

    @property
    def reads_items(self) -> bool:
        """A video's frames are its modality's items, read by the tower itself; several texts per example are
        folded into the batch."""
        return self.table is None

    def grid(self, inputs: dict[str, Bundle]) -> tuple[int, tuple[int, ...]]:
        """(input channels, or the table's width for words; tokens along each patch axis)."""
        bundle = inputs["input"]
        pixels, values, ids = bundle.get("pixels"), bundle.get("values"), bundle.get("ids")
        if (ids is None) != (self.table is None):
            raise CheckError("table", f"a tokens input needs `table`, and only a tokens input takes one; "
                                      f"{self.input!r} gives { {k: list(v.shape) for k, v in bundle.items()} }")
        if ids is not None:
            if not isinstance(ids.shape[1], int):
                raise CheckError("input", f"{self.input!r} needs a fixed length (the position buckets), not "
                                          f"{ids.shape[1]!r}")
            if self.table.dim != self.width and self.project is None:
                raise CheckError("project", f"the table's {self.table.dim} columns need `project` to reach width "
                                            f"{self.width}")
            return self.table.dim, (ids.shape[1],)
        if pixels is not None and pixels.rank == 5 and len(self.patch) == 3:
            _, t, c, h, w = pixels.shape
            sizes = (t, h, w)
        elif values is not None and values.rank == 3 and len(self.patch) == 1:
            _, length, c = values.shape
            sizes = (length,)
        else:
            raise CheckError("input", f"{self.input!r} must be a video (an image modality with `count` frames) "
                                      f"with a 3-number patch, or a sequence modality (a waveform) with a 1-number "
                                      f"patch; it gives { {k: list(v.shape) for k, v in bundle.items()} } and patch "
                                      f"{self.patch}")
        if not all(isinstance(s, int) for s in sizes):
            raise CheckError("input", f"{self.input!r} needs fixed sizes on its patch axes, not {sizes}")
        if any(s % p for s, p in zip(sizes, self.patch, strict=True)):
            raise CheckError("patch", f"patch {self.patch} does not divide the input's sizes {list(sizes)}")
        return c, tuple(s // p for s, p in zip(sizes, self.patch, strict=True))

    def check_shared(self, ctx) -> None:
        """`share_stack` names another `vatt` encoder that owns its stack, with equal stack fields."""
        other = ctx.spec.encoders.get(self.share_stack)
        if other is None or other.type != "vatt" or other is self or other.share_stack:
            raise CheckError("share_stack", f"share_stack {self.share_stack!r} must name another vatt encoder that "
                                            f"owns its stack")
        differ = [f for f in _SHARED if getattr(self, f) != getattr(other, f)]
        if differ:
            raise CheckError("share_stack", f"the stack of {self.share_stack!r} differs in {', '.join(differ)}; "
                                            f"set them as there")

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        self.check_heads()
        if self.share_stack is not None:
            self.check_shared(ctx)
        _, grid = self.grid(inputs)
        tokens = 1
        for g in grid:
            tokens *= g
        if int(tokens * self.keep) < 1:
            raise CheckError("keep", f"keep {self.keep} keeps no token of {tokens}; raise keep")
        batch = next(iter(inputs["input"].values())).shape[0]
        return {"sequence": TensorInfo((batch, tokens + 1, self.width)), "pooled": TensorInfo((batch, self.width))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        from mmspec.components import params as P

        channels, grid = self.grid(inputs)
        w = self.width
        if self.table is not None:
            embed, fan_out = self._vocab(ctx) * channels, channels
        else:
            fan_in = channels
            for p in self.patch:
                fan_in *= p
            embed, fan_out = P.linear(fan_in, w), w
        project = P.linear(fan_out, w) if self.project else 0
        stack = 0 if self.share_stack else P.stack(self) + P.layer_norm(w)
        return embed + project + sum(grid) * w + P.layer_norm(w) + w + stack

    def _vocab(self, ctx) -> int:
        return ctx.spec.modalities[self.input.split(".")[0]].vocab_size

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.vatt.module import VATTModule

        channels, grid = self.grid(inputs)
        vocab = self._vocab(ctx) if self.table is not None else None
        return VATTModule(self, channels, grid, vocab, ctx.modules[self.share_stack] if self.share_stack else None)
