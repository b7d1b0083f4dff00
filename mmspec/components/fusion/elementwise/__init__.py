"""Element-wise and concatenation fusion of vectors or sequences."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo, dim_sum


def _single(inputs: dict[str, Bundle], refs: list[str]) -> list[TensorInfo]:
    tensors = []
    for i, (bundle, ref) in enumerate(zip(inputs.values(), refs, strict=True)):
        if len(bundle) != 1:
            raise CheckError(
                ("inputs", i),
                f"input {ref!r} is a bundle of {sorted(bundle)}; reference one field, e.g. '{ref}.{sorted(bundle)[0]}'",
            )
        tensors.append(next(iter(bundle.values())))
    return tensors


ELEMENTWISE_EXAMPLES = tuple(
    Example(
        {"a": {"type": "vector", "dim": 6}, "b": {"type": "vector", "dim": 6}},
        {"inputs": ["a", "b"], "op": op},
        name=op,
    )
    for op in ("product", "sum", "mean")
)
_TEXT = {"type": "tokens", "vocab_size": 40, "length": "text_len", "max_length": 12, "mask": True}
_REGIONS = {"type": "regions", "dim": 5, "count": "regions", "max_count": 6, "boxes": 5}
_EMBED = {"type": "transformer", "width": 8, "layers": 0, "heads": 2}
CONCAT_EXAMPLES = (
    Example({"a": {"type": "vector", "dim": 6}, "b": {"type": "vector", "dim": 3}}, {"inputs": ["a", "b"]}),
    Example(  # single-stream (VisualBERT, UNITER): text and regions in one sequence; regions have no mask
        {"text": _TEXT, "regions": _REGIONS},
        {"inputs": ["text_embed", "region_embed"], "axis": "sequence"},
        {"encoders": {"text_embed": {**_EMBED, "input": "text", "embed": {"type": "tokens", "positions": 12}},
                      "region_embed": {**_EMBED, "input": "regions", "embed": {"type": "regions"}}}},
        name="sequence",
    ),
    Example(  # plain [B, S, D] tensors (Gato's stream, MAE's visible + mask tokens): no masks
        {"a": {"type": "sequence", "dim": 4, "length": "a_len", "max_length": 6},
         "b": {"type": "sequence", "dim": 4, "length": 3}},
        {"inputs": ["a", "b.values", "a"], "axis": "sequence"},
        name="sequence_tensors",
    ),
)


@register("fusion", examples=ELEMENTWISE_EXAMPLES)
class ElementwiseFusion(ComponentConfig):
    """Combine same-shaped tensors by `product` (ViLBERT's h_IMG * h_CLS), `sum` or `mean`. Emits `fused`."""

    type: Literal["elementwise"]
    inputs: list[Ref] = Field(min_length=2)
    op: Literal["product", "sum", "mean"] = "product"
    """How the inputs combine, element by element."""

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        tensors = _single(inputs, self.inputs)
        for ref, t in zip(self.inputs[1:], tensors[1:], strict=True):
            if t.shape != tensors[0].shape:
                raise CheckError(
                    "inputs",
                    f"{ref!r} has shape {list(t.shape)} but {self.inputs[0]!r} has "
                    f"{list(tensors[0].shape)}; {self.op} needs equal shapes",
                )
        return {"fused": tensors[0]}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        return 0

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.fusion.elementwise.module import Elementwise

        return Elementwise(self.op)


@register("fusion", examples=CONCAT_EXAMPLES)
class ConcatFusion(ComponentConfig):
    """Concatenate tensors along the last axis (late fusion; emits `fused`), or sequences along the sequence axis
    (single-stream models; emits `sequence` and, when an input has one, `mask`)."""

    type: Literal["concat"]
    inputs: list[Ref] = Field(min_length=2)
    axis: Literal["features", "sequence"] = "features"
    """features: [..., D_1], [..., D_2] -> `fused` [..., D_1+D_2]. sequence: bundles with a `sequence` [B, S_i, D]
    (and maybe a `mask` [B, S_i]) or single [B, S_i, D] tensors -> `sequence` [B, S_1+S_2+..., D] and `mask`
    [B, S_1+S_2+...] (int64; inputs without a mask count as all ones)."""

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        if self.axis == "sequence":
            return self._sequences(inputs)
        tensors = _single(inputs, self.inputs)
        lead = tensors[0].shape[:-1]
        for ref, t in zip(self.inputs, tensors, strict=True):
            if t.shape[:-1] != lead or not isinstance(t.width, int):
                raise CheckError(
                    "inputs",
                    f"{ref!r} has shape {list(t.shape)}; concat needs equal leading axes "
                    f"{list(lead)} and a fixed last axis",
                )
        return {"fused": tensors[0].with_shape(*lead, sum(t.width for t in tensors))}

    def _sequences(self, inputs: dict[str, Bundle]) -> Bundle:
        seqs, masked = [], False
        for i, (bundle, ref) in enumerate(zip(inputs.values(), self.inputs, strict=True)):
            seq = bundle.get("sequence", next(iter(bundle.values())) if len(bundle) == 1 else None)
            if seq is None or seq.rank != 3 or not seq.dtype.startswith("float"):
                got = f"shape {list(seq.shape)} ({seq.dtype})" if seq else f"a bundle of {sorted(bundle)}"
                raise CheckError(("inputs", i), f"{ref!r} is {got}; axis 'sequence' concatenates float sequences "
                                                f"[batch, S, D]: reference an encoder or its `.sequence`")
            first = seqs[0] if seqs else seq
            if seq.shape[0] != first.shape[0] or seq.width != first.width:
                raise CheckError(("inputs", i), f"{ref!r} is [{seq.shape[0]}, {seq.shape[1]}, {seq.width}] but "
                                                f"{self.inputs[0]!r} is [{first.shape[0]}, {first.shape[1]}, "
                                                f"{first.width}]; sequences concatenate with equal batch axes and "
                                                f"widths (project one of them to width {first.width})")
            masked |= "mask" in bundle and "sequence" in bundle
            seqs.append(seq)
        length = dim_sum(*(s.shape[1] for s in seqs))
        out = {"sequence": seqs[0].with_shape(seqs[0].shape[0], length, seqs[0].width)}
        if masked:
            out["mask"] = TensorInfo((seqs[0].shape[0], length), "int64")
        return out

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        return 0

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.fusion.elementwise.module import Concat, ConcatSequences

        if self.axis == "features":
            return Concat()
        return ConcatSequences("mask" in self.infer(inputs, ctx))
