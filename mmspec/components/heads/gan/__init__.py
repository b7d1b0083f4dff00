"""GAN heads for images: generators (noise [+ a condition vector such as a sentence embedding] -> image) and
their discriminators, which are training-only (declared in the spec, read by the `gan` and `r1_penalty`
objectives, absent from every export). DC-GAN (Radford et al. 2016; the PyTorch example) and its text-conditional
form (Reed et al. 2016, GAN-INT-CLS), StackGAN's conditioning augmentation and two generator stages (Zhang et al.
2017), and DF-GAN's deep-fusion generator with its one-way discriminator (Tao et al. 2022). Networks are composed
from `mmspec.blocks.gan`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmspec.components.common import require_float
from mmspec.components.heads.mlp import DiscriminatorInputs
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_NOISE = {"noise": {"type": "vector", "dim": 4}, "text": {"type": "vector", "dim": 6}}
_IMAGE = {"image": {"type": "image", "channels": 3, "height": 16, "width": 16}}
DCGAN_GENERATOR_EXAMPLES = (
    Example(_NOISE, {"input": "noise", "widths": [8, 4]}, name="unconditional"),
    Example(_NOISE, {"input": "noise", "condition": "text", "condition_dim": 3, "widths": [8, 4],
                     "residual": [True, False]}, name="text"),
)
DFGAN_GENERATOR_EXAMPLES = (
    Example(_NOISE, {"input": "noise", "condition": "text", "widths": [8, 8, 4]}),
)
AUGMENTATION_EXAMPLES = (Example(_NOISE, {"input": "text", "dim": 3}),
                         Example(_NOISE, {"input": "text", "dim": 3, "activation": "glu"}, name="glu"))
_CA = {"ca": {"type": "conditioning_augmentation", "input": "text", "dim": 3}}
STACKGAN_GENERATOR_EXAMPLES = (
    Example(_NOISE, {"input": "noise", "condition": "ca.code", "widths": [8, 4, 4]}, {"heads": _CA}),
)
STACKGAN_REFINER_EXAMPLES = (
    Example(_NOISE, {"input": "low.image", "condition": "ca.code", "encoder": [4, 8], "blocks": 1, "up": [4, 4]},
            {"heads": {**_CA, "low": {"type": "stackgan_generator", "input": "noise", "condition": "ca.code",
                                      "widths": [4, 4]}}}),
)
DCGAN_DISCRIMINATOR_EXAMPLES = (
    Example({**_NOISE, **_IMAGE}, {"inputs": {"real": "image", "fake": "gen"}, "widths": [4, 8]},
            {"heads": {"gen": {"type": "dcgan_generator", "input": "noise", "widths": [4, 4], "channels": 3}}},
            name="unconditional"),
    Example({**_NOISE, **_IMAGE},
            {"inputs": {"real": "image", "fake": "gen", "condition": "text"}, "widths": [4, 8], "condition_dim": 3},
            {"heads": {"gen": {"type": "dcgan_generator", "input": "noise", "condition": "text",
                               "widths": [4, 4]}}},
            name="text"),
    Example({**_NOISE, **_IMAGE},  # StackGAN: a raw condition, 3x3 joint conv, 3x3 tail, an unconditional logit
            {"inputs": {"real": "image", "fake": "gen", "condition": "text"}, "widths": [4, 8], "tail": [4],
             "joint_kernel": 3, "out_bias": True, "unconditional": True},
            {"heads": {"gen": {"type": "dcgan_generator", "input": "noise", "widths": [4, 4]}}},
            name="stackgan"),
    Example({**_NOISE, **_IMAGE},  # DM-GAN: spectrally normalised convs with biases, no BatchNorm
            {"inputs": {"real": "image", "fake": "gen", "condition": "text"}, "widths": [4, 8], "tail": [4],
             "joint_kernel": 3, "out_bias": True, "unconditional": True, "bias": True, "spectral": True},
            {"heads": {"gen": {"type": "dcgan_generator", "input": "noise", "widths": [4, 4]}}},
            name="spectral"),
)
DFGAN_DISCRIMINATOR_EXAMPLES = (
    Example({**_NOISE, **_IMAGE},
            {"inputs": {"real": "image", "fake": "gen", "condition": "text"}, "widths": [4, 8, 8], "joint": 4},
            {"heads": {"gen": {"type": "dfgan_generator", "input": "noise", "condition": "text",
                               "widths": [4, 4, 4]}}}),
)


def _vector(bundle: Bundle, ref: str, field: str) -> TensorInfo:
    x = require_float(next(iter(bundle.values())), ref, field)
    if x.rank != 2 or not isinstance(x.width, int):
        raise CheckError(field, f"{ref!r} has shape {list(x.shape)}; a vector [batch, D] is needed")
    return x


def _image(bundle: Bundle, ref: str, field: tuple) -> TensorInfo:
    x = next(iter(bundle.values())) if "image" not in bundle else bundle["image"]
    if x.rank != 4 or not all(isinstance(d, int) for d in x.shape[1:]):
        raise CheckError(field, f"{ref!r} has shape {list(x.shape)}; an image [batch, C, H, W] of fixed size is needed")
    return require_float(x, ref, field)


class _Generator(ComponentConfig):
    input: Ref
    """The noise vector [batch, nz] (a `vector` modality drawn N(0, I))."""
    channels: PositiveInt = 3
    """Image channels of `image`."""

    def references(self) -> dict[str, str]:
        cond = getattr(self, "condition", None)
        return {"input": self.input, **({"condition": cond} if cond else {})}

    def _widths(self, inputs: dict[str, Bundle]) -> tuple[TensorInfo, int]:
        z = _vector(inputs["input"], self.input, "input")
        if "condition" not in inputs:
            return z, 0
        cond = _vector(inputs["condition"], self.condition, "condition")
        return z, cond.width

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        z, _ = self._widths(inputs)
        side = self.side()
        return {"image": TensorInfo((z.shape[0], self.channels, side, side))}


@register("heads", examples=DCGAN_GENERATOR_EXAMPLES)
class DCGANGeneratorConfig(_Generator):
    """Noise [batch, nz] (+ `condition` [batch, C], projected by Linear + LeakyReLU to `condition_dim` when set,
    concatenated) -> `image` [batch, channels, S, S], S = 4 * 2^len(widths), in [-1, 1]: a 4x4 transposed conv
    to widths[0] at 4x4, stride-2 transposed convs through the other widths and to `channels`, BatchNorm + ReLU
    after each (tanh after the last); `residual` adds a bottleneck residual block (Reed et al.) to a stage.
    The PyTorch DCGAN example is `widths: [512, 256, 128, 64]`."""

    type: Literal["dcgan_generator"]
    condition: Ref | None = None
    """A condition vector [batch, C] (a sentence embedding)."""
    condition_dim: PositiveInt | None = None
    """Width of the condition's Linear + LeakyReLU code; null: the condition is concatenated as it is."""
    widths: list[PositiveInt] = Field(default=[512, 256, 128, 64], min_length=1)
    """Channels of the transposed-conv stages, from the 4x4 map up (each further one doubles the resolution)."""
    residual: list[bool] | None = None
    """Per width: a bottleneck residual block after the stage's BatchNorm (width / 4 inside); null: none."""
    bias: bool = False
    """Biases on the convolutions."""

    def side(self) -> int:
        return 4 * 2 ** len(self.widths)

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        if self.residual is not None and len(self.residual) != len(self.widths):
            raise CheckError("residual", f"residual lists {len(self.residual)} stages but widths {len(self.widths)}")
        for i, (width, block) in enumerate(zip(self.widths, self.residual or (), strict=False)):
            if block and width < 4:
                raise CheckError(("residual", i), f"a residual block works at width / 4, and widths[{i}] is {width}; "
                                                  f"it needs at least 4")
        if self.condition_dim and self.condition is None:
            raise CheckError("condition_dim", "condition_dim projects a condition; set `condition:` too")
        return super().infer(inputs, ctx)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.blocks.gan import DCGANGenerator
        from mmspec.components.heads.gan.module import Generator

        z, cond = self._widths(inputs)
        residual = self.residual or [False] * len(self.widths)
        return Generator(DCGANGenerator(z.width, self.widths, self.channels, residual, self.bias, cond,
                                        self.condition_dim))


