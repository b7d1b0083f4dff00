"""The module behind the `multimae_decoder` head."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.attention import Attention
from mmspec.blocks.mlp import FeedForward
from mmspec.blocks.transformer import make_blocks


class MultiMAEDecoderModule(nn.Module):
    """Visible tokens back in place among mask tokens (+ positions + input embeddings); the places of one input
    cross-attend to the visible ones, then an MLP residual, blocks and the per-patch output."""

    def __init__(self, cfg, enc, domains):
        super().__init__()
        w = cfg.width
        self.project = nn.Linear(enc.width, w)
        self.mask_token = nn.Parameter(torch.zeros(w))
        self.position = nn.Parameter(torch.randn(domains[0].tokens, w) * 0.02)
        self.domain_embed = nn.Parameter(torch.randn(len(domains), w) * 0.02)
        self.query_norm = nn.LayerNorm(w, eps=cfg.eps)
        self.context_norm = nn.LayerNorm(w, eps=cfg.eps)
        self.cross = Attention(w, w, w, cfg.heads, w, cfg.attention_dropout)
        self.out_norm = nn.LayerNorm(w, eps=cfg.eps)
        self.ffn = FeedForward(w, cfg.ffn, cfg.activation)
        self.layers = make_blocks(cfg, cfg.layers)
        self.head = nn.Linear(w, cfg.dim)
        names = [d.name for d in domains]
        i = names.index(cfg.domain)
        self.span = (i * domains[0].tokens, (i + 1) * domains[0].tokens)
        self.global_tokens, self.task_queries = enc.global_tokens, cfg.task_queries

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        b = inputs["input"]
        restore = b["restore"]  # B,N
        x = self.project(b["sequence"])  # B,V+G,W
        visible, glob = x[:, : x.shape[1] - self.global_tokens], x[:, x.shape[1] - self.global_tokens :]
        n, v = restore.shape[1], visible.shape[1]
        full = torch.cat([visible, self.mask_token.expand(x.shape[0], n - v, -1)], dim=1)  # B,N,W
        full = torch.gather(full, 1, restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))  # B,N,W
        embed = (self.domain_embed.unsqueeze(1) + self.position.unsqueeze(0)).flatten(0, 1)  # N,W
        full = full + embed  # B,N,W
        if self.task_queries:
            queries = full[:, self.span[0] : self.span[1]]  # B,n,W
        else:
            queries = (self.mask_token + self.position).expand(x.shape[0], -1, -1)  # B,n,W
        order = torch.argsort(restore, dim=1)[:, :v]  # B,V: the visible tokens' places
        context = torch.gather(full, 1, order.unsqueeze(-1).expand(-1, -1, x.shape[2]))  # B,V,W
        context = torch.cat([context, glob], dim=1)  # B,V+G,W
        y = self.cross(self.query_norm(queries), self.context_norm(context))  # B,n,W
        y = y + self.ffn(self.out_norm(y))  # B,n,W
        for layer in self.layers:
            y = layer(y, None)  # B,n,W
        return {"pixels": self.head(y), "dropped": b["dropped"][:, self.span[0] : self.span[1]]}  # B,n,dim; B,n
