"""AoANet's network rebuilt from torch.nn with the official code's structure, names and sizes (husthuaan/AoANet,
models/AoAModel.py with the options of train.sh), for parameter counts and numerical parity; the repository is not
installable (Python 2-era scripts, no package). Its LayerNorm (a (x - mean) / (std + eps) + b, unbiased std) is
torch's LayerNorm here, with the same parameters; dropout is left out (the parity tests run in eval mode)."""

from __future__ import annotations

import math

import torch
from torch import nn


class DotAttention(nn.Module):
    """MultiHeadedDotAttention(h, d, scale 1): q (and with `project_k_v` k, v) projections in `linears`, the query
    LayerNorm'd with `norm_q`, scaled dot-product attention with masked scores at -1e9, and with `aoa` the
    `aoa_layer` Linear(2 d, 2 d) + GLU over [heads' result; query] in place of the output linear (which the
    AoA model never keeps: use_output_layer 0 or do_aoa)."""

    def __init__(self, heads: int, d: int, project_k_v: bool, aoa: bool, norm_q: bool):
        super().__init__()
        self.heads = heads
        self.linears = nn.ModuleList(nn.Linear(d, d) for _ in range(3 if project_k_v else 1))
        self.norm = nn.LayerNorm(d, eps=1e-6) if norm_q else nn.Identity()
        self.aoa_layer = nn.Sequential(nn.Linear(2 * d, 2 * d), nn.GLU()) if aoa else None

    def forward(self, query: torch.Tensor, value: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None = None):
        single = query.dim() == 2
        query = self.norm(query[:, None] if single else query)  # B,T,D
        b = query.shape[0]

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2)  # B,H,N,d

        if len(self.linears) == 3:
            q, k, v = (split(lin(t)) for lin, t in zip(self.linears, (query, key, value), strict=True))
        else:
            q, k, v = split(self.linears[0](query)), split(key), split(value)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # B,H,T,N
        if mask is not None:
            scores = scores.masked_fill(mask[:, None, None, :] == 0, -1e9)
        x = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, -1, self.heads * q.shape[-1])  # B,T,D
        if self.aoa_layer is not None:
            x = self.aoa_layer(torch.cat([x, query], -1))  # B,T,D
        return x[:, 0] if single else x


class RefinerLayer(nn.Module):
    """AoA_Refiner_Layer with use_ff 0: x + self_attn(LN(x)) (SublayerConnection, pre-norm)."""

    def __init__(self, heads: int, d: int):
        super().__init__()
        self.self_attn = DotAttention(heads, d, project_k_v=True, aoa=True, norm_q=False)
        self.sublayer = nn.ModuleList([nn.ModuleDict({"norm": nn.LayerNorm(d, eps=1e-6)})])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = self.sublayer[0]["norm"](x)  # B,R,D
        return x + self.self_attn(h, h, h, mask)  # B,R,D


class AoANet(nn.Module):
    """AoAModel: att_embed, refiner (6 layers + LayerNorm), word embed, the decoder core (att_lstm, att2ctx,
    attention), ctx2att and logit. `forward` is the teacher-forced caption model: logits [B, T, V + 1] of the
    words that follow ids [B, T]."""

    def __init__(self, vocab: int = 9488, d: int = 1024, words: int = 1024, heads: int = 8, layers: int = 6,
                 feats: int = 2048):
        super().__init__()
        self.att_embed = nn.Sequential(nn.Linear(feats, d), nn.ReLU())
        self.refiner = nn.ModuleDict({"layers": nn.ModuleList(RefinerLayer(heads, d) for _ in range(layers)),
                                      "norm": nn.LayerNorm(d, eps=1e-6)})
        self.embed = nn.Sequential(nn.Embedding(vocab, words), nn.ReLU())
        self.core = nn.ModuleDict({
            "att_lstm": nn.LSTMCell(words + d, d),
            "att2ctx": nn.Sequential(nn.Linear(2 * d, 2 * d), nn.GLU()),
            "attention": DotAttention(heads, d, project_k_v=False, aoa=False, norm_q=True),
        })
        self.ctx2att = nn.Linear(d, 2 * d)
        self.logit = nn.Linear(d, vocab)
        self.d = d

    def refine(self, regions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.att_embed(regions)  # B,R,D
        for layer in self.refiner["layers"]:
            x = layer(x, mask)  # B,R,D
        return self.refiner["norm"](x)  # B,R,D

    def forward(self, regions: torch.Tensor, mask: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        feats = self.refine(regions, mask)  # B,R,D
        keep = mask[..., None].to(feats.dtype)  # B,R,1
        mean = (feats * keep).sum(1) / keep.sum(1)  # B,D
        p_att = self.ctx2att(feats)  # B,R,2D: values, then keys
        zeros = feats.new_zeros(feats.shape[0], self.d)  # B,D
        h, c, ctx, logits = zeros, zeros, zeros, []
        for t in range(ids.shape[1]):
            h, c = self.core["att_lstm"](torch.cat([self.embed(ids[:, t]), mean + ctx], 1), (h, c))  # B,D each
            att = self.core["attention"](h, p_att[..., : self.d], p_att[..., self.d:], mask)  # B,D
            ctx = self.core["att2ctx"](torch.cat([att, h], 1))  # B,D
            logits.append(self.logit(ctx))  # B,V
        return torch.stack(logits, 1)  # B,T,V
