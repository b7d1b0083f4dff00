"""StyleGAN (Karras, Laine, Aila 2019): a mapping network z -> w and a synthesis network that grows an image from
a learned 4x4 constant, each conv followed by per-pixel noise, instance normalisation and a style (scale, bias)
from w (AdaIN); its discriminator is training-only. Weights use the equalized learning rate (stored N(0, 1),
scaled by He's constant at run time), which changes no count."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmspec.components.heads.gan import _Discriminator, _image, _vector
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_NOISE = {"noise": {"type": "vector", "dim": 6}}
_IMAGE = {"image": {"type": "image", "channels": 3, "height": 8, "width": 8}}
_MAPPING = {"mapping": {"type": "stylegan_mapping", "input": "noise", "layers": 2, "width": 5, "dim": 4}}
MAPPING_EXAMPLES = (
    Example(_NOISE, {"input": "noise", "layers": 2, "width": 5, "dim": 4}),
    Example(_NOISE, {"input": "noise", "layers": 1, "width": 5, "dim": 4, "psi": 0.7, "normalize": False},
            name="truncated"),
)
SYNTHESIS_EXAMPLES = (Example(_NOISE, {"input": "mapping.w", "widths": [4, 2]}, {"heads": _MAPPING}),)
DISCRIMINATOR_EXAMPLES = (
    Example({**_NOISE, **_IMAGE}, {"inputs": {"real": "image", "fake": "synthesis.image"}, "widths": [4, 2],
                                   "dense": 3},
            {"heads": {**_MAPPING, "synthesis": {"type": "stylegan_synthesis", "input": "mapping.w",
                                                 "widths": [4, 2]}}}),
)


@register("heads", examples=MAPPING_EXAMPLES)
class StyleGANMappingConfig(ComponentConfig):
    """z [batch, nz] -> `w` [batch, dim]: pixel norm (with `normalize`), then `layers` fully connected layers
    (`width` wide, the last `dim`) with LeakyReLU 0.2 and learning-rate multiplier `lr_multiplier`. `w_avg`, the
    running mean of w while training, serves the truncation trick w <- w_avg + psi (w - w_avg) when psi < 1."""

    type: Literal["stylegan_mapping"]
    input: Ref
    """The latent z [batch, nz] (a `vector` modality drawn N(0, I))."""
    layers: PositiveInt = 8
    """Fully connected layers."""
    width: PositiveInt = 512
    """Width of the hidden layers."""
    dim: PositiveInt = 512
    """Width of w (the last layer)."""
    lr_multiplier: float = Field(default=0.01, gt=0)
    """Learning-rate multiplier of the mapping layers (weights stored divided by it)."""
    normalize: bool = True
    """Pixel norm of z first (z / sqrt(mean(z^2) + 1e-8))."""
    psi: float = Field(default=1.0, ge=0, le=1)
    """Truncation psi applied to the exported w (1: none; the official FFHQ figures use 0.7)."""
    w_avg_beta: float = Field(default=0.995, gt=0, lt=1)
    """Decay of the running mean of w tracked while training."""

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        z = _vector(inputs["input"], self.input, "input")
        return {"w": z.with_shape(z.shape[0], self.dim)}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Parameters `build` will allocate, by formula (budgets before allocation; mmspec.spec.budget)."""
        dims = [_vector(inputs["input"], self.input, "input").width] + [self.width] * (self.layers - 1) + [self.dim]
        return sum(a * b + b for a, b in zip(dims, dims[1:], strict=False))

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.stylegan.module import Mapping

        nz = _vector(inputs["input"], self.input, "input").width
        return Mapping(nz, self.layers, self.width, self.dim, self.lr_multiplier, self.normalize, self.psi,
                       self.w_avg_beta)


