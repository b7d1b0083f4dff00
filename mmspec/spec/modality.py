"""Modalities: the model's inputs. Each one names its dynamic axes and becomes 1-3 graph inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from mmspec.spec.base import Axis, Name, PositiveInt, StrictModel
from mmspec.spec.tensors import Bundle, Dim, TensorInfo


@dataclass(frozen=True)
class GraphInput:
    """One tensor the exported model takes: its ONNX name, signature and the range of valid values."""

    name: str
    modality: str
    field: str
    info: TensorInfo
    low: float | None = None
    """Lower bound (inclusive); integer inputs always have one, None for a float unbounded below."""
    high: float | tuple[int, ...] | None = None
    """Upper bound: exclusive for integer inputs (token ids), inclusive for floats; None for unbounded floats.
    A tuple bounds each position of the last axis on its own (the levels of each categorical column)."""


class _Modality(StrictModel):
    batch: Name = "batch"
    """Name of the batch axis."""
    optional: bool = False
    """May be missing for some examples: adds the input `<name>_present` int64 [batch] (1 = present, 0 = missing;
    bundle field `present`) that presence-aware fusion (`modality_pool`) reads; the values of a missing example
    are ignored there."""

    def graph_inputs(self, name: str) -> list[GraphInput]:
        inputs = self._inputs(name)
        if self.optional:
            inputs.append(GraphInput(f"{name}_present", name, "present", TensorInfo((self.batch,), "int64"), 0, 2))
        return inputs

    def _inputs(self, name: str) -> list[GraphInput]:
        raise NotImplementedError

    def bundle(self, name: str) -> Bundle:
        return {i.field: i.info for i in self.graph_inputs(name)}

    @property
    def items(self) -> Dim | None:
        """The item axis (several images or texts per example, axis 1 of every input), or None."""
        return None

    def problems(self) -> list[tuple[str, str]]:
        """(field, message) for every cross-field rule the modality breaks."""
        return []


class _Items(_Modality):
    """Optional `count` of items per example; each input then has the item axis after the batch axis."""

    count: Axis | None = None
    """Items per example (Flamingo's images, multi-view): a dynamic axis name or a fixed number; null: one item,
    and no item axis."""
    max_count: PositiveInt = 16
    """Largest number of items when `count` is a name."""

    @property
    def items(self) -> Dim | None:
        return self.count

    def lead(self) -> tuple[Dim, ...]:
        """The leading axes of every input: batch, then the item axis when `count` is set."""
        return (self.batch,) if self.count is None else (self.batch, self.count)

    def problems(self) -> list[tuple[str, str]]:
        if self.count is None and "max_count" in self.model_fields_set:
            return [("max_count", f"max_count {self.max_count} without count; add `count: media` (a dynamic "
                                  f"axis) or `count: N`, or remove max_count")]
        return []


class TokensModality(_Items):
    """Integer token ids [batch, length] ([batch, count, length] with items), optionally with a padding mask and
    segment ids."""

    type: Literal["tokens"]
    vocab_size: PositiveInt
    length: Axis = "seq"
    """Sequence axis: a dynamic axis name or a fixed length."""
    max_length: PositiveInt = 512
    """Largest length the model accepts (bounds the dynamic axis and the position table)."""
    mask: bool = False
    """Add `<name>_mask` (1 = token, 0 = padding)."""
    segments: Annotated[int, Field(ge=0)] = 0
    """Number of segment ids (BERT token types); 0 = no `<name>_segments` input."""

    def _inputs(self, name: str) -> list[GraphInput]:
        ids = TensorInfo((*self.lead(), self.length), "int64")
        out = [GraphInput(name, name, "ids", ids, 0, self.vocab_size)]
        if self.mask:
            out.append(GraphInput(f"{name}_mask", name, "mask", ids, 0, 2))
        if self.segments:
            out.append(GraphInput(f"{name}_segments", name, "segments", ids, 0, self.segments))
        return out


class ImageModality(_Items):
    """Dense images [batch, channels, height, width] ([batch, count, channels, height, width] with items), float32."""

    type: Literal["image"]
    channels: PositiveInt = 3
    height: PositiveInt = 224
    width: PositiveInt = 224

    def _inputs(self, name: str) -> list[GraphInput]:
        shape = (*self.lead(), self.channels, self.height, self.width)
        return [GraphInput(name, name, "pixels", TensorInfo(shape))]


class RegionsModality(_Modality):
    """A set of detector region features [batch, regions, dim], with optional box geometry and mask."""

    type: Literal["regions"]
    dim: PositiveInt
    count: Axis = "regions"
    max_count: PositiveInt = 128
    boxes: Annotated[int, Field(ge=0)] = 0
    """Width of the box-geometry vector (ViLBERT: 5); 0 = no `<name>_boxes` input."""
    mask: bool = False

    def _inputs(self, name: str) -> list[GraphInput]:
        out = [GraphInput(name, name, "features", TensorInfo((self.batch, self.count, self.dim)))]
        if self.boxes:
            out.append(GraphInput(f"{name}_boxes", name, "boxes", TensorInfo((self.batch, self.count, self.boxes))))
        if self.mask:
            out.append(GraphInput(f"{name}_mask", name, "mask", TensorInfo((self.batch, self.count), "int64"), 0, 2))
        return out


class SequenceModality(_Modality):
    """A sequence of float feature vectors [batch, length, dim] (audio frames, time series)."""

    type: Literal["sequence"]
    dim: PositiveInt
    length: Axis = "seq"
    max_length: PositiveInt = 4096

    def _inputs(self, name: str) -> list[GraphInput]:
        return [GraphInput(name, name, "values", TensorInfo((self.batch, self.length, self.dim)))]


class VectorModality(_Modality):
    """A fixed-width float vector per example [batch, dim] (tabular data)."""

    type: Literal["vector"]
    dim: PositiveInt

    def _inputs(self, name: str) -> list[GraphInput]:
        return [GraphInput(name, name, "values", TensorInfo((self.batch, self.dim)))]


class ScalarModality(_Modality):
    """One number per example [batch]: an int64 diffusion timestep in [low, high), a float survival time or
    covariate within optional bounds."""

    type: Literal["scalar"]
    dtype: Literal["int64", "float32"] = "float32"
    low: int | float | None = None
    """Smallest value (inclusive); int64 default 0, float32 default unbounded."""
    high: int | float | None = None
    """int64: exclusive upper bound, required (timesteps 0..999: `high: 1000`); float32: inclusive, optional."""

    def _inputs(self, name: str) -> list[GraphInput]:
        low = 0 if self.low is None and self.dtype == "int64" else self.low
        return [GraphInput(name, name, "values", TensorInfo((self.batch,), self.dtype), low, self.high)]

    def problems(self) -> list[tuple[str, str]]:
        if self.dtype == "int64":
            if self.high is None:
                return [("dtype", "an int64 scalar needs `high`, its exclusive upper bound (timesteps 0..999: "
                                  "`high: 1000`)")]
            for key in ("low", "high"):
                if isinstance(getattr(self, key), float):
                    return [(key, f"{key} {getattr(self, key)} is not an integer; an int64 scalar has integer "
                                  f"bounds (or use `dtype: float32`)")]
        low = 0 if self.low is None and self.dtype == "int64" else self.low
        if low is not None and self.high is not None and self.high <= low:
            return [("high", f"high {self.high} is not above low {low}; the valid values of this {self.dtype} scalar "
                             f"are {'[low, high)' if self.dtype == 'int64' else '[low, high]'}: raise high or "
                             f"lower low")]
        return []


class CategoricalModality(_Modality):
    """Categorical columns of a table [batch, columns], int64; column i holds a level in [0, levels[i])."""

    type: Literal["categorical"]
    levels: PositiveInt | Annotated[list[PositiveInt], Field(min_length=1)]
    """Number of levels of each column, in column order; or one number for `columns` columns alike."""
    columns: PositiveInt | None = None
    """Number of columns when `levels` is one number (2000 copy-number genes of 3 levels each)."""

    @property
    def column_levels(self) -> list[int]:
        """The levels of every column."""
        return list(self.levels) if isinstance(self.levels, list) else [self.levels] * (self.columns or 1)

    def _inputs(self, name: str) -> list[GraphInput]:
        info = TensorInfo((self.batch, len(self.column_levels)), "int64")
        return [GraphInput(name, name, "ids", info, 0, tuple(self.column_levels))]

    def problems(self) -> list[tuple[str, str]]:
        if isinstance(self.levels, int) and self.columns is None:
            return [("levels", f"levels {self.levels} is one number but `columns` is missing; add `columns: N` or "
                               f"list the levels of each column")]
        if isinstance(self.levels, list) and self.columns is not None:
            return [("columns", f"columns {self.columns} with a list of levels (which already gives "
                                f"{len(self.levels)} columns); remove `columns`")]
        return []


Modality = Annotated[
    TokensModality | ImageModality | RegionsModality | SequenceModality | VectorModality | ScalarModality
    | CategoricalModality,
    Field(discriminator="type"),
]
