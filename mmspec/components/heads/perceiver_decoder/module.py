"""The module behind the `perceiver_decoder` head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmspec.blocks.perceiver import PerceiverLayer


class PerceiverDecoderModule(nn.Module):
    """Learned queries cross-attend to the latents, then an optional projection or tied embedding decoder."""

    def __init__(self, cfg, kv_dim: int, field: str, tied: nn.Parameter | None, classes: int | None):
        super().__init__()
        qk, v = cfg.channels(kv_dim)
        self.field = field
        self.queries = nn.Parameter(torch.randn(cfg.queries, cfg.width) * 0.02)
        self.layer = PerceiverLayer(cfg.width, kv_dim, qk, v, cfg.heads, cfg.widening, cfg.activation, cfg.eps,
                                    cfg.attention_dropout, cross=True, query_residual=cfg.query_residual)
        self.project = nn.Linear(cfg.width, cfg.project) if cfg.project else None
        self.tied = tied
        self.bias = nn.Parameter(torch.zeros(classes)) if tied is not None else None
        self.single = cfg.single

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        z = inputs["input"][self.field]  # B,N,D
        q = self.queries.expand(z.shape[0], -1, -1)  # B,Q,W
        y = self.layer(q, z)  # B,Q,W
        if self.project is not None:
            logits = self.project(y)  # B,Q,C
        elif self.tied is not None:
            logits = F.linear(y, self.tied, self.bias)  # B,Q,V
        else:
            return {"sequence": y}
        return {"logits": logits[:, 0] if self.single else logits}  # B,C or B,Q,C
