"""Input embeddings: token ids, image patches, detector regions, other nodes' sequences; MAE token dropping."""

from __future__ import annotations

import math

import torch
from torch import nn

from mmspec.blocks.activations import activation as make_activation
from mmspec.blocks.positions import SinusoidalPositions


class TokenEmbedding(nn.Module):
    """word(ids) [* sqrt(D)] [+ segment(ids)] + position(0..S-1) -> optional LayerNorm -> dropout  (BERT, CLIP
    text, GPT; the Transformer: fixed sinusoidal positions, scaled words, a word table shared with another
    embedding; `position_kind="rotary"`: no position added here, PaLM)."""

    def __init__(
        self,
        vocab: int,
        dim: int,
        positions: int,
        segments: int,
        norm: bool,
        eps: float,
        dropout: float,
        padding_idx: int | None = None,
        position_kind: str = "learned",
        scale: bool = False,
        shared: nn.Embedding | None = None,
    ):
        super().__init__()
        self.padding_idx = padding_idx
        self.word = shared if shared is not None else nn.Embedding(vocab, dim)
        learned = position_kind == "learned"
        self.position = nn.Embedding(positions, dim) if learned else SinusoidalPositions(positions, dim)
        if position_kind == "rotary":  # no table: the attention rotates queries and keys instead (PaLM)
            self.position = None
        self.segment = nn.Embedding(segments, dim) if segments else None
        self.norm = nn.LayerNorm(dim, eps=eps) if norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.scale = math.sqrt(dim) if scale else None
        own = (self.word if shared is None else None, self.position, self.segment)
        for table in own:
            if isinstance(table, nn.Embedding):
                nn.init.normal_(table.weight, std=0.02)  # BERT/CLIP initialisation scale

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None, offset=None) -> torch.Tensor:
        """ids [B, S] -> [B, S, D]; `offset` (an int or a tensor size: the cached positions of a decoding step)
        shifts the positions to offset..offset+S-1."""
        if self.padding_idx is None:
            pos = torch.arange(ids.shape[1], device=ids.device)  # S
            pos = pos if offset is None else pos + offset  # S
        else:  # RoBERTa (fairseq make_positions): real tokens count from padding_idx + 1, padding stays put
            keep = (ids != self.padding_idx).to(ids.dtype)  # B,S
            pos = torch.cumsum(keep, dim=1) * keep + self.padding_idx  # B,S
        # Summed in transformers' order (word, segment, position), so imported BERTs match it bit for bit.
        x = self.word(ids)  # B,S,D
        if self.scale is not None:
            x = x * self.scale  # B,S,D
        if self.segment is not None:
            x = x + self.segment(segments if segments is not None else torch.zeros_like(ids))  # B,S,D
        if self.position is not None:
            position = self.position(pos)  # S,D (B,S,D with padding_idx)
            x = x + (position[None] if self.padding_idx is None else position)  # B,S,D
        return self.dropout(self.norm(x))


class PatchEmbedding(nn.Module):
    """Conv patchify [B,C,H,W] -> [B,N,D], prepend a class token, add learned positions, pre-norm (CLIP)."""

    def __init__(
        self,
        channels: int,
        dim: int,
        patch: int,
        num_patches: int,
        bias: bool,
        cls_token: bool,
        norm: bool,
        eps: float,
        dropout: float,
        mask_token: bool = False,
        *,
        positions: bool = True,
    ):
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch, patch, bias=bias)
        self.cls = nn.Parameter(torch.randn(dim) * 0.02) if cls_token else None
        # FLAVA/BEiT's learned [MASK] patch, which masked image modelling writes over masked patches while training.
        self.mask_token = nn.Parameter(torch.zeros(dim)) if mask_token else None
        # positions=False: no absolute positions (BEiT, data2vec vision: relative position biases instead)
        self.position = nn.Parameter(torch.randn(num_patches + int(cls_token), dim) * 0.02) if positions else None
        self.norm = nn.LayerNorm(dim, eps=eps) if norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.proj(pixels).flatten(2).transpose(1, 2)  # B,N,D
        if self.cls is not None:
            cls = self.cls.expand(x.shape[0], 1, -1)  # B,1,D
            x = torch.cat([cls, x], dim=1)  # B,N+1,D
        if self.position is not None:
            x = x + self.position  # B,N+1,D
        return self.dropout(self.norm(x))