@register("heads", examples=DFGAN_GENERATOR_EXAMPLES)
class DFGANGeneratorConfig(_Generator):
    """DF-GAN: noise [batch, nz] -> Linear -> widths[0] x 4 x 4, one up-block per further width (nearest x2;
    shortcut + two [deep fusion: two channel-wise affines predicted from [noise, condition] by MLPs, each followed
    by LeakyReLU; 3x3 conv]), LeakyReLU, 3x3 conv to `channels`, tanh -> `image` [batch, channels, S, S],
    S = 4 * 2^(len(widths) - 1). The official 256x256 model is `widths: [256, 256, 256, 256, 128, 64, 32]`."""

    type: Literal["dfgan_generator"]
    condition: Ref
    """The sentence vector [batch, C]."""
    widths: list[PositiveInt] = Field(default=[256, 256, 256, 256, 128, 64, 32], min_length=1)
    """Channels of the 4x4 map and of each up-block after it."""

    def side(self) -> int:
        return 4 * 2 ** (len(self.widths) - 1)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.blocks.gan import DFGANGenerator
        from mmspec.components.heads.gan.module import Generator

        z, cond = self._widths(inputs)
        return Generator(DFGANGenerator(z.width, cond, self.widths, self.channels))


@register("heads", examples=AUGMENTATION_EXAMPLES)
class ConditioningAugmentationConfig(ComponentConfig):
    """StackGAN's conditioning augmentation: a text embedding [batch, T] -> Linear(T, 2 * dim) + ReLU (or
    Linear(T, 4 * dim) + GLU, AttnGAN), split into `mean` and `log_var` [batch, dim]; `code` is mean +
    exp(log_var / 2) * eps while training and the mean in exported graphs. Train it with `gaussian_kl` on mean and
    log_var."""

    type: Literal["conditioning_augmentation"]
    input: Ref
    dim: PositiveInt = 128
    """Width of the code (and of its mean and log-variance)."""
    activation: Literal["relu", "glu"] = "relu"
    """relu: StackGAN; glu: AttnGAN / DM-GAN (the Linear is twice as wide, its second half gating the first)."""

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        t = _vector(inputs["input"], self.input, "input")
        code = t.with_shape(t.shape[0], self.dim)
        return {"code": code, "mean": code, "log_var": code}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.blocks.gan import ConditioningAugmentation
        from mmspec.components.heads.gan.module import Augmentation

        text = _vector(inputs["input"], self.input, "input").width
        return Augmentation(ConditioningAugmentation(text, self.dim, self.activation == "glu"))


