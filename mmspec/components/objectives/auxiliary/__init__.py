"""Auxiliary objectives and training-time parts (training-only): MoE load balancing, reconstruction (masked
patches, L1) and modality dropout."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.objectives.base import (
    LOSS,
    Objective,
    field_of,
    input_names,
    require_rank,
    same_shape,
    tensor,
)
from mmspec.registry import Example, register
from mmspec.spec.base import Name, PositiveInt, Probability, Ref, StrictModel
from mmspec.spec.suggest import suggestion_text
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_SEQ = {"s": {"type": "sequence", "dim": 6, "length": "seq", "max_length": 8}}
_X = {"x": {"type": "vector", "dim": 6}}
MOE_EXAMPLES = (
    Example(  # Switch-style top-2 routing of every position to 4 experts
        _SEQ,
        {"input": "router", "top_k": 2},
        {"heads": {"router": {"type": "token_classifier", "input": "s", "num_classes": 4, "transform": False}}},
        name="switch",
    ),
    Example(  # per-example router logits [batch, experts]
        _X,
        {"input": "router", "kind": "importance"},
        {"heads": {"router": {"type": "classifier", "input": "x", "num_classes": 4}}},
        name="importance",
    ),
)
RECONSTRUCTION_EXAMPLES = (
    Example(
        _X,
        {"input": "recon", "target": "x"},
        {"heads": {"recon": {"type": "mlp", "input": "x", "hidden": [8], "dim": 6}}},
        name="mse",
    ),
    Example(  # MAE: half of the 4x4 patches masked, per-patch pixels predicted, normalised targets, L1
        {"image": {"type": "image", "channels": 1, "height": 8, "width": 8}},
        {"input": "pixels", "target": "image", "loss": "l1", "mask": {"ratio": 0.5, "patch": 4}, "normalize": True},
        {
            "encoders": {
                "vit": {
                    "type": "transformer",
                    "input": "image",
                    "embed": {"type": "patches", "patch_size": 4, "class_token": False},
                    "width": 8,
                    "layers": 1,
                    "heads": 2,
                    "ffn": 16,
                }
            },
            "heads": {"pixels": {"type": "token_classifier", "input": "vit.sequence", "num_classes": 16}},
        },
        name="masked_patches",
    ),
    Example(  # MAE: the encoder drops 3 of 4 patches while training; only those count, class token left out
        {"image": {"type": "image", "channels": 1, "height": 8, "width": 8}},
        {"input": "pixels", "target": "image", "dropped": "dec.dropped", "normalize": True},
        {
            "encoders": {
                "enc": {"type": "transformer", "input": "image", "embed": {"type": "patches", "patch_size": 4},
                        "width": 8, "layers": 1, "heads": 2, "ffn": 16, "norm": "pre", "drop": {"ratio": 0.75}},
                "dec": {"type": "transformer", "input": "enc", "embed": {"type": "sequence", "positions": 5,
                                                                         "mask_token": True},
                        "width": 4, "layers": 1, "heads": 2, "ffn": 8, "norm": "pre", "training_only": True},
            },
            "heads": {"pixels": {"type": "mlp", "input": "dec.sequence", "dim": 16, "training_only": True}},
        },
        outputs=["enc.sequence"],
        name="dropped_tokens",
    ),
)
MODALITY_DROPOUT_EXAMPLES = (
    Example(  # a part without a loss: cross-entropy trains the classifier on what is left
        {"a": {"type": "vector", "dim": 6}, "b": {"type": "vector", "dim": 5}},
        {"modalities": ["a", "b"], "prob": 0.5},
        {
            "fusion": {"both": {"type": "concat", "inputs": ["a", "b"]}},
            "heads": {"cls": {"type": "classifier", "input": "both.fused", "num_classes": 3}},
            "objectives": {"ce": {"type": "cross_entropy", "input": "cls"}},
        },
    ),
)


@register("objectives", training_only=True, examples=MOE_EXAMPLES)
class MoELoadBalancing(Objective):
    """Load-balancing auxiliary loss on router logits [..., experts] (LIMoE, Switch, MultiModel): `switch`
    E * sum_e f_e P_e (f: fraction of tokens sent to e by top-k routing, P: mean router probability), or
    `importance`, the squared coefficient of variation of the experts' summed probabilities."""

    type: Literal["moe_load_balancing"]
    input: Ref
    kind: Literal["switch", "importance"] = "switch"
    """`switch`: E * sum_e f_e P_e; `importance`: the squared coefficient of variation of the experts' load."""
    top_k: PositiveInt = 1
    """Experts each token is routed to (for the fraction f_e of `switch`)."""

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        logits = require_rank(
            tensor(inputs, "input", self.input, "logits"), (2, 3), "input", "router logits", self.input
        )
        if isinstance(logits.width, int) and self.top_k > logits.width:
            raise CheckError("top_k", f"top_k {self.top_k} exceeds the {logits.width} experts of {self.input!r}")
        return LOSS

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.auxiliary.loss import MoELoadBalancing as Module

        return Module(self.kind, self.top_k)


class PatchMask(StrictModel):
    """Mask `ratio` of the image's `patch` x `patch` patches in the student's input (zeros); the loss counts only
    those patches (MAE, SimMIM)."""

    ratio: Probability = 0.75
    patch: PositiveInt = 16


