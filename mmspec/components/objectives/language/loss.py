"""Losses of autoregressive language modelling and T5 span corruption."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmspec.blocks.distributed import global_mean
from mmspec.blocks.masking import t5_corrupt, t5_noise_mask
from mmspec.components.objectives.runtime import Batch, ObjectiveModule, one
from mmspec.components.objectives.supervised.loss import token_ce


class AutoregressiveLM(ObjectiveModule):
    """Next-token CE: logits at position t predict token t+1 of args["tokens"] (the modality as given). A
    position counts when the next token is not padding and, with a loss mask, when targets["loss_mask"]
    marks it. With `segment_weights`, the loss is sum_k w_k * (mean CE over the target tokens of segment k)
    (DALL-E: 1/8 text, 7/8 image; Flamingo: one weight per dataset); the segments are the tokens' segment ids, or
    with `segment_start` 0 before that position and 1 from it. CE with `label_smoothing` as in torch.
    `previous`: logits at t predict token t-1 instead (a right-to-left model); masks and segments are the
    target token's."""

    def __init__(self, segment_weights: list[float] | None, loss_mask: bool, label_smoothing: float = 0.0,
                 segment_start: int | None = None, previous: bool = False):
        super().__init__()
        self.weights, self.loss_mask, self.smoothing = segment_weights, loss_mask, label_smoothing
        self.segment_start = segment_start
        self.source, self.target = (slice(1, None), slice(None, -1)) if previous else (slice(None, -1), slice(1, None))

    def forward(self, args, targets):
        logits = args["input"]["logits"][:, self.source]  # B,S-1,V
        tokens = args["tokens"]
        nxt = tokens["ids"][:, self.target]  # B,S-1
        valid = torch.ones_like(nxt, dtype=torch.bool)
        if "mask" in tokens:
            valid &= tokens["mask"][:, self.target].bool()
        if self.loss_mask:
            valid &= targets["loss_mask"][:, self.target].bool()
        ce = F.cross_entropy(logits.flatten(0, 1), nxt.flatten(), reduction="none", label_smoothing=self.smoothing)
        ce = ce.view_as(nxt)  # B,S-1
        if not self.weights:
            return global_mean((ce * valid).sum(), valid.sum())
        if self.segment_start is None:
            seg = tokens["segments"][:, self.target]  # B,S-1
        else:
            first = self.target.start or 0  # the position of the first target token
            seg = (torch.arange(first, nxt.shape[1] + first, device=nxt.device) >= self.segment_start).long()  # S-1
        return sum(
            w * global_mean((ce * (valid & (seg == k))).sum(), (valid & (seg == k)).sum())
            for k, w in enumerate(self.weights)
        )


class SpanCorruption(ObjectiveModule):
    """T5 span corruption: noise spans of the source are replaced by sentinels (ids first_sentinel, one less
    each); the decoder modality receives the target shifted right after `decoder_start`, and the loss is CE
    of the decoder logits against the target (noise spans after their sentinels, then a final sentinel).
    Sequences are padded with `pad` (and their masks with 0); a target longer than the decoder is cut."""

    def __init__(
        self,
        src: str,
        src_mask: str | None,
        dec: str,
        dec_mask: str | None,
        density: float,
        mean_span: float,
        first_sentinel: int,
        pad: int,
        decoder_start: int,
    ):
        super().__init__()
        self.src, self.src_mask, self.dec, self.dec_mask = src, src_mask, dec, dec_mask
        self.density, self.mean_span, self.first, self.pad, self.start = (
            density,
            mean_span,
            first_sentinel,
            pad,
            decoder_start,
        )

    def corrupt(self, batch: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        ids = batch.inputs[self.src]  # B,S
        valid = batch.inputs[self.src_mask].bool() if self.src_mask else torch.ones_like(ids, dtype=torch.bool)
        t = batch.inputs[self.dec].shape[1]
        enc = torch.full_like(ids, self.pad)
        enc_mask = torch.zeros_like(ids)
        dec = torch.full((ids.shape[0], t), self.pad, dtype=ids.dtype)
        dec_mask = torch.zeros_like(dec)
        labels = torch.full_like(dec, -100)
        for row in range(ids.shape[0]):
            tokens = ids[row][valid[row]]
            if tokens.numel() < 2:
                enc[row, : tokens.numel()], enc_mask[row, : tokens.numel()] = tokens, 1
                continue
            source, target = t5_corrupt(
                tokens, t5_noise_mask(tokens.numel(), self.density, self.mean_span, g), self.first
            )
            enc[row, : source.numel()], enc_mask[row, : source.numel()] = source, 1
            target = target[:t]
            labels[row, : target.numel()] = target
            shifted = torch.cat([torch.tensor([self.start]), target[:-1]])
            dec[row, : shifted.numel()], dec_mask[row, : shifted.numel()] = shifted, 1
        batch.inputs[self.src], batch.inputs[self.dec] = enc, dec
        if self.src_mask:
            batch.inputs[self.src_mask] = enc_mask
        if self.dec_mask:
            batch.inputs[self.dec_mask] = dec_mask
        return {"labels": labels}  # B,T

    def forward(self, args, targets):
        return token_ce(one(args["input"], "logits"), targets["labels"])