@register("heads", examples=SYNTHESIS_EXAMPLES)
class StyleGANSynthesisConfig(ComponentConfig):
    """w [batch, D] -> `image` [batch, out_channels, S, S], S = 4 * 2^(len(widths) - 1), linear output. A learned
    constant widths[0] x 4 x 4 and a 3x3 conv at 4x4; per further width, nearest x2 + 3x3 conv (+ [1, 2, 1] blur)
    and a 3x3 conv. Every layer then adds per-pixel noise scaled by learned per-channel factors (fresh draws while
    training, a fixed stored draw in exported graphs), a bias, LeakyReLU 0.2, instance norm, and the style
    x * (1 + s) + b with (s, b) = affine(w). A 1x1 conv to RGB. FFHQ 1024 is the default."""

    type: Literal["stylegan_synthesis"]
    input: Ref
    """The intermediate latent w [batch, D] (a `stylegan_mapping`'s `w`), used by every layer."""
    widths: list[PositiveInt] = Field(default=[512, 512, 512, 512, 256, 128, 64, 32, 16], min_length=1)
    """Channels at 4x4 and at each doubled resolution after it."""
    out_channels: PositiveInt = 3
    """Image channels."""
    blur: bool = True
    """The [1, 2, 1] low-pass filter after each upsampling conv."""

    def side(self) -> int:
        return 4 * 2 ** (len(self.widths) - 1)

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        w = _vector(inputs["input"], self.input, "input")
        return {"image": TensorInfo((w.shape[0], self.out_channels, self.side(), self.side()))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Parameters `build` will allocate, by formula (budgets before allocation; mmspec.spec.budget)."""
        d = _vector(inputs["input"], self.input, "input").width

        def layer(cin: int, cout: int) -> int:  # 3x3 conv, noise scale, bias, style affine
            return 9 * cin * cout + 2 * cout + 2 * cout * d + 2 * cout

        c0 = self.widths[0]
        total = 16 * c0 + (2 * c0 + 2 * c0 * d + 2 * c0) + layer(c0, c0)
        for a, b in zip(self.widths, self.widths[1:], strict=False):
            total += layer(a, b) + layer(b, b)
        return total + self.widths[-1] * self.out_channels + self.out_channels

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.gan.module import Generator
        from mmspec.components.heads.stylegan.module import Synthesis

        d = _vector(inputs["input"], self.input, "input").width
        return Generator(Synthesis(d, self.widths, self.out_channels, self.blur))


@register("heads", training_only=True, examples=DISCRIMINATOR_EXAMPLES)
class StyleGANDiscriminatorConfig(_Discriminator):
    """StyleGAN's discriminator (ProGAN's): images [batch, C, S, S] -> logits `real`, `fake` [batch, 1]. A 1x1
    conv from RGB to widths[-1]; per width from the top down to 8x8, a 3x3 conv and a (blurred) 3x3 conv to the
    next lower width followed by 2x2 average pooling; at 4x4 the minibatch standard deviation as one more channel
    (groups of `group`), a 3x3 conv, a dense layer to `dense` and one to the logit; LeakyReLU 0.2 after every
    layer but the last. `widths` are listed as the generator's, from 4x4 up. Training-only."""

    type: Literal["stylegan_discriminator"]
    widths: list[PositiveInt] = Field(default=[512, 512, 512, 512, 256, 128, 64, 32, 16], min_length=1)
    """Channels at 4x4 and at each doubled resolution after it (the generator's order)."""
    dense: PositiveInt = 512
    """Width of the dense layer before the logit."""
    group: PositiveInt = 4
    """Minibatch standard deviation group size (at most the batch)."""
    blur: bool = True
    """The [1, 2, 1] low-pass filter before each downsampling conv."""

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        real, cond, side = self._shapes(inputs, len(self.widths) - 1)
        if side != 4:
            raise CheckError("widths", f"{len(self.widths)} widths take {4 * 2 ** (len(self.widths) - 1)} pixels, "
                                       f"the images have {real.shape[-1]}")
        if cond:
            raise CheckError(("inputs", "condition"), "the StyleGAN discriminator is unconditional")
        return self._outputs(real, 0)

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Parameters `build` will allocate, by formula (budgets before allocation; mmspec.spec.budget)."""
        c = _image(inputs["real"], self.inputs.real, ("inputs", "real")).shape[1]
        w = self.widths
        total = c * w[-1] + w[-1]
        for a, b in zip(w[1:][::-1], w[:-1][::-1], strict=True):
            total += 9 * a * a + a + 9 * a * b + b
        return total + 9 * (w[0] + 1) * w[0] + w[0] + 16 * w[0] * self.dense + self.dense + self.dense + 1

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.gan.module import Discriminator
        from mmspec.components.heads.stylegan.module import StyleDiscriminator

        c = _image(inputs["real"], self.inputs.real, ("inputs", "real")).shape[1]
        return Discriminator(StyleDiscriminator(c, self.widths, self.dense, self.group, self.blur))


_WPLUS = {"wplus": {"type": "sequence", "dim": 4, "length": 6}}
SYNTHESIS2_EXAMPLES = (
    Example(_NOISE, {"input": "mapping.w", "widths": [4, 2]}, {"heads": _MAPPING}, name="w"),
    Example(_WPLUS, {"input": "wplus", "widths": [4, 2, 2]}, name="w_plus"),
)
MAPPER_EXAMPLES = (Example(_WPLUS, {"input": "wplus", "groups": [2, 2, 2], "layers": 2}),)


def _wplus(bundle: Bundle, ref: str, field: str) -> TensorInfo:
    x = next(iter(bundle.values()))
    if x.rank != 3 or not isinstance(x.width, int) or not isinstance(x.shape[1], int):
        raise CheckError(field, f"{ref!r} has shape {list(x.shape)}; W+ codes [batch, layers, D] are needed")
    return x


@register("heads", examples=SYNTHESIS2_EXAMPLES)
class StyleGAN2SynthesisConfig(ComponentConfig):
    """StyleGAN2's synthesis network: w [batch, D] (every layer) or W+ [batch, 2 * len(widths), D] (one row per
    layer) -> `image` [batch, out_channels, S, S], S = 4 * 2^(len(widths) - 1). A learned 4x4 constant; per
    layer a modulated 3x3 conv (style = affine(w), bias 1; weights demodulated), noise with one learned strength,
    bias and LeakyReLU 0.2 * sqrt(2); each further width upsamples with a stride-2 transposed conv and the
    [1, 3, 3, 1] blur. Skip generator: a modulated 1x1 conv to RGB per resolution, summed with the upsampled RGB of
    the one below. FFHQ 1024 config F (channel multiplier 2) is the default."""

    type: Literal["stylegan2_synthesis"]
    input: Ref
    """w [batch, D] or W+ codes [batch, 2 * len(widths), D]."""
    widths: list[PositiveInt] = Field(default=[512, 512, 512, 512, 512, 256, 128, 64, 32], min_length=1)
    """Channels at 4x4 and at each doubled resolution after it."""
    out_channels: PositiveInt = 3
    """Image channels."""

    def side(self) -> int:
        return 4 * 2 ** (len(self.widths) - 1)

    def _dim(self, inputs: dict[str, Bundle]) -> tuple[TensorInfo, int]:
        x = next(iter(inputs["input"].values()))
        if x.rank == 2:
            return _vector(inputs["input"], self.input, "input"), x.width
        x = _wplus(inputs["input"], self.input, "input")
        if x.shape[1] != 2 * len(self.widths):
            raise CheckError("input", f"{len(self.widths)} widths take {2 * len(self.widths)} W+ rows, "
                                      f"{self.input!r} has {x.shape[1]}")
        return x, x.width

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        w, _ = self._dim(inputs)
        return {"image": TensorInfo((w.shape[0], self.out_channels, self.side(), self.side()))}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Parameters `build` will allocate, by formula (budgets before allocation; mmspec.spec.budget)."""
        _, d = self._dim(inputs)

        def conv(cin: int, cout: int) -> int:  # weight, modulation affine, noise strength, bias
            return 9 * cin * cout + (d + 1) * cin + 1 + cout

        def rgb(cin: int) -> int:
            return self.out_channels * cin + (d + 1) * cin + self.out_channels

        c0 = self.widths[0]
        total = 16 * c0 + conv(c0, c0) + rgb(c0)
        for a, b in zip(self.widths, self.widths[1:], strict=False):
            total += conv(a, b) + conv(b, b) + rgb(b)
        return total

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.gan.module import Generator
        from mmspec.components.heads.stylegan.module import Synthesis2

        w, d = self._dim(inputs)
        return Generator(Synthesis2(d, self.widths, self.out_channels, w.rank == 3))


