"""Input embeddings: token ids, image patches, detector regions."""

from __future__ import annotations

import torch
from torch import nn


class TokenEmbedding(nn.Module):
    """word(ids) [+ segment(ids)] + position(0..S-1) -> optional LayerNorm -> dropout  (BERT, CLIP text)."""

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
    ):
        super().__init__()
        self.padding_idx = padding_idx
        self.word = nn.Embedding(vocab, dim)
        self.position = nn.Embedding(positions, dim)
        self.segment = nn.Embedding(segments, dim) if segments else None
        self.norm = nn.LayerNorm(dim, eps=eps) if norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        for table in (self.word, self.position, self.segment):
            if table is not None:
                nn.init.normal_(table.weight, std=0.02)  # BERT/CLIP initialisation scale

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        if self.padding_idx is None:
            pos = torch.arange(ids.shape[1], device=ids.device)  # S
        else:  # RoBERTa (fairseq make_positions): real tokens count from padding_idx + 1, padding stays put
            keep = (ids != self.padding_idx).to(ids.dtype)  # B,S
            pos = torch.cumsum(keep, dim=1) * keep + self.padding_idx  # B,S
        # Summed in transformers' order (word, segment, position), so imported BERTs match it bit for bit.
        x = self.word(ids)  # B,S,D
        if self.segment is not None:
            x = x + self.segment(segments if segments is not None else torch.zeros_like(ids))  # B,S,D
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
    ):
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch, patch, bias=bias)
        self.cls = nn.Parameter(torch.randn(dim) * 0.02) if cls_token else None
        self.position = nn.Parameter(torch.randn(num_patches + int(cls_token), dim) * 0.02)
        self.norm = nn.LayerNorm(dim, eps=eps) if norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.proj(pixels).flatten(2).transpose(1, 2)  # B,N,D
        if self.cls is not None:
            cls = self.cls.expand(x.shape[0], 1, -1)  # B,1,D
            x = torch.cat([cls, x], dim=1)  # B,N+1,D
        return self.dropout(self.norm(x + self.position))


class RegionEmbedding(nn.Module):
    """LN(Linear(features) [+ Linear(boxes)]) -> dropout: detector regions with box geometry (ViLBERT)."""

    def __init__(self, feature_dim: int, box_dim: int, dim: int, eps: float, dropout: float):
        super().__init__()
        self.features = nn.Linear(feature_dim, dim)
        self.boxes = nn.Linear(box_dim, dim) if box_dim else None
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        x = self.features(features)  # B,R,D
        if self.boxes is not None:
            x = x + self.boxes(boxes)  # B,R,D
        return self.dropout(self.norm(x))
