"""Reference network of specs/hip.yaml (FM-03): the official Hierarchical Perceiver (google-deepmind/
hierarchical_perceiver, Haiku: perceiver.py `HiP` and `VARIANTS`, perceiver_blocks.py, perceiver_helpers.py)
rebuilt with plain torch.nn, module by module, with the official module names, so that tests/references.py can
compare the spec's parameter count and tests/coverage/test_hip.py its outputs."""

from __future__ import annotations

import torch
from torch import nn

# perceiver.py VARIANTS (cross-attention heads 1, cross widening 1 and self widening 4 at every level)
VARIANTS = {
    "16": {"num_groups": (16, 4, 1, 1, 1, 4, 16), "num_self_attends_per_block": (2, 2, 18, 2, 1, 1, 1),
           "z_index_dim": (128, 256, 256, 64, 256, 256, 128), "num_z_channels": (128, 256, 512, 1024, 512, 256, 128),
           "num_self_attend_heads": (4, 8, 16, 32, 16, 8, 4), "num_embedding_channels": 32},
    "256": {"num_groups": (256, 64, 16, 4, 1, 1, 1, 4, 16, 64, 256),
            "num_self_attends_per_block": (1, 1, 2, 2, 18, 2, 1, 1, 1, 1, 1),
            "z_index_dim": (32, 64, 128, 256, 256, 64, 256, 256, 128, 64, 32),
            "num_z_channels": (64, 96, 128, 256, 512, 1024, 256, 128, 64, 32, 16),
            "num_self_attend_heads": (1, 2, 4, 8, 16, 32, 16, 8, 4, 2, 1), "num_embedding_channels": 16},
}


