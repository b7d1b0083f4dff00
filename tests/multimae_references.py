"""MultiMAE (FM-05) rebuilt with plain torch.nn from the official EPFL-VILAB/MultiMAE modules (multimae.py,
input_adapters.py, output_adapters.py; the repository needs timm and is not installable), with the official
parameter names, so that tests/references.py counts the spec against it and the coverage test loads its
weights into the spec and compares outputs. The forward takes the masking (the order of the tokens, kept ones
first) as an argument instead of drawing it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, context):
        b, n, d = x.shape
        q = self.q(x).reshape(b, n, self.heads, d // self.heads).transpose(1, 2)
        k, v = self.kv(context).reshape(b, context.shape[1], 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, ratio: float = 4):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, int(ratio * dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchedInputAdapter(nn.Module):
    def __init__(self, channels: int, patch: int, grid: int, dim: int):
        super().__init__()
        self.pos_emb = nn.Parameter(torch.randn(1, dim, grid, grid) * 0.02, requires_grad=False)  # sin-cos there
        self.proj = nn.Conv2d(channels, dim, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2) + self.pos_emb.flatten(2).transpose(1, 2)


class SemSegInputAdapter(PatchedInputAdapter):
    def __init__(self, classes: int, class_dim: int, patch: int, grid: int, dim: int):
        super().__init__(class_dim, patch, grid, dim)
        self.class_emb = nn.Embedding(classes, class_dim)

    def forward(self, x):  # x: B,H,W class ids
        return super().forward(self.class_emb(x).permute(0, 3, 1, 2))


class SpatialOutputAdapter(nn.Module):
    def __init__(self, out: int, context_tasks: list[str], task: str, grid: int, dim_enc: int, dim: int = 256,
                 depth: int = 2, heads: int = 8, task_queries: bool = True, ratio: float = 4):
        super().__init__()
        self.task, self.task_queries, self.grid = task, task_queries, grid
        self.task_embeddings = nn.ParameterDict({t: nn.Parameter(torch.randn(1, 1, dim) * 0.02) for t in context_tasks})
        self.mask_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_emb = nn.Parameter(torch.randn(1, dim, grid, grid) * 0.02, requires_grad=False)
        self.decoder = CrossAttention(dim, heads)
        self.context_norm, self.query_norm, self.out_norm = (nn.LayerNorm(dim, eps=1e-6) for _ in range(3))
        self.mlp = Mlp(dim, int(ratio * dim))
        self.decoder_transformer = nn.Sequential(*(Block(dim, heads, ratio) for _ in range(depth)))
        self.out_proj = nn.Linear(dim, out)
        self.proj_context = nn.Linear(dim_enc, dim)

    def forward(self, encoder_tokens, tasks: list[str], ids_keep, ids_restore, global_tokens: int = 1):
        """Per-patch outputs [B, N, out] (before the official unpatchify)."""
        x = self.proj_context(encoder_tokens)
        b, n = x.shape[0], self.grid * self.grid
        visible = x[:, :-global_tokens]
        mask = self.mask_token.expand(b, n * len(tasks) - visible.shape[1], -1)
        full = torch.gather(torch.cat([visible, mask], 1), 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        pos = self.pos_emb.flatten(2).transpose(1, 2)
        full = full + torch.cat([self.task_embeddings[t] + pos for t in tasks], 1)
        if self.task_queries:
            i = tasks.index(self.task)
            queries = full[:, i * n : (i + 1) * n]
        else:
            queries = self.mask_token + pos
            queries = queries.expand(b, -1, -1)
        context = torch.gather(full, 1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        context = torch.cat([context, x[:, -global_tokens:]], 1)
        y = self.decoder(self.query_norm(queries), self.context_norm(context))
        y = y + self.mlp(self.out_norm(y))
        return self.out_proj(self.decoder_transformer(y))


class MultiMAE(nn.Module):
    """pretrain_multimae_base with rgb, depth and semseg inputs and rgb, norm_rgb (task 'rgb', as the official
    run_pretraining_multimae.py builds it), depth, semseg outputs (`ratio`:
    the MLP ratio of every block, 4 there; smaller sizes serve the tiny-variant tests)."""

    def __init__(self, dim: int = 768, depth: int = 12, heads: int = 12, patch: int = 16, image: int = 224,
                 classes: int = 133, class_dim: int = 64, semseg_stride: int = 4, decoder_dim: int = 256,
                 decoder_depth: int = 2, decoder_heads: int = 8, global_tokens: int = 1, ratio: float = 4):
        super().__init__()
        grid, sp = image // patch, patch // semseg_stride
        self.tasks = ["rgb", "depth", "semseg"]
        self.input_adapters = nn.ModuleDict({
            "rgb": PatchedInputAdapter(3, patch, grid, dim),
            "depth": PatchedInputAdapter(1, patch, grid, dim),
            "semseg": SemSegInputAdapter(classes, class_dim, sp, grid, dim),
        })
        out = {"rgb": 3 * patch * patch, "norm_rgb": 3 * patch * patch, "depth": patch * patch,
               "semseg": classes * sp * sp}
        self.output_adapters = nn.ModuleDict({
            t: SpatialOutputAdapter(o, self.tasks, "rgb" if t == "norm_rgb" else t, grid, dim, decoder_dim,
                                    decoder_depth, decoder_heads, True, ratio)
            for t, o in out.items()
        })
        self.global_tokens = nn.Parameter(torch.randn(1, global_tokens, dim) * 0.02)
        self.encoder = nn.Sequential(*(Block(dim, heads, ratio) for _ in range(depth)))

    def forward(self, x: dict[str, torch.Tensor], order: torch.Tensor, visible: int):
        """x: rgb [B,3,H,W], depth [B,1,H,W], semseg [B,h,w] ids; order [B, N]: token indices, kept ones first."""
        tokens = torch.cat([self.input_adapters[t](x[t]) for t in self.tasks], 1)
        keep, restore = order[:, :visible], torch.argsort(order, 1)
        tokens = torch.gather(tokens, 1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[2]))
        enc = self.encoder(torch.cat([tokens, self.global_tokens.expand(tokens.shape[0], -1, -1)], 1))
        preds = {t: a(enc, self.tasks, keep, restore, self.global_tokens.shape[1])
                 for t, a in self.output_adapters.items()}
        return enc, preds
