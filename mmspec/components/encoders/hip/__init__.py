"""Hierarchical Perceiver (Carreira et al. 2022, HiP): an hourglass of Perceiver blocks over a grouped input.
Each level regroups its input array into `groups` contiguous groups; every group has its own learned latents,
which cross-attend to that group only and then self-attend; the groups' latents, concatenated, are the next
level's input. Decoder levels mirror the encoder (U-Net skips from the mirrored level), and a reconstruction
head decodes every input position from its position embedding (the official `HiP` template)."""

from __future__ import annotations

from typing import Literal

from mmspec.components.common import Activation, require_float, sequence_of
from mmspec.components.encoders.perceiver import layer_params
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Ref, StrictModel
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo


class HiPLevel(StrictModel):
    """One level (PerceiverBlock) of the hierarchy."""

    groups: PositiveInt
    """G: the level's input array is cut into G contiguous groups of equal length."""
    latents: PositiveInt
    """K: learned latents per group (the level emits G*K tokens)."""
    width: PositiveInt
    """D: the latents' channels."""
    layers: PositiveInt
    """Self-attention layers after the group-wise cross-attention."""
    heads: PositiveInt
    """Heads of the self-attention layers."""
    cross_heads: PositiveInt = 1
    """Heads of the cross-attention (query/key and value width: the input's channels)."""
    widening: PositiveInt = 4
    """Self-attention layers' MLP: width -> widening * width -> width."""
    cross_widening: PositiveInt = 1
    """MLP after the cross-attention: width -> cross_widening * width -> width."""


_SEQ = {"pixels": {"type": "sequence", "dim": 3, "length": 16}}
_LEVELS = [
    {"groups": 4, "latents": 2, "width": 8, "layers": 1, "heads": 2},
    {"groups": 1, "latents": 4, "width": 16, "layers": 1, "heads": 2},
    {"groups": 4, "latents": 2, "width": 4, "layers": 1, "heads": 1},
]
HIP_EXAMPLES = (
    Example(_SEQ, {"input": "pixels", "embed": 4, "levels": _LEVELS}, name="hourglass"),
    Example(  # equal widths in the mirrored levels (no skip projection), squared-ReLU MLPs
        _SEQ,
        {"input": "pixels", "embed": 4, "activation": "sq_relu",
         "levels": [{**_LEVELS[0], "cross_heads": 2, "cross_widening": 2}, _LEVELS[1], {**_LEVELS[0], "widening": 2}]},
        name="unprojected_skips",
    ),
)