class Attention(nn.Module):
    """perceiver_helpers.Attention: q/k/v Linears to qk/qk/v channels, scaled dot product per head (scale from
    the query/key head width), output Linear."""

    def __init__(self, q_dim: int, kv_dim: int, qk: int, v: int, out: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query_linear, self.key_linear = nn.Linear(q_dim, qk), nn.Linear(kv_dim, qk)
        self.value_linear, self.attention_output_linear = nn.Linear(kv_dim, v), nn.Linear(v, out)

    def forward(self, q_in: torch.Tensor, kv_in: torch.Tensor) -> torch.Tensor:
        h = self.heads
        q = self.query_linear(q_in).unflatten(-1, (h, -1)).transpose(-2, -3)
        k = self.key_linear(kv_in).unflatten(-1, (h, -1)).transpose(-2, -3)
        v = self.value_linear(kv_in).unflatten(-1, (h, -1)).transpose(-2, -3)
        weights = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
        return self.attention_output_linear((weights @ v).transpose(-2, -3).flatten(-2))


class Dense(nn.Module):
    """perceiver_helpers.Dense: Linear to widening * C, squared ReLU, Linear back."""

    def __init__(self, dim: int, widening: int):
        super().__init__()
        self.mlp_hidden_linear, self.mlp_output_linear = nn.Linear(dim, widening * dim), nn.Linear(widening * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp_output_linear(torch.relu(self.mlp_hidden_linear(x)) ** 2)


class HiPCrossAttention(nn.Module):
    """perceiver_blocks.HiPCrossAttention: learned per-group queries [G*N, D] (or given queries), an optional
    pre-attention residual (through a Linear where widths differ), attention with query/key and value width =
    the inputs' channels, optional post-attention residual, then a Dense on the LayerNormed result."""

    def __init__(self, kv_dim: int, q_dim: int, heads: int, widening: int, post_residual: bool,
                 queries: int | None = None, residual: int | None = None):
        super().__init__()
        self.query_inputs = nn.Parameter(torch.randn(queries, q_dim)) if queries else None
        self.pre_attention_residual_linear = nn.Linear(residual, q_dim) if residual and residual != q_dim else None
        self.query_norm, self.kv_norm, self.dense_norm = nn.LayerNorm(q_dim), nn.LayerNorm(kv_dim), nn.LayerNorm(q_dim)
        self.attention = Attention(q_dim, kv_dim, kv_dim, kv_dim, q_dim, heads)
        self.dense = Dense(q_dim, widening)
        self.post_residual = post_residual

    def forward(self, inputs: torch.Tensor, query: torch.Tensor | None = None,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        b, g = inputs.shape[:2]
        if query is None:
            query = self.query_inputs.reshape(g, -1, self.query_inputs.shape[-1]).expand(b, -1, -1, -1)
        if residual is not None:
            if self.pre_attention_residual_linear is not None:
                residual = self.pre_attention_residual_linear(residual)
            query = query + residual
        out = self.attention(self.query_norm(query), self.kv_norm(inputs))
        if self.post_residual:
            out = out + query
        return out + self.dense(self.dense_norm(out))


class SelfAttention(nn.Module):
    """perceiver_blocks.SelfAttention (dropout and drop-path 0, as the HiP defaults)."""

    def __init__(self, dim: int, heads: int, widening: int):
        super().__init__()
        self.norm, self.attention = nn.LayerNorm(dim), Attention(dim, dim, dim, dim, dim, heads)
        self.dense_norm, self.dense = nn.LayerNorm(dim), Dense(dim, widening)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        x = x + self.attention(y, y)
        return x + self.dense(self.dense_norm(x))


class PerceiverBlock(nn.Module):
    """perceiver_blocks.PerceiverBlock: regroup (reshape) to G groups, HiPCrossAttention, self-attentions."""

    def __init__(self, kv_dim: int, groups: int, latents: int, channels: int, layers: int, heads: int,
                 residual: int | None):
        super().__init__()
        self.groups = groups
        self.projector = HiPCrossAttention(kv_dim, channels, 1, 1, True, groups * latents, residual)
        self.self_attentions = nn.ModuleList(SelfAttention(channels, heads, 4) for _ in range(layers))

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        x = x.reshape(x.shape[0], self.groups, -1, x.shape[-1])  # B,G,T/G,C
        z = self.projector(x, residual=residual)
        for layer in self.self_attentions:
            z = layer(z)
        return z


class HiP(nn.Module):
    """perceiver.HiP for one modality [B, M, C]: Embedder, PositionEncoder (trainable, no projection),
    ConstNumGrouper (M divisible by the first level's groups: no padding), the blocks with U-Net residuals,
    ReconstructionHead and the un-embedding. Returns (latents [B, G*N, D], reconstruction [B, M, C])."""

    def __init__(self, index_dim: int, channels: int, num_groups, num_self_attends_per_block, z_index_dim,
                 num_z_channels, num_self_attend_heads, num_embedding_channels: int):
        super().__init__()
        n, e = len(num_groups), num_embedding_channels
        self.middle = n // 2
        self.embed = nn.Linear(channels, e)
        self.pos_emb_mae = nn.Parameter(torch.randn(index_dim, e))
        kv = [e, *num_z_channels[:-1]]
        self.blocks = nn.ModuleList(
            PerceiverBlock(kv[i], num_groups[i], z_index_dim[i], num_z_channels[i], num_self_attends_per_block[i],
                           num_self_attend_heads[i], num_z_channels[n - 1 - i] if i > self.middle else None)
            for i in range(n)
        )
        self.reconstruction_head = HiPCrossAttention(num_z_channels[-1], e, 1, 1, False)
        self.unembed = nn.Linear(e, channels)
        self.groups = num_groups[0]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, m, _ = x.shape
        pos = self.pos_emb_mae.expand(b, -1, -1)
        z = (self.embed(x) + pos).reshape(b, self.groups, m // self.groups, -1)
        hidden = []
        for i, block in enumerate(self.blocks):
            z = block(z, hidden[len(self.blocks) - 1 - i] if i > self.middle else None)
            hidden.append(z)
        query = pos.reshape(b, self.groups, m // self.groups, -1)
        out = self.reconstruction_head(z, query=query)
        return z.flatten(1, 2), self.unembed(out.reshape(b, m, -1))


def hip(variant: str = "16", index_dim: int = 224 * 224, channels: int = 3) -> HiP:
    """HiP-16 / HiP-256 over `index_dim` positions of `channels` channels (default: ImageNet's raw RGB pixels)."""
    return HiP(index_dim, channels, **VARIANTS[variant])