@register("heads", examples=STACKGAN_GENERATOR_EXAMPLES)
class StackGANGeneratorConfig(_Generator):
    """StackGAN Stage-I: [noise, condition code] -> Linear (no bias) + BatchNorm + ReLU -> widths[0] x 4 x 4, an
    up-block (nearest x2, 3x3 conv, BatchNorm, ReLU) per further width, a 3x3 conv to `channels`, tanh ->
    `image` [batch, channels, S, S], S = 4 * 2^(len(widths) - 1)."""

    type: Literal["stackgan_generator"]
    condition: Ref
    """The conditioning augmentation's `code` [batch, c]."""
    widths: list[PositiveInt] = Field(default=[1024, 512, 256, 128, 64], min_length=1)
    """Channels of the 4x4 map and of each up-block after it."""

    def side(self) -> int:
        return 4 * 2 ** (len(self.widths) - 1)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.blocks.gan import StackGANGenerator
        from mmspec.components.heads.gan.module import Generator

        z, cond = self._widths(inputs)
        return Generator(StackGANGenerator(z.width, cond, self.widths, self.channels))


@register("heads", examples=STACKGAN_REFINER_EXAMPLES)
class StackGANRefinerConfig(ComponentConfig):
    """StackGAN Stage-II: a low-resolution `input` image [batch, C, h, w] and a `condition` code -> 3x3 conv +
    ReLU and stride-2 4x4 convs + BatchNorm + ReLU through `encoder` widths, the code replicated and joined by a
    3x3 conv + BatchNorm + ReLU, `blocks` residual blocks, an up-block per `up` width, a 3x3 conv, tanh ->
    `image` [batch, C, h * 2^len(up) / 2^(len(encoder) - 1), same]."""

    type: Literal["stackgan_refiner"]
    input: Ref
    condition: Ref
    """The conditioning augmentation's `code` [batch, c]."""
    encoder: list[PositiveInt] = Field(default=[128, 256, 512], min_length=1)
    """Channels of the image encoder: the first 3x3 conv, then each stride-2 4x4 conv."""
    blocks: PositiveInt = 4
    """Residual blocks after the image and the code are joined."""
    up: list[PositiveInt] = Field(default=[256, 128, 64, 32], min_length=1)
    """Channels of the up-blocks (each doubles the resolution)."""

    def references(self) -> dict[str, str]:
        return {"input": self.input, "condition": self.condition}

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        x = _image(inputs["input"], self.input, "input")
        _vector(inputs["condition"], self.condition, "condition")
        b, c, h, w = x.shape
        down = 2 ** (len(self.encoder) - 1)
        if h % down or w % down:
            raise CheckError("encoder", f"an image of {h}x{w} does not halve {len(self.encoder) - 1} times")
        return {"image": x.with_shape(b, c, h // down * 2 ** len(self.up), w // down * 2 ** len(self.up))}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.blocks.gan import StackGANRefiner
        from mmspec.components.heads.gan.module import Generator

        x = _image(inputs["input"], self.input, "input")
        cond = _vector(inputs["condition"], self.condition, "condition").width
        return Generator(StackGANRefiner(x.shape[1], cond, self.encoder, self.blocks, self.up))


class _Discriminator(ComponentConfig):
    inputs: DiscriminatorInputs
    training_only: bool = True
    """true (the default): the discriminator trains alongside and is never exported."""

    def references(self) -> dict[str, str]:
        return {k: v for k, v in self.inputs.model_dump().items() if v is not None}

    def _shapes(self, inputs: dict[str, Bundle], halvings: int) -> tuple[TensorInfo, int, int]:
        """(real image, condition width or 0, side of the last feature map)."""
        real = _image(inputs["real"], self.inputs.real, ("inputs", "real"))
        fake = _image(inputs["fake"], self.inputs.fake, ("inputs", "fake"))
        if real.shape[1:] != fake.shape[1:]:
            raise CheckError(("inputs", "fake"), f"real {list(real.shape)} and fake {list(fake.shape)} images differ")
        _, _, h, w = real.shape
        if h != w or h % 2**halvings or h < 2**halvings:
            raise CheckError(("inputs", "real"), f"images of {h}x{w} do not halve {halvings} times to a square map")
        cond = 0
        if "condition" in inputs:
            cond = _vector(inputs["condition"], self.inputs.condition, ("inputs", "condition")).width
        return real, cond, h // 2**halvings

    def _outputs(self, real: TensorInfo, cond: int) -> Bundle:
        logit = TensorInfo((real.shape[0], 1))
        return {"real": logit, "fake": logit, **({"mismatched": logit} if cond else {})}


@register("heads", training_only=True, examples=DCGAN_DISCRIMINATOR_EXAMPLES)
class DCGANDiscriminatorConfig(_Discriminator):
    """Images [batch, C, H, W] -> logits `real`, `fake` [batch, 1] (and `mismatched`, the real image with another
    example's condition, when `inputs.condition` is set): a stride-2 4x4 conv per width (BatchNorm on all but the
    first, LeakyReLU 0.2); with a condition, its code (Linear + BatchNorm + LeakyReLU to `condition_dim`) is
    replicated over the last k x k map and joined by a 1x1 conv + BatchNorm + LeakyReLU; a k x k conv to one
    logit. Training-only."""

    type: Literal["dcgan_discriminator"]
    widths: list[PositiveInt] = Field(default=[64, 128, 256, 512], min_length=1)
    """Channels of the stride-2 4x4 convs, in order (each halves the resolution)."""
    condition_dim: PositiveInt | None = None
    """Width of the condition's Linear + BatchNorm + LeakyReLU code; null: the condition is used as it is."""
    bias: bool = False
    """Biases on the convolutions but the last."""
    tail: list[PositiveInt] = []
    """3x3 conv + BatchNorm + LeakyReLU widths after the strided convs (StackGAN Stage-II: [ndf*16, ndf*8])."""
    joint_kernel: Literal[1, 3] = 1
    """Kernel of the joint image-condition conv (Reed: 1, StackGAN: 3)."""
    out_bias: bool = False
    """A bias on the last conv (StackGAN)."""
    unconditional: bool = False
    """Also score the image alone: `real_uncond`, `fake_uncond` (StackGAN Stage-II)."""
    spectral: bool = False
    """Spectral normalisation on every conv but the logits' and no BatchNorm (DM-GAN; with `bias: true`)."""

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        real, cond, _ = self._shapes(inputs, len(self.widths))
        if self.condition_dim and not cond:
            raise CheckError("condition_dim", "condition_dim projects a condition; set `inputs.condition` too")
        out = self._outputs(real, cond)
        if self.unconditional:
            out |= {"real_uncond": out["real"], "fake_uncond": out["real"]}
        return out

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.blocks.gan import DCGANDiscriminator
        from mmspec.components.heads.gan.module import Discriminator

        real, cond, side = self._shapes(inputs, len(self.widths))
        return Discriminator(DCGANDiscriminator(real.shape[1], self.widths, side, self.bias, cond, self.condition_dim,
                                                tuple(self.tail), self.joint_kernel, self.out_bias,
                                                self.unconditional, self.spectral))


@register("heads", training_only=True, examples=DFGAN_DISCRIMINATOR_EXAMPLES)
class DFGANDiscriminatorConfig(_Discriminator):
    """DF-GAN's discriminator: a 3x3 conv to widths[0], a residual down-block per further width (avg-pooled
    shortcut + gamma * [4x4 stride-2 conv, LeakyReLU, 3x3 conv, LeakyReLU], gamma learned from 0), then the
    one-way output: the condition replicated over the k x k map, a 3x3 conv to `joint`, LeakyReLU, a k x k conv
    -> logits `real`, `fake`, `mismatched` [batch, 1]. Training-only."""

    type: Literal["dfgan_discriminator"]
    widths: list[PositiveInt] = Field(default=[32, 64, 128, 256, 256, 256, 256], min_length=1)
    """Channels of the first conv and of each residual down-block after it."""
    joint: PositiveInt = 64
    """Width of the joint image-sentence conv (twice the base width in the official code)."""

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        if self.inputs.condition is None:
            raise CheckError(("inputs", "condition"), "the DF-GAN discriminator judges image-sentence pairs; "
                                                      "set `inputs.condition`")
        real, cond, _ = self._shapes(inputs, len(self.widths) - 1)
        return self._outputs(real, cond)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.blocks.gan import DFGANDiscriminator
        from mmspec.components.heads.gan.module import Discriminator

        real, cond, side = self._shapes(inputs, len(self.widths) - 1)
        return Discriminator(DFGANDiscriminator(real.shape[1], self.widths, cond, self.joint, side))