@register("encoders", examples=HIP_EXAMPLES)
class HiPEncoder(ComponentConfig):
    """HiP over an input array [batch, M, C]: a Linear embeds every position to `embed` channels and a learned
    position table [M, embed] is added; then the `levels` run in order. Level i regroups its input [batch, T, C']
    into G_i groups [batch*G_i, T/G_i, C']; the group's latents (plus, in a decoder level, the mirrored level's
    output, through a Linear where the widths differ) cross-attend to it, then self-attend; the G_i*K_i latents
    are the next level's input. The reconstruction head: the position table, grouped like the input, cross-attends
    to the last level's latents of its group (1 head, no query residual), and a Linear maps it back to C.

    Emits `sequence` [batch, G*K, D] (the last level's latents) and `reconstruction` [batch, M, C]. Levels come
    as encoder levels, one middle (processor) level, and mirrored decoder levels with the same groups and latents;
    the last level has the first level's groups."""

    type: Literal["hip"]
    input: Ref
    embed: PositiveInt = 32
    """Channels every input position is embedded to (num_embedding_channels)."""
    levels: list[HiPLevel]
    """The hourglass, input side first; an odd number of levels."""
    activation: Activation = "sq_relu"
    """Activation of the MLPs (the official code's squared ReLU)."""
    eps: PositiveFloat = 1e-5

    def _source(self, inputs: dict[str, Bundle]) -> TensorInfo:
        _, src = sequence_of(inputs["input"], self.input)
        return require_float(src, self.input)

    def plan(self, length: int) -> list[int]:
        """The input width C' each level's cross-attention reads; CheckError where the hierarchy does not fit."""
        n = len(self.levels)
        if n % 2 == 0:
            raise CheckError("levels", f"HiP has encoder levels, one processor level and as many decoder levels: "
                                       f"an odd number, not {n}")
        if self.levels[-1].groups != self.levels[0].groups:
            raise CheckError("levels", f"the reconstruction reads the last level in the first level's groups: the "
                                       f"last level needs {self.levels[0].groups} groups, not {self.levels[-1].groups}")
        tokens, channels, reads = length, self.embed, []
        for i, level in enumerate(self.levels):
            if tokens % level.groups:
                raise CheckError(("levels", i, "groups"), f"{tokens} input tokens do not split into {level.groups} "
                                                          f"equal groups; choose a divisor of {tokens}")
            for name, heads, size in (("cross_heads", level.cross_heads, channels), ("heads", level.heads,
                                                                                      level.width)):
                if size % heads:
                    raise CheckError(("levels", i, name), f"{size} channels do not split into {heads} heads")
            mirror = self.levels[n - 1 - i]
            if i > n // 2 and (mirror.groups, mirror.latents) != (level.groups, level.latents):
                raise CheckError(("levels", i), f"a decoder level adds its mirror level {n - 1 - i}'s latents, so it "
                                                f"needs its groups and latents ({mirror.groups}, {mirror.latents})")
            reads.append(channels)
            tokens, channels = level.groups * level.latents, level.width
        return reads

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        src = self._source(inputs)
        if isinstance(src.shape[1], str):
            raise CheckError("input", f"the position table needs a fixed input length; {self.input!r} has length "
                                      f"{src.shape[1]!r}")
        self.plan(src.shape[1])
        last = self.levels[-1]
        return {"sequence": TensorInfo((src.shape[0], last.groups * last.latents, last.width)),
                "reconstruction": TensorInfo(src.shape)}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Embedding, position table, per level: latents, skip projection, cross- and self-attention layers; the
        reconstruction head and the Linear back to the input channels."""
        from mmspec.components import params as P

        src = self._source(inputs)
        m, c, e = src.shape[1], src.shape[2], self.embed
        total = P.linear(c, e) + m * e + layer_params(e, self.levels[-1].width, self.levels[-1].width,
                                                      self.levels[-1].width, 1, True) + P.linear(e, c)
        n = len(self.levels)
        for i, (level, kv) in enumerate(zip(self.levels, self.plan(m), strict=True)):
            d = level.width
            total += level.groups * level.latents * d
            total += layer_params(d, kv, kv, kv, level.cross_widening, True)
            total += level.layers * layer_params(d, d, d, d, level.widening, False)
            if i > n // 2 and self.levels[n - 1 - i].width != d:
                total += P.linear(self.levels[n - 1 - i].width, d)
        return total

    def internal_shapes(self, inputs: dict[str, Bundle], ctx) -> list[tuple]:
        """Per level, the group-wise cross-attention and self-attention scores; the reconstruction's scores."""
        src = self._source(inputs)
        batch, tokens, shapes = src.shape[0], src.shape[1], []
        for level in self.levels:
            shapes += [(batch, level.groups, level.cross_heads, level.latents, tokens // level.groups),
                       (batch, level.groups, level.heads, level.latents, level.latents)]
            tokens = level.groups * level.latents
        g = self.levels[0].groups
        return [*shapes, (batch, g, 1, src.shape[1] // g, self.levels[-1].latents)]

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.hip.module import HiPModule

        field, src = sequence_of(inputs["input"], self.input)
        return HiPModule(self, field, src.shape[1], src.shape[2], self.plan(src.shape[1]))
