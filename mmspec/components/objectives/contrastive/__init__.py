"""Contrastive and self-distillation objectives on embeddings: NT-Xent (SimCLR), BYOL's normalized MSE
and data2vec's regression to an EMA teacher's layers (training-only). CLIP's symmetric InfoNCE is in
supervised.py, next to the contrastive head it reads."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.examples import TEXT, text_encoder
from mmspec.components.objectives.base import (
    LOSS,
    Objective,
    input_names,
    pick_modality,
    require_rank,
    same_shape,
    tensor,
)
from mmspec.registry import Example, register
from mmspec.spec.base import Name, PositiveFloat, PositiveInt, Probability, Ref, StrictModel
from mmspec.spec.tensors import Bundle, CheckError

VIEW_KINDS = ("image", "regions", "sequence", "vector")


class Augment(StrictModel):
    """Two augmented views per example (rows 2i, 2i+1 of the doubled batch). Images: random resized crop
    (area fraction in [crop, 1]), horizontal flip, brightness jitter, Gaussian noise; other float
    modalities: Gaussian noise."""

    modality: Name
    flip: bool = True
    crop: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    brightness: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.4
    noise: Annotated[float, Field(ge=0.0)] = 0.0


def _check_views(obj, ctx) -> None:
    pick_modality(ctx.spec, obj.augment.modality, obj.input, VIEW_KINDS, "augment", "augment")
    others = [n for n, o in ctx.spec.objectives.items() if getattr(o, "augment", None) is not None and o is not obj]
    if others:
        raise CheckError(
            "augment",
            f"objective {others[0]!r} also makes views; only one objective may augment "
            "(the others then see both views)",
        )


def _views(obj, ctx) -> dict:
    a = obj.augment
    return {
        "names": list(input_names(ctx.spec, a.modality).values()),
        "image": ctx.spec.modalities[a.modality].type == "image",
        "flip": a.flip,
        "crop": a.crop,
        "brightness": a.brightness,
        "noise": a.noise,
    }


_IMAGE = {"image": {"type": "image", "channels": 3, "height": 16, "width": 16}}
_CNN = {"cnn": {"type": "resnet", "input": "image", "block": "basic", "depths": [1, 1], "widths": [4, 8], "stem": 4}}
NT_XENT_EXAMPLES = (
    Example(  # SimCLR: crops, flips, brightness and noise on images; the projector is training-only
        _IMAGE,
        {"input": "projector", "temperature": 0.5, "augment": {"modality": "image", "crop": 0.6, "noise": 0.05}},
        {
            "encoders": _CNN,
            "heads": {"projector": {"type": "mlp", "input": "cnn.pooled", "hidden": [8], "dim": 4,
                                    "training_only": True}},
        },
        outputs=["cnn.pooled"],
        name="image",
    ),
    Example(  # a float modality: its views differ by Gaussian noise
        {"x": {"type": "vector", "dim": 6}},
        {"input": "proj", "temperature": 0.2, "augment": {"modality": "x", "noise": 0.1}},
        {"heads": {"proj": {"type": "mlp", "input": "x", "hidden": [8], "dim": 4}}},
        name="vector",
    ),
)
BYOL_EXAMPLES = (
    Example(  # BYOL: the EMA teacher follows the online projector (BatchNorm in train mode)
        _IMAGE,
        {"input": "predictor", "target": "teacher.embedding", "augment": {"modality": "image"}},
        {
            "encoders": _CNN,
            "heads": {
                "projector": {"type": "mlp", "input": "cnn.pooled", "hidden": [8], "norm": "batch", "dim": 4,
                              "training_only": True},
                "predictor": {"type": "mlp", "input": "projector.embedding", "hidden": [8], "norm": "batch",
                              "dim": 4, "training_only": True},
            },
            "objectives": {"teacher": {"type": "ema_teacher", "student": "projector", "mode": "train",
                                       "momentum": {"start": 0.9}}},
        },
        outputs=["cnn.pooled"],
    ),
)
_D2V_ENCODER = text_encoder(layers=2, pool=None, dropout=0.0, attention_dropout=0.0)
_D2V_NODES = {
    "encoders": {"student": _D2V_ENCODER},
    "heads": {"regress": {"type": "mlp", "input": "student.sequence", "dim": 8, "training_only": True}},
    "objectives": {
        "teacher": {"type": "ema_teacher", "student": "student", "scope": "layers", "emit": "layers",
                    "momentum": {"start": 0.99, "end": 0.999, "schedule": "linear", "steps": 10}}
    },
}
_D2V_TEXT = {"text": TEXT}
DATA2VEC_EXAMPLES = (
    Example(  # span masking, smooth L1 to the layer-normalised mean of the teacher's 2 blocks
        _D2V_TEXT,
        {"input": "regress", "target": "teacher.layers", "top_k": 2, "mask": {"prob": 0.35, "length": 2,
                                                                               "mask_token": 3}},
        _D2V_NODES,
        outputs=["student.sequence"],
        name="span",
    ),
    Example(  # uniform masking, L2 to the instance-normalised top block
        _D2V_TEXT,
        {"input": "regress", "target": "teacher.layers", "top_k": 1, "target_norm": "instance", "loss": "l2",
         "mask": {"type": "uniform", "prob": 0.5, "modality": "text", "mask_token": 3}},
        _D2V_NODES,
        outputs=["student.sequence"],
        name="uniform_l2",
    ),
    Example(  # data2vec vision: block masking of a 4 x 4 patch grid (pixels of masked patches zeroed)
        {"image": {"type": "image", "channels": 3, "height": 8, "width": 8}},
        {"input": "regress", "target": "teacher.layers", "top_k": 2, "beta": 2.0,
         "mask": {"type": "block", "prob": 0.5, "min_block": 2}},
        {**_D2V_NODES, "encoders": {"student": {
            "type": "transformer", "input": "image", "embed": {"type": "patches", "patch_size": 2, "positions": False},
            "width": 8, "layers": 2, "heads": 2, "ffn": 16, "norm": "pre", "layer_scale": 0.1, "key_bias": False,
            "relative_position": "shared", "dropout": 0.0, "attention_dropout": 0.0}}},
        outputs=["student.sequence"],
        name="image_block",
    ),
)


@register("objectives", training_only=True, examples=NT_XENT_EXAMPLES)
class NTXent(Objective):
    """SimCLR's NT-Xent on embeddings [batch, D] of two augmented views: each view's positive is the other
    view of its example, every other row (of every process) a negative, at a fixed `temperature`."""

    type: Literal["nt_xent"]
    input: Ref
    temperature: PositiveFloat = 0.5
    """Softmax temperature of the similarities."""
    augment: Augment
    """How the two views of each example are made from the batch (augmentations)."""

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        require_rank(tensor(inputs, "input", self.input), 2, "input", "embeddings", self.input)
        _check_views(self, ctx)
        return LOSS

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.contrastive.loss import NTXent as Module

        return Module(self.temperature, **_views(self, ctx))


@register("objectives", training_only=True, examples=BYOL_EXAMPLES)
class BYOLNormalizedMSE(Objective):
    """BYOL: 2 - 2 cos(predictor output for one view, EMA teacher's projection of the other view);
    `symmetric` adds the swapped term (the paper's L + L~). `target` is usually an `ema_teacher`'s field."""

    type: Literal["byol_normalized_mse"]
    input: Ref
    target: Ref
    """The teacher's projection of the other view: usually an `ema_teacher`'s field."""
    symmetric: bool = True
    """true: add the swapped term (each view predicts the other)."""
    augment: Augment
    """How the two views of each example are made from the batch (augmentations)."""
    ref_fields = ("input", "target")

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        pred = require_rank(tensor(inputs, "input", self.input), 2, "input", "predictions", self.input)
        same_shape(pred, tensor(inputs, "target", self.target, field="target"), "target", self.input, self.target)
        _check_views(self, ctx)
        return LOSS

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.contrastive.loss import BYOL as Module

        return Module(self.symmetric, **_views(self, ctx))


class StudentMask(StrictModel):
    """Masking of the student's input: `span` (wav2vec/data2vec: round(prob S / length) spans of `length`),
    `uniform` (exactly prob S positions) or, on an image's patch grid, `block` (BEiT: rectangles of at least
    `min_block` patches until round(prob N) are masked; data2vec vision)."""

    type: Literal["span", "uniform", "block"] = "span"
    prob: Probability = 0.35
    length: PositiveInt = 4
    min_block: PositiveInt = 16
    """`block`: the smallest rectangle, in patches."""
    modality: Name | None = None
    """The tokens/sequence/regions/image modality to mask; default: the only one the student reads. An image is
    masked patch by patch (its masked patches' pixels are zeroed; `uniform` or `block`), on the grid the
    predictions [batch, prefix + patches, D] give."""
    mask_token: Annotated[int, Field(ge=0)] = 103
    """Id written at masked token positions (float features are zeroed)."""


@register("objectives", training_only=True, examples=DATA2VEC_EXAMPLES)
class Data2VecRegression(Objective):
    """data2vec: the student sees masked input and regresses, at the masked positions, the mean of the EMA
    teacher's top_k block outputs (the teacher sees the unmasked input), each normalised by `target_norm`.
    `input`: per-position predictions [batch, S, D]; `target`: an `ema_teacher` with `emit: layers`."""

    type: Literal["data2vec_regression"]
    input: Ref
    target: Ref
    """An `ema_teacher` with `emit: layers` (its block outputs)."""
    top_k: PositiveInt = 8
    """How many of the teacher's top blocks are averaged into the target."""
    target_norm: Literal["layer", "instance", "none"] = "layer"
    """Normalization of each block output before averaging: `layer`, `instance` or `none`."""
    loss: Literal["smooth_l1", "l2"] = "smooth_l1"
    """Regression loss: `smooth_l1` or `l2`."""
    beta: Annotated[float, Field(ge=0.0)] = 4.0
    """Smooth L1 switches from quadratic to linear at |error| = beta (0: plain L1)."""
    mask: StudentMask = StudentMask()
    """Which positions of the student's input are masked (and regressed)."""
    ref_fields = ("input", "target")

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        pred = require_rank(tensor(inputs, "input", self.input), 3, "input", "per-position predictions", self.input)
        layers = inputs["target"].get("layers")
        if layers is None or layers.rank != 4:
            raise CheckError(
                "target",
                f"data2vec_regression needs `layers` [batch, L, S, D] from {self.target!r}; "
                "reference an ema_teacher with `emit: layers`",
            )
        if (layers.shape[0], *layers.shape[2:]) != pred.shape:
            raise CheckError(
                "target",
                f"teacher layers {list(layers.shape)} do not match the predictions "
                f"{list(pred.shape)} of {self.input!r} (batch, positions, width)",
            )
        if self.top_k > layers.shape[1]:
            raise CheckError("top_k", f"top_k {self.top_k} exceeds the teacher's {layers.shape[1]} layers")
        modality = ctx.spec.modalities[self._modality(ctx)]
        if modality.type == "image":
            self._grid(modality, pred.shape[1])
        elif self.mask.type == "block":
            raise CheckError(("mask", "type"), f"block masking cuts an image's patch grid; {self._modality(ctx)!r} "
                                               f"is a {modality.type} modality: use span or uniform")
        if modality.type == "tokens" and self.mask.mask_token >= modality.vocab_size:
            raise CheckError(
                ("mask", "mask_token"),
                f"mask.mask_token {self.mask.mask_token} is not below the vocab_size {modality.vocab_size}",
            )
        return LOSS

    def _modality(self, ctx) -> str:
        return pick_modality(
            ctx.spec, self.mask.modality, self.input, ("tokens", "sequence", "regions", "image"), "mask", "mask"
        )

    def _grid(self, image, positions) -> tuple[int, int, int]:
        """(patch side, grid rows, grid columns) of the image patches behind `positions` predictions (patches,
        or patches after leading class tokens); CheckError when no patch side fits."""
        for p in range(1, min(image.height, image.width) + 1):
            rows, cols = image.height // p, image.width // p
            if image.height % p == 0 and image.width % p == 0 and 0 <= positions - rows * cols <= 1:
                if self.mask.type == "span":
                    raise CheckError(("mask", "type"), "an image is masked patch by patch: use block or uniform")
                return p, rows, cols
        raise CheckError("input", f"the {positions} predictions of {self.input!r} are not the patches (plus a "
                                  f"class token) of a {image.height}x{image.width} image for any patch size")

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.contrastive.loss import Data2Vec as Module

        modality = self._modality(ctx)
        names = input_names(ctx.spec, modality)
        image = ctx.spec.modalities[modality]
        if image.type == "image":
            grid = self._grid(image, tensor(inputs, "input", self.input).shape[1])
            return Module(names["pixels"], None, None, self.mask.type, self.mask.prob, self.mask.min_block,
                          self.top_k, self.target_norm, self.loss, self.beta, grid)
        main = names.get("ids") or names.get("values") or names["features"]
        return Module(
            main,
            names.get("mask"),
            self.mask.mask_token,
            self.mask.type,
            self.mask.prob,
            self.mask.length,
            self.top_k,
            self.target_norm,
            self.loss,
            self.beta,
        )