class RegionEmbedding(nn.Module):
    """Linear(features) [+ Linear(boxes)] [+ position] [+ segment] -> LayerNorm (ViLBERT) or not -> dropout.

    `positions`: a learned table; regions take rows 0..R-1 (`position_ids` "index") or all row 0 ("zero",
    VisualBERT without image-text alignment). `segments`: a table whose row `segment` every region adds
    (VisualBERT's visual token type 1). `activation`: applied to the projected regions (AoANet's ReLU)."""

    def __init__(
        self,
        feature_dim: int,
        box_dim: int,
        dim: int,
        eps: float,
        dropout: float,
        norm: bool = True,
        positions: int = 0,
        position_ids: str = "index",
        segments: int = 0,
        segment: int = 0,
        activation: str = "identity",
    ):
        super().__init__()
        self.features = nn.Linear(feature_dim, dim)
        self.act = make_activation(activation) if activation != "identity" else None
        self.boxes = nn.Linear(box_dim, dim) if box_dim else None
        if positions:
            self.position = nn.Embedding(positions, dim)
            nn.init.normal_(self.position.weight, std=0.02)
        if segments:
            self.segment = nn.Embedding(segments, dim)
            nn.init.normal_(self.segment.weight, std=0.02)
        self.norm = nn.LayerNorm(dim, eps=eps) if norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.positions, self.position_ids, self.segments, self.segment_id = positions, position_ids, segments, segment

    def forward(self, features: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        x = self.features(features)  # B,R,D
        if self.boxes is not None:
            x = x + self.boxes(boxes)  # B,R,D
        if self.act is not None:
            x = self.act(x)  # B,R,D
        if self.positions and self.position_ids == "zero":
            x = x + self.position.weight[0]  # B,R,D
        elif self.positions:
            x = x + self.position(torch.arange(x.shape[1], device=x.device))  # B,R,D
        if self.segments:
            x = x + self.segment.weight[self.segment_id]  # B,R,D
        return self.dropout(self.norm(x))


class SequenceEmbedding(nn.Module):
    """Another node's sequence [B, L, Din]: Linear(Din -> D) when the widths differ, then (MAE decoder) a learned
    mask token at every dropped position and the original order restored, learned positions, LayerNorm,
    dropout. `prefix`: leading tokens (class token) that `restore` does not cover. `cls_token`: a learned token
    prepended before the positions (FLAVA's [CLS_M]); `project`: the Linear even at equal widths."""

    def __init__(
        self,
        in_dim: int,
        dim: int,
        positions: int,
        norm: bool,
        eps: float,
        dropout: float,
        mask_token: bool = False,
        prefix: int = 0,
        cls_token: bool = False,
        project: bool = False,
    ):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim) if in_dim != dim or project else None
        self.cls = nn.Parameter(torch.randn(dim) * 0.02) if cls_token else None
        self.mask_token = nn.Parameter(torch.randn(dim) * 0.02) if mask_token else None
        self.position = nn.Parameter(torch.randn(positions, dim) * 0.02) if positions else None
        self.norm = nn.LayerNorm(dim, eps=eps) if norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.prefix = prefix

    def forward(self, x: torch.Tensor, restore: torch.Tensor | None = None, offset=None) -> torch.Tensor:
        """x [B, L, Din] -> [B, S, D]; `offset` (the cached positions of a decoding step) shifts the positions."""
        if self.proj is not None:
            x = self.proj(x)  # B,L,D
        if self.mask_token is not None:
            # Kept tokens first, then one mask token per position: restore[b, j] < kept count picks a kept token,
            # anything larger a mask token (MAE's unshuffle, without a zero-length tensor at eval).
            fill = self.mask_token.expand(x.shape[0], restore.shape[1], -1)  # B,N,D
            pool = torch.cat([x[:, self.prefix :], fill], dim=1)  # B,k+N,D
            index = restore.unsqueeze(-1).expand(-1, -1, x.shape[2])  # B,N,D
            restored = torch.gather(pool, 1, index)  # B,N,D
            x = torch.cat([x[:, : self.prefix], restored], dim=1) if self.prefix else restored  # B,P+N,D
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], 1, -1), x], dim=1)  # B,1+L,D
        if self.position is not None and offset is None:
            x = x + self.position[: x.shape[1]]  # B,S,D
        elif self.position is not None:
            x = x + self.position[offset : offset + x.shape[1]]  # B,S,D
        return self.dropout(self.norm(x))


def drop_tokens(
    x: torch.Tensor, prefix: int, tokens: int, keep: int, training: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE random masking of the `tokens` tokens after `prefix` leading ones (class token) of x [B, P+N, D].

    Training: keep `keep` random tokens per example (global RNG: reproducible under torch.manual_seed), in the
    order of the draw. Eval: keep every token. Returns (x [B, P+keep, D] or x, restore [B, N] int64: the index in
    the kept-then-dropped order of each original token, dropped [B, N] int64: 1 = dropped)."""
    if not training:
        restore = torch.arange(tokens, device=x.device).expand(x.shape[0], -1)  # B,N
        return x, restore, torch.zeros_like(restore)
    noise = torch.rand_like(x[:, prefix:, 0])  # B,N  (rand_like: a draw shaped by a tensor, so fx can trace it)
    shuffle = torch.argsort(noise, dim=1)  # B,N
    restore = torch.argsort(shuffle, dim=1)  # B,N
    index = shuffle[:, :keep].unsqueeze(-1).expand(-1, -1, x.shape[2])  # B,keep,D
    kept = torch.gather(x[:, prefix:], 1, index)  # B,keep,D
    x = torch.cat([x[:, :prefix], kept], dim=1) if prefix else kept  # B,P+keep,D
    return x, restore, (restore >= keep).long()
