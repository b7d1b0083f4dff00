"""Modalities: the model's inputs. Each one names its dynamic axes and becomes 1-3 graph inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from mmspec.spec.base import Axis, Name, PositiveInt, StrictModel
from mmspec.spec.tensors import Bundle, TensorInfo


@dataclass(frozen=True)
class GraphInput:
    """One tensor the exported model takes: its ONNX name, signature and the range of valid values."""

    name: str
    modality: str
    field: str
    info: TensorInfo
    low: float = 0.0
    high: float | None = None
    """Exclusive upper bound for integer inputs (token ids), None for unbounded floats."""


class _Modality(StrictModel):
    batch: Name = "batch"
    """Name of the batch axis."""

    def graph_inputs(self, name: str) -> list[GraphInput]:
        raise NotImplementedError

    def bundle(self, name: str) -> Bundle:
        return {i.field: i.info for i in self.graph_inputs(name)}


class TokensModality(_Modality):
    """Integer token ids [batch, length], optionally with a padding mask and segment ids."""

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

    def graph_inputs(self, name: str) -> list[GraphInput]:
        ids = TensorInfo((self.batch, self.length), "int64")
        out = [GraphInput(name, name, "ids", ids, 0, self.vocab_size)]
        if self.mask:
            out.append(GraphInput(f"{name}_mask", name, "mask", ids, 0, 2))
        if self.segments:
            out.append(GraphInput(f"{name}_segments", name, "segments", ids, 0, self.segments))
        return out


class ImageModality(_Modality):
    """Dense images [batch, channels, height, width], float32."""

    type: Literal["image"]
    channels: PositiveInt = 3
    height: PositiveInt = 224
    width: PositiveInt = 224

    def graph_inputs(self, name: str) -> list[GraphInput]:
        return [GraphInput(name, name, "pixels", TensorInfo((self.batch, self.channels, self.height, self.width)))]


class RegionsModality(_Modality):
    """A set of detector region features [batch, regions, dim], with optional box geometry and mask."""

    type: Literal["regions"]
    dim: PositiveInt
    count: Axis = "regions"
    max_count: PositiveInt = 128
    boxes: Annotated[int, Field(ge=0)] = 0
    """Width of the box-geometry vector (ViLBERT: 5); 0 = no `<name>_boxes` input."""
    mask: bool = False

    def graph_inputs(self, name: str) -> list[GraphInput]:
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

    def graph_inputs(self, name: str) -> list[GraphInput]:
        return [GraphInput(name, name, "values", TensorInfo((self.batch, self.length, self.dim)))]


class VectorModality(_Modality):
    """A fixed-width float vector per example [batch, dim] (tabular data)."""

    type: Literal["vector"]
    dim: PositiveInt

    def graph_inputs(self, name: str) -> list[GraphInput]:
        return [GraphInput(name, name, "values", TensorInfo((self.batch, self.dim)))]


Modality = Annotated[
    TokensModality | ImageModality | RegionsModality | SequenceModality | VectorModality,
    Field(discriminator="type"),
]
