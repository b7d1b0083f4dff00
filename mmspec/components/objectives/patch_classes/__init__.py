"""Masked per-patch classification (MultiMAE's semantic-segmentation loss): cross-entropy of per-patch class
logits against a class map, over the pixels of the patches the encoder did not see (training-only)."""

from __future__ import annotations

import math
from typing import Literal

from mmspec.components.objectives.base import LOSS, Objective, tensor
from mmspec.registry import Example, register
from mmspec.spec.base import Ref
from mmspec.spec.tensors import Bundle, CheckError

_ENCODER = {"type": "multimae", "inputs": {"rgb": "rgb", "seg": "seg"}, "patch_size": 2, "class_dim": 4,
            "visible": 4, "width": 8, "layers": 1, "heads": 2, "ffn": 16}
PATCH_CROSS_ENTROPY_EXAMPLES = (
    Example(  # a 16 x 16 map of 5 classes on a 4 x 4 grid: 4 x 4 pixels x 5 logits per patch
        {"rgb": {"type": "image", "channels": 3, "height": 8, "width": 8},
         "seg": {"type": "tokens", "vocab_size": 5, "length": 256, "max_length": 256}},
        {"input": "dec.pixels", "target": "seg", "dropped": "dec.dropped"},
        {"encoders": {"enc": _ENCODER},
         "heads": {"dec": {"type": "multimae_decoder", "input": "enc", "domain": "seg", "dim": 80, "width": 4,
                           "layers": 0, "heads": 1, "ffn": 8, "training_only": True}}},
        outputs=["enc.sequence"],
    ),
)


@register("objectives", training_only=True, examples=PATCH_CROSS_ENTROPY_EXAMPLES)
class PatchCrossEntropy(Objective):
    """`input`: logits [batch, N, p*p*K] per patch of a square g x g grid, in (row, column, class) order;
    `target`: a tokens modality holding the class map (g p) x (g p) row by row, ids in [0, K); `dropped`
    [batch, N] int64, 1 where the patch counts. Loss: the mean cross-entropy over the pixels of the counted patches."""

    type: Literal["patch_cross_entropy"]
    input: Ref
    target: Ref
    """The tokens modality with the class map, row by row."""
    dropped: Ref
    """[batch, N] int64 flags of the patches that count (1: left out of the encoder's input)."""
    ref_fields = ("input", "target", "dropped")

    def _sizes(self, inputs: dict[str, Bundle], ctx) -> tuple[int, int]:
        """(classes K, patch side p)."""
        pred = tensor(inputs, "input", self.input)
        ids = tensor(inputs, "target", self.target, "ids", "target")
        dropped = tensor(inputs, "dropped", self.dropped)
        node = self.target.split(".")[0]
        modality = ctx.spec.modalities.get(node)
        if modality is None or modality.type != "tokens" or ids.rank != 2 or not isinstance(ids.shape[1], int):
            raise CheckError("target", f"{self.target!r} must be a tokens modality of fixed length (a class map)")
        if pred.rank != 3 or dropped.rank != 2 or dropped.dtype != "int64" or pred.shape[:2] != dropped.shape:
            raise CheckError("input", f"needs logits [batch, N, p*p*K] and `dropped` [batch, N] int64; got "
                                      f"{list(pred.shape)} and {dropped.dtype} {list(dropped.shape)}")
        k = modality.vocab_size
        p = math.isqrt(pred.shape[2] // k) if pred.shape[2] % k == 0 else 0
        side = math.isqrt(pred.shape[1]) if isinstance(pred.shape[1], int) else 0
        if side * side != pred.shape[1]:
            raise CheckError("input", f"the {pred.shape[1]} patches of {self.input!r} must form a square grid")
        if not p or p * p * k != pred.shape[2] or ids.shape[1] != pred.shape[1] * p * p:
            raise CheckError("input", f"the logits' width {pred.shape[2]} must be p*p*{k} (the classes of "
                                      f"{node!r}) with {pred.shape[1]} patches of p*p pixels covering its "
                                      f"{ids.shape[1]} ids")
        return k, p

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        self._sizes(inputs, ctx)
        return LOSS

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.patch_classes.loss import PatchCrossEntropy as Module

        k, p = self._sizes(inputs, ctx)
        return Module(k, p, math.isqrt(tensor(inputs, "input", self.input).shape[1]))
