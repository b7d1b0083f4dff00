"""The module behind the `multimae` encoder."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.embeddings import PatchEmbedding
from mmspec.blocks.transformer import make_blocks


class ClassMapEmbedding(nn.Module):
    """Class ids of a map flattened row by row [B, h*w] -> class embeddings [B, E, h, w] -> patch tokens with
    learned positions [B, N, D] (MultiMAE's semantic-segmentation input adapter)."""

    def __init__(self, classes: int, dim: int, width: int, patch: int, grid: tuple[int, int], eps: float):
        super().__init__()
        self.size = (grid[0] * patch, grid[1] * patch)
        self.classes = nn.Embedding(classes, dim)
        self.patches = PatchEmbedding(dim, width, patch, grid[0] * grid[1], True, False, False, eps, 0.0)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.classes(ids).transpose(1, 2).unflatten(2, self.size)  # B,E,h,w
        return self.patches(x)  # B,N,D


def dirichlet_keep(sizes: list[int], visible: int, alpha: float, like: torch.Tensor) -> torch.Tensor:
    """MultiMAE's random masking: per example a Dirichlet(alpha) share of `visible` for each of the token groups
    of `sizes`, that many random tokens per group, made exactly `visible` by a random order over the group masks.
    Returns the order [B, N] (the kept tokens first); `like` [B, ...] gives batch and device (global RNG)."""
    shares = torch.distributions.Dirichlet(like.new_full((like.shape[0], len(sizes)), alpha)).sample()  # B,M
    counts = (shares * visible).round()  # B,M
    masks = []
    for i, n in enumerate(sizes):
        rank = torch.argsort(torch.argsort(torch.rand_like(like[:, :1].expand(-1, n)), dim=1), dim=1)  # B,n
        masks.append((rank >= counts[:, i : i + 1]).to(like.dtype))  # B,n: 1 = masked
    masked = torch.cat(masks, dim=1)  # B,N
    return torch.argsort(masked + torch.rand_like(masked), dim=1)  # B,N


class MultiMAEModule(nn.Module):
    """Per-input patch tokens -> [keep `visible` of them while training] -> append global tokens -> blocks."""

    def __init__(self, cfg, domains, vocab: dict[str, int]):
        super().__init__()
        self.adapters = nn.ModuleDict()
        for d in domains:
            if d.kind == "image":
                self.adapters[d.name] = PatchEmbedding(d.channels, cfg.width, d.patch, d.tokens, True, False, False,
                                                       cfg.eps, 0.0)
            else:
                self.adapters[d.name] = ClassMapEmbedding(vocab[d.name], cfg.class_dim, cfg.width, d.patch, d.grid,
                                                          cfg.eps)
        self.fields = {d.name: "pixels" if d.kind == "image" else "ids" for d in domains}
        self.sizes = [d.tokens for d in domains]
        self.visible, self.alpha = cfg.visible, cfg.alpha
        self.global_tokens = nn.Parameter(torch.randn(cfg.global_tokens, cfg.width) * 0.02)
        self.layers = make_blocks(cfg, cfg.layers)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = torch.cat([self.adapters[n](inputs[n][f]) for n, f in self.fields.items()], dim=1)  # B,N,D
        b, n, d = x.shape
        if self.training:
            order = dirichlet_keep(self.sizes, self.visible, self.alpha, x[:, 0, :1])  # B,N
            index = order[:, : self.visible].unsqueeze(-1).expand(-1, -1, d)  # B,V,D
            x = torch.gather(x, 1, index)  # B,V,D
            restore = torch.argsort(order, dim=1)  # B,N
        else:
            restore = torch.arange(n, device=x.device).expand(b, -1)  # B,N
        x = torch.cat([x, self.global_tokens.expand(b, -1, -1)], dim=1)  # B,V+G,D
        for layer in self.layers:
            x = layer(x, None)  # B,V+G,D
        kept = x.shape[1] - self.global_tokens.shape[0]
        return {"sequence": x, "restore": restore, "dropped": (restore >= kept).long()}  # B,V+G,D; B,N; B,N
