"""Vector quantisation (VQ-VAE, van den Oord et al. 2017): each latent vector is replaced by its nearest codebook
vector, with the straight-through estimator carrying the decoder's gradient to the encoder.

Contract: `VectorQuantizer` maps z [B, D, h, w] -> (z_q [B, D, h, w] the chosen codebook vectors, the
straight-through output z + sg(z_q - z) [B, D, h, w], codes [B, h*w] int64, row-major). Its codebook is
`embedding.weight` [K, D] (diffusers' VectorQuantizer name): a parameter trained by the codebook loss, or, with
`ema_decay`, a buffer that training-mode forwards move towards the mean of the vectors assigned to each code
(exponential moving averages of the counts and sums, Laplace-smoothed). torch.fx traceable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EMACodebook(nn.Module):
    """A codebook held in buffers: `weight` [K, D], the smoothed assignment counts `cluster_size` [K] and the
    summed assigned vectors `embed_sum` [K, D]."""

    def __init__(self, codebook: int, dim: int):
        super().__init__()
        weight = torch.empty(codebook, dim).uniform_(-1.0 / codebook, 1.0 / codebook)  # K,D
        self.register_buffer("weight", weight)
        self.register_buffer("cluster_size", torch.ones(codebook))
        self.register_buffer("embed_sum", weight.clone())


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantisation of z [B, D, h, w] against K codes of width D."""

    def __init__(self, codebook: int, dim: int, ema_decay: float | None = None, ema_eps: float = 1e-5):
        super().__init__()
        self.ema_decay, self.ema_eps = ema_decay, ema_eps
        if ema_decay is None:
            self.embedding = nn.Embedding(codebook, dim)
            nn.init.uniform_(self.embedding.weight, -1.0 / codebook, 1.0 / codebook)
        else:
            self.embedding = EMACodebook(codebook, dim)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)  # BHW,D
        e = self.embedding.weight  # K,D
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t() + e.pow(2).sum(1)[None]  # BHW,K squared distances
        codes = dist.argmin(1)  # BHW
        if self.training and self.ema_decay is not None:
            self.ema_update(flat.detach(), codes)
        z_q = F.embedding(codes, e).view(b, h, w, d).permute(0, 3, 1, 2)  # B,D,h,w
        return z_q, z + (z_q - z).detach(), codes.view(b, h * w)  # B,D,h,w; B,D,h,w; B,h*w

    @torch.no_grad()
    def ema_update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        """N_k <- g N_k + (1 - g) n_k, m_k <- g m_k + (1 - g) sum of the vectors assigned to k, e_k = m_k / N_k
        (N Laplace-smoothed so that an unused code keeps a finite vector)."""
        cb, g = self.embedding, self.ema_decay
        onehot = F.one_hot(codes, cb.weight.shape[0]).to(flat.dtype)  # BHW,K
        cb.cluster_size.mul_(g).add_(onehot.sum(0), alpha=1 - g)
        cb.embed_sum.mul_(g).add_(onehot.t() @ flat, alpha=1 - g)
        n = cb.cluster_size.sum()
        smoothed = (cb.cluster_size + self.ema_eps) / (n + cb.weight.shape[0] * self.ema_eps) * n  # K
        cb.weight.copy_(cb.embed_sum / smoothed[:, None])
