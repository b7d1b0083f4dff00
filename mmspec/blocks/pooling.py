"""Sequence -> vector pooling (cls, eos, masked mean) with optional norm and dense layer; attention pooling of a
feature map (CLIP's modified ResNet, ADM's noisy-image classifier); softmax-score pooling of a sequence (Imagen)."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.activations import activation


class Pool(nn.Module):
    """Sequence [B, S, D] -> vector [B, D'] by cls / eos / mean, then optional LayerNorm, dense, activation."""

    def __init__(
        self, kind: str, dim: int, norm: bool, eps: float, dense: int | None, act: str, eos_id: int | None = None,
        skip: int = 0,
    ):
        super().__init__()
        self.kind = kind
        self.skip = skip
        """`mean` only: leading tokens left out of the mean (BEiT, data2vec vision: the class token)."""
        self.eos_id = eos_id
        self.norm = nn.LayerNorm(dim, eps=eps) if norm else nn.Identity()
        self.dense = nn.Linear(dim, dense) if dense else nn.Identity()
        self.act = activation(act)

    def forward(self, seq: torch.Tensor, ids: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "cls":
            pooled = seq[:, 0]  # B,D
        elif self.kind == "eos":
            rows = torch.arange(seq.shape[0], device=seq.device)  # B
            if self.eos_id is None:
                at = ids.argmax(dim=-1)  # B  (original CLIP: the highest id is the end-of-text token)
            else:
                at = (ids == self.eos_id).to(torch.int32).argmax(dim=-1)  # B  first eos, 0 when there is none
            pooled = seq[rows, at]  # B,D
        elif self.skip:
            pooled = seq[:, self.skip:].mean(1)  # B,D
        elif mask is not None:
            keep = mask.type_as(seq).unsqueeze(-1)  # B,S,1
            pooled = (seq * keep).sum(1) / keep.sum(1).clamp_min(1.0)  # B,D
        else:
            pooled = seq.mean(1)  # B,D
        return self.act(self.dense(self.norm(pooled)))


def make_pool(pool, width: int, eps: float) -> Pool | None:
    if not pool:
        return None
    return Pool(pool.type, width, pool.norm, eps, pool.dense, pool.activation, pool.eos_id,
                getattr(pool, "skip", 0))


def stream_bundle(streams: dict[str, tuple[torch.Tensor, torch.Tensor | None, Pool | None]]) -> dict[str, torch.Tensor]:
    """The output of a two-stream fusion: per stream name -> (sequence [B,S,D], mask [B,S] or None, pool or None),
    the sequence, `<name>_mask` when there is a mask and `<name>_pooled` [B,D] when the stream pools."""
    out = {name: seq for name, (seq, _, _) in streams.items()}
    out |= {f"{name}_mask": mask for name, (_, mask, _) in streams.items() if mask is not None}
    out |= {f"{name}_pooled": pool(seq, None, mask) for name, (seq, mask, pool) in streams.items()  # B,D
            if pool is not None}
    return out


class AttentionPool(nn.Module):
    """Feature map [B, C, H, W] -> [B, output]: one multi-head attention whose query is the mean feature (plus a
    learned position); keys/values: the mean and every position."""

    def __init__(self, positions: int, dim: int, heads: int, output: int):
        super().__init__()
        self.position = nn.Parameter(torch.randn(positions + 1, dim) / dim**0.5)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, output)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2)  # B,HW,C
        x = torch.cat([x.mean(1, keepdim=True), x], dim=1) + self.position  # B,1+HW,C
        b, n, c = x.shape
        d = c // self.heads
        q = self.q(x[:, :1]).reshape(b, 1, self.heads, d).transpose(1, 2)  # B,h,1,d
        k = self.k(x).reshape(b, n, self.heads, d).transpose(1, 2)  # B,h,N,d
        v = self.v(x).reshape(b, n, self.heads, d).transpose(1, 2)  # B,h,N,d
        weights = torch.softmax(q @ k.transpose(-1, -2) * d**-0.5, dim=-1)  # B,h,1,N
        return self.out((weights @ v).transpose(1, 2).reshape(b, c))  # B,output


class ScorePooling(nn.Module):
    """x [B, S, D] -> sum_s softmax_s(w . x_s + b) x_s [B, D]: one linear score per position, softmax over all S
    positions, padding included (NeMo's SelfAttentionPooling, Imagen's pooled text)."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.score(x), dim=1)  # B,S,1
        return (weights * x).sum(dim=1)  # B,D
