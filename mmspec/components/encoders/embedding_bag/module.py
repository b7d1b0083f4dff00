"""The modules behind the `embedding_bag` and `bag_of_words` encoders."""

from __future__ import annotations

import torch
from torch import nn


def _weights(tokens: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """1 for every token that counts, 0 for padding [B, S]."""
    if "mask" in tokens:
        return tokens["mask"].to(dtype)
    return torch.ones_like(tokens["ids"], dtype=dtype)


class EmbeddingBagModule(nn.Module):
    """ids [B, S] (+ mask [B, S]) -> rows [B, S, D] and their masked mean or sum [B, D]."""

    def __init__(self, vocab: int, dim: int, reduce: str):
        super().__init__()
        self.table = nn.Embedding(vocab, dim)
        self.reduce = reduce

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        tokens = inputs["input"]
        rows = self.table(tokens["ids"])  # B,S,D
        weight = _weights(tokens, rows.dtype)  # B,S
        pooled = (rows * weight[..., None]).sum(1)  # B,D
        if self.reduce == "mean":
            pooled = pooled / weight.sum(1, keepdim=True).clamp(min=1.0)  # B,D
        return {"sequence": rows, "pooled": pooled}


class BagOfWordsModule(nn.Module):
    """ids [B, S] (+ mask) -> counts [B, V]: scatter-add of the token weights at their ids (no one-hot tensor)."""

    def __init__(self, vocab: int, binary: bool):
        super().__init__()
        self.vocab, self.binary = vocab, binary

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        tokens = inputs["input"]
        weight = _weights(tokens, torch.float32)  # B,S
        counts = weight.new_zeros(weight.shape[0], self.vocab).scatter_add(1, tokens["ids"], weight)  # B,V
        return {"counts": counts.clamp(max=1.0) if self.binary else counts}
