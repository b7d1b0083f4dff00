"""The module behind the `damsm` objective."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmspec.components.objectives.runtime import ObjectiveModule, one


def _both_ways(scores: torch.Tensor, same: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy of each row and of each column against the diagonal (image j matches caption j); the pairs
    of `same` [B, B] (other examples of one class) are no negatives."""
    if same is not None:
        scores = scores.masked_fill(same, float("-inf"))  # B,B
    labels = torch.arange(scores.shape[0], device=scores.device)  # B
    return F.cross_entropy(scores, labels) + F.cross_entropy(scores.t(), labels)


class DAMSMLoss(ObjectiveModule):
    """Word loss + sentence loss of AttnGAN's DAMSM over the batch."""

    def __init__(self, gamma1: float, gamma2: float, gamma3: float, eps: float, fields: dict[str, str]):
        super().__init__()
        self.gamma1, self.gamma2, self.gamma3, self.eps, self.fields = gamma1, gamma2, gamma3, eps, fields

    def _cosine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp(min=self.eps)

    def forward(self, args, targets):
        regions, image = one(args["regions"]), one(args["image"])  # B,R,D / B,D
        words, sentence = one(args["words"], self.fields["words"]), one(args["sentence"], self.fields["sentence"])
        mask = args.get("mask")
        valid = (one(mask, self.fields["mask"]) > 0 if mask is not None
                 else torch.ones(words.shape[:2], dtype=torch.bool, device=words.device))  # B,S
        low = torch.finfo(words.dtype).min
        # image j, caption i, region q, word s
        scores = torch.einsum("jqd,isd->jiqs", regions, words)  # B,B,R,S
        scores = torch.softmax(scores.masked_fill(~valid[None, :, None], low), dim=3)  # over the caption's words
        attention = torch.softmax(self.gamma1 * scores, dim=2)  # B,B,R,S: over the regions
        context = torch.einsum("jiqs,jqd->jisd", attention, regions)  # B,B,S,D
        cosine = self._cosine(words[None], context)  # B,B,S
        relevance = torch.logsumexp((self.gamma2 * cosine).masked_fill(~valid[None], low), dim=2)  # B,B
        same = None
        if "classes" in targets:
            c = targets["classes"]  # B
            same = (c[:, None] == c[None]) & ~torch.eye(c.shape[0], dtype=torch.bool, device=c.device)  # B,B
        word_loss = _both_ways(self.gamma3 * relevance, same)
        sentences = self._cosine(image[:, None], sentence[None])  # B,B: image j vs sentence i
        return word_loss + _both_ways(self.gamma3 * sentences, same)
