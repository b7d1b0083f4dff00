"""Losses of the word-vector objectives; each module owns its training-only tables."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmspec.blocks.distributed import global_mean
from mmspec.components.objectives.runtime import Batch, ObjectiveModule
from mmspec.components.objectives.word_vectors.preprocess import huffman_paths, unigram_noise, zipf_counts


def _counts(kind: str, vocab: int) -> np.ndarray:
    return zipf_counts(vocab) if kind == "zipf" else np.ones(vocab)


class NegativeSampling(ObjectiveModule):
    """-log s(h . u_t) - sum_k [n_k != t] log s(-h . u_{n_k}); negatives n [B, k] drawn in `corrupt` from
    `noise` (counts^power, normalised), a CPU tensor that is no buffer: `corrupt` runs on the CPU batch before it
    moves to the device, and the distribution is rebuilt from counts rather than stored in checkpoints."""

    def __init__(self, vocab: int, dim: int, field: str, negatives: int, power: float, counts: str):
        super().__init__()
        self.field, self.negatives, self.power = field, negatives, power
        self.output = nn.Embedding(vocab, dim)
        nn.init.zeros_(self.output.weight)
        self.noise = torch.empty(0, dtype=torch.float64, device="cpu")  # a meta build draws nothing
        if not self.output.weight.is_meta:
            self.set_counts(_counts(counts, vocab))

    def set_counts(self, counts) -> None:
        """Use these word counts (one per id) for the noise distribution."""
        self.noise = torch.from_numpy(unigram_noise(counts, self.power))

    def corrupt(self, batch: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        rows = batch.size
        draws = torch.multinomial(self.noise, rows * self.negatives, replacement=True, generator=g)
        return {"negatives": draws.view(rows, self.negatives)}  # B,k

    def forward(self, args, targets):
        h = args["input"][self.field]  # B,D
        target, negatives = targets["target"], targets["negatives"]  # B / B,k
        pos = (h * self.output(target)).sum(-1)  # B
        neg = torch.einsum("bd,bkd->bk", h, self.output(negatives))  # B,k
        keep = (negatives != target[:, None]).to(h.dtype)  # B,k
        loss = -F.logsigmoid(pos) - (F.logsigmoid(-neg) * keep).sum(-1)  # B
        return global_mean(loss.sum(), torch.tensor(float(loss.shape[0])))


class HierarchicalSoftmax(ObjectiveModule):
    """-sum_n log s((1 - 2 code_n) h . v_n) over the inner nodes n on the target's root-to-leaf Huffman path."""

    def __init__(self, vocab: int, dim: int, field: str, counts: str):
        super().__init__()
        self.field = field
        self.inner = nn.Embedding(vocab - 1, dim)
        nn.init.zeros_(self.inner.weight)
        self._install(huffman_paths(_counts(counts, vocab)) if not self.inner.weight.is_meta else
                      (np.zeros((vocab, 1), np.int64),) * 2 + (np.ones(vocab, np.int64),))

    def _install(self, paths) -> None:
        points, codes, lengths = paths
        valid = np.arange(points.shape[1])[None] < lengths[:, None]  # V,L
        small = (("points", points.astype(np.int32)), ("codes", codes.astype(np.int8)), ("valid", valid))
        for name, value in small:  # 6 bytes per path step: 3M words x ~30 steps stay near 0.5 GB
            self.register_buffer(name, torch.from_numpy(value).to(self.inner.weight.device), persistent=False)

    def set_counts(self, counts) -> None:
        """Rebuild the Huffman tree from these word counts (one per id)."""
        self._install(huffman_paths(counts))

    def forward(self, args, targets):
        h = args["input"][self.field]  # B,D
        target = targets["target"]  # B
        nodes = self.inner(self.points[target])  # B,L,D
        sign = 1.0 - 2.0 * self.codes[target].to(h.dtype)  # B,L
        score = torch.einsum("bd,bld->bl", h, nodes)  # B,L
        loss = -(F.logsigmoid(sign * score) * self.valid[target].to(h.dtype)).sum(-1)  # B
        return global_mean(loss.sum(), torch.tensor(float(loss.shape[0])))


class Glove(ObjectiveModule):
    """f(X) (w_i . w~_j + b_i + b~_j - log X)^2 with f(x) = min(1, (x / x_max)^alpha), mean over the batch.
    Context vectors and both biases start uniform in [-0.5/D, 0.5/D), as GloVe's C code starts every parameter."""

    def __init__(self, vocab: int, dim: int, field: str, x_max: float, alpha: float):
        super().__init__()
        self.field, self.x_max, self.alpha = field, x_max, alpha
        self.context = nn.Embedding(vocab, dim)
        self.bias = nn.Parameter(torch.empty(vocab))
        self.context_bias = nn.Parameter(torch.empty(vocab))
        for p in (self.context.weight, self.bias, self.context_bias):
            nn.init.uniform_(p, -0.5 / dim, 0.5 / dim)

    def forward(self, args, targets):
        w = args["input"][self.field]  # B,D
        i = args["tokens"]["ids"][:, 0]  # B
        j, x = targets["context"], targets["count"]  # B / B
        diff = (w * self.context(j)).sum(-1) + self.bias[i] + self.context_bias[j] - torch.log(x)  # B
        f = torch.clamp((x / self.x_max) ** self.alpha, max=1.0)  # B
        loss = f * diff**2  # B
        return global_mean(loss.sum(), torch.tensor(float(loss.shape[0])))