@register("heads", examples=MAPPER_EXAMPLES)
class StyleCLIPMapperConfig(ComponentConfig):
    """StyleCLIP's latent mapper (LevelsMapper): W+ codes [batch, L, D] -> `delta` and `edited` = w + strength *
    delta [batch, L, D]. One mapper per group of rows (coarse 4, medium 4, fine the rest for 1024 px), each a pixel
    norm over its rows followed by `layers` equalized dense layers (lr multiplier 0.01, LeakyReLU 0.2 * sqrt(2)).
    Trained per text prompt with CLIP's loss on the edited image and an L2 on delta."""

    type: Literal["styleclip_mapper"]
    input: Ref
    """The W+ codes of the images to edit [batch, L, D] (e.g. from an encoder's inversion)."""
    groups: list[PositiveInt] = Field(default=[4, 4, 10], min_length=1)
    """Rows per mapper, in order (coarse, medium, fine); they must add up to L."""
    layers: PositiveInt = 4
    """Dense layers per mapper."""
    lr_multiplier: float = Field(default=0.01, gt=0)
    """Learning-rate multiplier of the dense layers."""
    strength: float = 0.1
    """Scale of the predicted offset (the official training and inference use 0.1)."""

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        w = _wplus(inputs["input"], self.input, "input")
        if sum(self.groups) != w.shape[1]:
            raise CheckError("groups", f"groups cover {sum(self.groups)} rows, {self.input!r} has {w.shape[1]}")
        return {"delta": w, "edited": w}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        """Parameters `build` will allocate, by formula (budgets before allocation; mmspec.spec.budget)."""
        d = _wplus(inputs["input"], self.input, "input").width
        return len(self.groups) * self.layers * (d * d + d)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.stylegan.module import LevelsMapper

        d = _wplus(inputs["input"], self.input, "input").width
        return LevelsMapper(d, self.groups, self.layers, self.lr_multiplier, self.strength)
