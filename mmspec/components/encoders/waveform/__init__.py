"""Waveform encoder (wav2vec 2.0 / data2vec audio): temporal convs over raw samples, a projection to the model
width and a convolutional relative position embedding; a `transformer` with `embed: sequence` continues it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Probability, Ref
from mmspec.spec.layout import Rule
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

ConvRow = Annotated[list[PositiveInt], Field(min_length=3, max_length=3)]
DATA2VEC_CONVS = [[512, 10, 5], *[[512, 3, 2]] * 4, *[[512, 2, 2]] * 2]
"""wav2vec 2.0 / data2vec feature encoder: [channels, kernel, stride] per layer (16 kHz -> 50 Hz frames)."""

_HF_DATA2VEC_AUDIO = (  # transformers Data2VecAudioModel: everything before the encoder's layers
    Rule("feature_extractor.conv_layers.{i}.conv.weight", "convs.{i}.0.weight"),
    Rule("feature_extractor.conv_layers.{i}.conv.bias", "convs.{i}.0.bias"),
    Rule("feature_extractor.conv_layers.{i}.layer_norm.{p}", "convs.{i}.1.norm.{p}"),
    Rule("feature_projection.layer_norm.{p}", "proj_norm.{p}"),
    Rule("feature_projection.projection.{p}", "proj.{p}"),
    Rule("encoder.pos_conv_embed.layers.{i}.conv.{p}", "positions.{i}.{p}"),
    Rule("encoder.layer_norm.{p}", "norm.{p}"),
)

_AUDIO = {"audio": {"type": "sequence", "dim": 1, "length": 64}}
WAVEFORM_EXAMPLES = (
    Example(_AUDIO, {"input": "audio", "convs": [[8, 4, 2], [8, 3, 2], [8, 2, 2]], "width": 12,
                     "position_layers": 2, "position_kernel": 5, "position_groups": 4}, name="odd_kernel"),
    Example(_AUDIO, {"input": "audio", "convs": [[6, 5, 3], [8, 2, 2]], "conv_bias": True, "width": 8,
                     "position_layers": 1, "position_kernel": 4, "position_groups": 2}, name="even_kernel"),
)


@register("encoders", examples=WAVEFORM_EXAMPLES)
class WaveformEncoder(ComponentConfig):
    """Raw audio [batch, samples, 1] (a `sequence` modality of dim 1 and fixed length) -> `features`
    [batch, T, C] (the last conv's output, LayerNormed) and `sequence` [batch, T, width]. Each conv (no padding)
    is followed by LayerNorm over channels and GELU; then LayerNorm, Linear(C -> width), dropout; then
    `position_layers` grouped convs (kernel `position_kernel`, padding kernel // 2, the extra last frame of an
    even kernel dropped, parameter-free LayerNorm, GELU) whose output is added, LayerNorm and dropout
    (data2vec audio, transformers' Data2VecAudioModel up to its encoder layers)."""

    type: Literal["waveform"]
    input: Ref
    convs: list[ConvRow] = Field(default=DATA2VEC_CONVS, min_length=1)
    """[channels, kernel, stride] per temporal conv."""
    conv_bias: bool = False
    """true: the feature-extractor convs have biases."""
    width: PositiveInt = 768
    """Width of `sequence`: the projection after the conv feature extractor."""
    position_layers: Annotated[int, Field(ge=0)] = 5
    """Grouped convs of the convolutional position embedding (0: none)."""
    position_kernel: PositiveInt = 19
    """Kernel size of the position convs."""
    position_groups: PositiveInt = 16
    """Groups of the position convs; they divide `width`."""
    eps: PositiveFloat = 1e-5
    dropout: Probability = 0.1

    weight_layouts = {"data2vec_audio": _HF_DATA2VEC_AUDIO}

    def frames(self, samples: int) -> int:
        """Frames left after the convs (each: (L - kernel) // stride + 1)."""
        for _, kernel, stride in self.convs:
            samples = (samples - kernel) // stride + 1
        return samples

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        x = inputs["input"].get("values")
        if x is None or x.rank != 3 or x.shape[2] != 1:
            found = list(x.shape) if x is not None else sorted(inputs["input"])
            raise CheckError("input", f"needs raw audio [batch, samples, 1] (a sequence modality of dim 1), "
                                      f"got {found}")
        if not isinstance(x.shape[1], int):
            raise CheckError("input", f"the audio length {x.shape[1]!r} must be a fixed number of samples "
                                      f"(write `length: 16000`): the frame count follows from it")
        frames = self.frames(x.shape[1])
        if frames < 1:
            raise CheckError("convs", f"{x.shape[1]} samples leave no frame after the {len(self.convs)} convs; "
                                      f"use longer audio or smaller kernels/strides")
        if self.width % self.position_groups:
            raise CheckError("position_groups", f"width {self.width} is not divisible by position_groups "
                                                f"{self.position_groups}")
        batch = x.shape[0]
        return {"features": TensorInfo((batch, frames, self.convs[-1][0])),
                "sequence": TensorInfo((batch, frames, self.width))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Convs (+ biases) and their LayerNorms, the projection with its LayerNorm, the position convs, the
        final LayerNorm."""
        total, cin = 0, 1
        for cout, kernel, _ in self.convs:
            total += cin * cout * kernel + (cout if self.conv_bias else 0) + 2 * cout
            cin = cout
        per_position = self.width * (self.width // self.position_groups) * self.position_kernel + self.width
        return total + 2 * cin + cin * self.width + self.width + self.position_layers * per_position + 2 * self.width

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.waveform.module import WaveformModule

        return WaveformModule(self.convs, self.conv_bias, self.width, self.position_layers, self.position_kernel,
                              self.position_groups, self.eps, self.dropout)
