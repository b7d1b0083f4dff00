"""Losses of the supervised objectives: classification, masked LM, region KL, alignment, InfoNCE."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mmspec.blocks.distributed import gather_rows, global_mean
from mmspec.blocks.masking import bernoulli, bert_mask
from mmspec.components.objectives.runtime import Batch, ObjectiveModule


class CrossEntropyLoss(ObjectiveModule):
    """Mean CE of logits [B, C] or [B, S, C] against targets["labels"] [B] or [B, S] class ids (-100: no
    label), with label smoothing. (The other objectives' modules are in losses_*.py, by family.)"""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, args: dict[str, dict[str, torch.Tensor]], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = args["input"]["logits"]  # B,C or B,S,C
        return F.cross_entropy(logits.flatten(0, -2), targets["labels"].flatten(), ignore_index=-100,
                               label_smoothing=self.label_smoothing)


def token_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over positions whose label is not -100, across all processes. logits [..., V]."""
    total = F.cross_entropy(logits.flatten(0, -2), labels.flatten(), ignore_index=-100, reduction="sum")
    return global_mean(total, (labels != -100).sum())


class MaskedLM(ObjectiveModule):
    """BERT masked LM: `corrupt` masks the token ids (80/10/10); the loss is CE at the chosen positions."""

    def __init__(
        self, ids: str, mask: str | None, prob: float, mask_token: int, vocab: int, random_prob: float, keep_prob: float
    ):
        super().__init__()
        self.ids, self.mask, self.prob, self.mask_token, self.vocab = ids, mask, prob, mask_token, vocab
        self.random_prob, self.keep_prob = random_prob, keep_prob

    def corrupt(self, batch: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        ids = batch.inputs[self.ids]  # B,S
        valid = batch.inputs[self.mask] if self.mask else torch.ones_like(ids)
        batch.inputs[self.ids], labels = bert_mask(
            ids, valid, self.prob, self.mask_token, self.vocab, g, self.random_prob, self.keep_prob
        )
        return {"labels": labels}  # B,S

    def forward(self, args, targets):
        return token_ce(args["input"]["logits"], targets["labels"])  # logits B,S,V


class MaskedRegionKL(ObjectiveModule):
    """ViLBERT masked multimodal modelling on regions: `prob` of the valid regions are chosen, `zero_prob` of
    those get zero features; the loss is KL(detector distribution || predicted) averaged over chosen regions."""

    def __init__(self, features: str, mask: str | None, prob: float, zero_prob: float):
        super().__init__()
        self.features, self.mask, self.prob, self.zero_prob = features, mask, prob, zero_prob

    def corrupt(self, batch: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        x = batch.inputs[self.features]  # B,R,F
        chosen = bernoulli(x.shape[:2], self.prob, g)  # B,R
        if self.mask:
            chosen &= batch.inputs[self.mask].bool()
        zero = chosen & bernoulli(x.shape[:2], self.zero_prob, g)
        batch.inputs[self.features] = x.masked_fill(zero[..., None], 0.0)
        return {"masked": chosen}

    def forward(self, args, targets):
        p = targets["distribution"]  # B,R,C
        logq = F.log_softmax(args["input"]["logits"], dim=-1)  # B,R,C
        kl = (torch.xlogy(p, p) - p * logq).sum(-1)  # B,R
        masked = targets["masked"].to(kl.dtype)
        return global_mean((kl * masked).sum(), masked.sum())


class Alignment(CrossEntropyLoss):
    """Image-text alignment (ITM, ViLBERT/LXMERT): with probability `prob` an example's `names` inputs (one
    modality) are replaced by another example's; the head predicts 1 = matched, 0 = mismatched."""

    def __init__(self, names: list[str], prob: float):
        super().__init__()
        self.names, self.prob = names, prob

    def corrupt(self, batch: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        b = batch.size
        negative = bernoulli((b,), self.prob, g) if b > 1 else torch.zeros(b, dtype=torch.bool)
        shift = torch.randint(1, max(b, 2), (b,), generator=g)  # another row, never the same one
        source = torch.where(negative, (torch.arange(b) + shift) % b, torch.arange(b))  # B
        for name in self.names:
            batch.inputs[name] = batch.inputs[name][source]
        return {"labels": (~negative).long()}  # B


class SymmetricInfoNCE(ObjectiveModule):
    """CLIP's loss: with a = norm(emb_a), b = norm(emb_b) and s = exp(logit_scale),
    (CE(s a b_all^T, i) + CE(s b a_all^T, i)) / 2 where b_all gathers every process's rows and i is the row's
    global index. `logit_scale` is the contrastive head's parameter, clamped to ln(max_scale) after each step.
    With `divide` the parameter is ALIGN's temperature t (s = 1 / t, t kept >= 1 / max_scale); the
    cross-entropies smooth their labels by `label_smoothing`."""

    def __init__(self, a: str, b: str, logit_scale: torch.nn.Parameter, max_scale: float | None,
                 divide: bool = False, label_smoothing: float = 0.0):
        super().__init__()
        self.a, self.b, self.max_scale = a, b, max_scale
        self._scale = [logit_scale]  # the head's parameter (not registered twice)
        self.divide, self.label_smoothing = divide, label_smoothing
        self.negatives = 0
        """Negatives per example in the last call (K*B - 1 with K processes of B rows)."""

    def forward(self, args, targets):
        head = args["input"]
        a, b = head[f"{self.a}_embeds"], head[f"{self.b}_embeds"]  # B,D (unit norm)
        all_a, offset = gather_rows(a)  # K*B,D
        all_b, _ = gather_rows(b)
        scale = 1.0 / self._scale[0] if self.divide else self._scale[0].exp()
        labels = torch.arange(a.shape[0], device=a.device) + offset  # B
        logits_a, logits_b = scale * a @ all_b.t(), scale * b @ all_a.t()  # B,K*B
        self.negatives = logits_a.shape[1] - 1
        smooth = self.label_smoothing
        return (F.cross_entropy(logits_a, labels, label_smoothing=smooth)
                + F.cross_entropy(logits_b, labels, label_smoothing=smooth)) / 2

    @torch.no_grad()
    def after_step(self, step: int, total: int) -> None:
        if self.max_scale is None:
            return
        if self.divide:
            self._scale[0].clamp_(min=1.0 / self.max_scale)
        else:
            self._scale[0].clamp_(0.0, math.log(self.max_scale))
