"""Module behind the `unclip_prior` encoder (parameter names follow diffusers' PriorTransformer where they can)."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.positions import TimestepEmbedding
from mmspec.blocks.transformer import Block


class UnclipPriorModule(nn.Module):
    """See `UnclipPriorEncoder`; the causal/padding bias is -10000 where a key is hidden, as in diffusers."""

    def __init__(self, dim: int, length: int, heads: int, head_dim: int, layers: int):
        super().__init__()
        w = heads * head_dim
        self.time_embedding = TimestepEmbedding(w, w, True, 0.0)
        self.proj_in = nn.Linear(dim, w)
        self.embedding_proj = nn.Linear(dim, w)
        self.encoder_hidden_states_proj = nn.Linear(dim, w)
        self.positional_embedding = nn.Parameter(torch.zeros(1, length + 4, w))
        self.prd_embedding = nn.Parameter(torch.zeros(1, 1, w))
        self.blocks = nn.ModuleList(Block(w, heads, 4 * w, "gelu", True, 1e-5, 0.0, 0.0) for _ in range(layers))
        self.norm_out = nn.LayerNorm(w)
        self.proj_to_clip_embeddings = nn.Linear(w, dim)
        self.clip_mean = nn.Parameter(torch.zeros(1, dim))
        self.clip_std = nn.Parameter(torch.zeros(1, dim))
        self.register_buffer("causal", torch.full((length + 4, length + 4), -10000.0).triu(1), persistent=False)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = next(iter(inputs["input"].values()))  # B,D
        t = next(iter(inputs["timestep"].values()))  # B
        embed = next(iter(inputs["text_embed"].values()))  # B,D
        states = next(iter(inputs["text_states"].values()))  # B,S,D
        mask = inputs["text_mask"]["mask"]  # B,S
        b = x.shape[0]
        tokens = torch.cat([self.encoder_hidden_states_proj(states), self.embedding_proj(embed)[:, None],
                            self.time_embedding(t)[:, None], self.proj_in(x)[:, None],
                            self.prd_embedding.expand(b, -1, -1)], dim=1)  # B,S+4,W
        h = tokens + self.positional_embedding  # B,S+4,W
        hidden = (1.0 - mask.to(h.dtype)) * -10000.0  # B,S
        hidden = torch.cat([hidden, hidden.new_zeros(b, 4)], dim=1)  # B,S+4
        bias = (hidden[:, None, :] + self.causal)[:, None]  # B,1,S+4,S+4
        for block in self.blocks:
            h = block(h, bias)  # B,S+4,W
        x0 = self.proj_to_clip_embeddings(self.norm_out(h)[:, -1])  # B,D
        return {"x0": x0, "image_embedding": x0 * self.clip_std + self.clip_mean}  # B,D each
