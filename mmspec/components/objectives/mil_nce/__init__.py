"""MIL-NCE (Miech et al. 2020; VATT's video-text loss): a clip's several nearby captions are all positives."""

from __future__ import annotations

from typing import Literal

from mmspec.components.objectives.base import LOSS, Objective, require_rank, tensor
from mmspec.registry import Example, register
from mmspec.spec.base import PositiveFloat, Ref
from mmspec.spec.tensors import Bundle, CheckError

MIL_NCE_EXAMPLES = (
    Example(  # a clip vector and 3 caption vectors per clip, both embedded in 4 dimensions
        {"clip": {"type": "vector", "dim": 6}, "captions": {"type": "sequence", "dim": 5, "length": 3}},
        {"video": "v", "text": "t"},
        {"heads": {"v": {"type": "mlp", "input": "clip", "dim": 4},
                   "t": {"type": "mlp", "input": "captions", "dim": 4}}},
    ),
)


@register("objectives", training_only=True, examples=MIL_NCE_EXAMPLES)
class MILNCE(Objective):
    """Multiple-instance NCE between clip embeddings [batch, D] and the embeddings of each clip's K captions
    [batch, K, D], both L2-normalised, similarities divided by `temperature`. For clip i the positives are its K
    captions; the denominator sums over every (clip i, caption of any clip) and every (any clip, caption of i)
    pair (the positives in both, as the official implementation): loss_i = logsumexp(all those) -
    logsumexp(positives), averaged over the batch. No data targets."""

    type: Literal["mil_nce"]
    video: Ref
    """Clip embeddings [batch, D]."""
    text: Ref
    """Caption embeddings [batch, K, D]: the K captions nearest in time to each clip."""
    temperature: PositiveFloat = 0.07
    """Fixed softmax temperature (VATT: 0.07)."""
    ref_fields = ("video", "text")

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        v = require_rank(tensor(inputs, "video", self.video), 2, "video", "clip embeddings [batch, D]", self.video)
        t = require_rank(tensor(inputs, "text", self.text), 3, "text", "caption embeddings [batch, K, D]", self.text)
        if (t.shape[0], t.shape[2]) != (v.shape[0], v.shape[1]):
            raise CheckError("text", f"{self.text!r} has shape {list(t.shape)} but {self.video!r} has "
                                     f"{list(v.shape)}; the captions need the clips' batch axis and width")
        return LOSS

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.mil_nce.loss import MILNCELoss

        return MILNCELoss(self.temperature)