@register("objectives", training_only=True, examples=RECONSTRUCTION_EXAMPLES)
class Reconstruction(Objective):
    """Reconstruction loss, `mse` or `l1`, averaged over elements (MultiMAE: mse on RGB, l1 on depth). With
    `mask`, the `target` image is masked in the student's input and the loss counts only masked patches; the
    prediction is then the image [batch, C, H, W] or per-patch pixels [batch, patches, patch*patch*C]. With
    `dropped` (MAE), the patches a `drop` encoder left out count instead, the input is not altered, and the
    prediction is per-patch pixels, optionally after one class token; `normalize` standardises each target patch
    (MAE norm_pix_loss)."""

    type: Literal["reconstruction"]
    input: Ref
    target: Ref
    """What is reconstructed (a modality: the data before masking, or a node's output)."""
    loss: Literal["mse", "l1"] = "mse"
    """`mse` or `l1`, averaged over elements."""
    mask: PatchMask | None = None
    """Masking of the target image's patches in the student's input; null: no masking."""
    dropped: Ref | None = None
    """A node's int64 [batch, patches] tensor, 1 where the model did not see the patch (a transformer's `dropped`
    with `drop:`, or its decoder's); the patch size follows from the prediction's width. Not with `mask`."""
    normalize: bool = False
    """true: standardise each target patch by its own mean and variance (MAE's norm_pix_loss)."""
    ref_fields = ("input", "target", "dropped")

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        pred, target = tensor(inputs, "input", self.input), tensor(inputs, "target", self.target, field="target")
        if self.mask is not None and self.dropped is not None:
            raise CheckError("dropped", "`mask` zeroes patches in the input and `dropped` reads the patches a model "
                                        "left out; keep one of them")
        if self.mask is None and self.dropped is None:
            if self.normalize:
                raise CheckError("normalize", "normalize applies to masked patches; set `mask:` or `dropped:`, or "
                                              "remove it")
            same_shape(target, pred, "input", self.target, self.input)
            return LOSS
        node = self.target.split(".")[0]
        if node not in ctx.spec.modalities or ctx.spec.modalities[node].type != "image":
            raise CheckError(
                "target", f"masked reconstruction needs an image modality as target; {self.target!r} is not one"
            )
        b, c, h, w = target.shape
        if self.dropped is not None:
            self._check_dropped(pred, target, tensor(inputs, "dropped", self.dropped))
            return LOSS
        p = self.mask.patch
        if h % p or w % p:
            raise CheckError(("mask", "patch"), f"mask.patch {p} does not divide the image size {h}x{w}")
        per_patch = TensorInfo((b, (h // p) * (w // p), p * p * c))
        if pred.shape not in (target.shape, per_patch.shape):
            raise CheckError(
                "input",
                f"the prediction {list(pred.shape)} of {self.input!r} must be the image "
                f"{list(target.shape)} or per-patch pixels {list(per_patch.shape)}",
            )
        return LOSS

    def _check_dropped(self, pred: TensorInfo, target: TensorInfo, dropped: TensorInfo) -> None:
        """`dropped` [batch, N] int64; the prediction [batch, N or 1 + N, p*p*C] with (H/p)(W/p) = N."""
        _, c, h, w = target.shape
        if dropped.rank != 2 or dropped.dtype != "int64":
            raise CheckError("dropped", f"needs an int64 [batch, patches] tensor from {self.dropped!r}, which is "
                                        f"{dropped.dtype} {list(dropped.shape)}")
        n = dropped.shape[1]
        if pred.rank != 3 or pred.shape[1] not in (n, 1 + n if isinstance(n, int) else None):
            raise CheckError("input", f"the prediction {list(pred.shape)} of {self.input!r} must be per-patch pixels "
                                      f"[batch, {n} (or 1 + {n} with a class token), patch*patch*{c}]")
        p = math.isqrt(pred.shape[2] // c)
        if p * p * c != pred.shape[2] or h % p or w % p or (h // p) * (w // p) != n:
            raise CheckError("input", f"the prediction's width {pred.shape[2]} is not patch*patch*{c} for a patch "
                                      f"size that cuts the {h}x{w} image into the {n} patches of {self.dropped!r}")

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.auxiliary.loss import Reconstruction as Module

        image = None
        if self.mask is not None:
            image = input_names(ctx.spec, self.target.split(".")[0])["pixels"]
        m = self.mask or PatchMask()
        if self.dropped is not None:
            pred, c = tensor(inputs, "input", self.input), inputs["target"][field_of(inputs, "target", "pixels")]
            skip = pred.shape[1] - tensor(inputs, "dropped", self.dropped).shape[1]
            return Module(self.loss, None, m.ratio, math.isqrt(pred.shape[2] // c.shape[1]), self.normalize, skip)
        return Module(self.loss, image, m.ratio, m.patch, self.normalize)


@register("objectives", training_only=True, examples=MODALITY_DROPOUT_EXAMPLES)
class ModalityDropout(Objective):
    """Multimodal dropout (Cheerla & Gevaert 2019): each of `modalities` is dropped for a `prob` fraction of
    examples, never all of them for one example; a dropped modality has zero features, zero mask and pad ids.
    A training-time part without a loss (it emits nothing)."""

    type: Literal["modality_dropout"]
    modalities: Annotated[list[Name], Field(min_length=1)]
    """The modalities that may be dropped."""
    prob: Probability = 0.25
    """Fraction of examples for which each modality is dropped."""
    pad: Annotated[int, Field(ge=0)] = 0
    """Token id that fills a dropped tokens modality."""
    ref_fields = ()

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        if {"weight", "updates"} & self.model_fields_set:
            raise CheckError("weight", "modality_dropout has no loss; remove `weight` and `updates`")
        for i, name in enumerate(self.modalities):
            if name not in ctx.spec.modalities:
                raise CheckError(
                    ("modalities", i), f"{name!r} is not a modality{suggestion_text(name, ctx.spec.modalities)}"
                )
        return {}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.auxiliary.loss import ModalityDropout as Module

        fills = [
            {name: (self.pad if fld == "ids" else 0) for fld, name in input_names(ctx.spec, m).items()}
            for m in self.modalities
        ]
        return Module(fills, self.prob)
