"""The modules behind `detr_encoder` and `detr_decoder`."""

from __future__ import annotations

import math

import torch
from torch import nn

from mmspec.blocks.attention import Attention, padding_bias
from mmspec.blocks.mlp import FeedForward


def sine_positions(height: int, width: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """DETR's 2-D sine positions of an unpadded height x width map, rows then columns: [height * width, dim]; the
    first dim / 2 channels encode the row, the rest the column, each normalised to (0, 2 pi]."""
    half = dim // 2
    y = torch.arange(1, height + 1, dtype=torch.float32)[:, None].expand(height, width)  # h,w
    x = torch.arange(1, width + 1, dtype=torch.float32)[None, :].expand(height, width)  # h,w
    y = y / (height + 1e-6) * 2 * math.pi  # h,w
    x = x / (width + 1e-6) * 2 * math.pi  # h,w
    freq = temperature ** (2 * torch.div(torch.arange(half), 2, rounding_mode="floor") / half)  # half
    py, px = y[..., None] / freq, x[..., None] / freq  # h,w,half each
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=-1).flatten(2)  # h,w,half
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=-1).flatten(2)  # h,w,half
    return torch.cat((py, px), dim=-1).flatten(0, 1)  # h*w,dim


def attend(attn: Attention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
           bias: torch.Tensor | None = None) -> torch.Tensor:
    """`attn` with separate query [B, T, D], key and value [B, S, D] inputs (DETR adds positions to the first two
    only); returns [B, T, D]."""
    b, t, s = query.shape[0], query.shape[1], key.shape[1]
    q = attn.split_heads(attn.q(query), b, t)  # B,H,T,d
    k = attn.split_heads(attn.k(key), b, s)  # B,H,S,d
    v = attn.split_heads(attn.v(value), b, s)  # B,H,S,d
    return attn.mix(q, k, v, bias, b, t)  # B,T,D


class DetrLayer(nn.Module):
    """Post-norm layer: self-attention with positions on queries and keys, optional cross-attention (positions on
    its queries and on the memory's keys), ReLU feed-forward; each sublayer x = norm(x + dropout(f(x)))."""

    def __init__(self, width: int, heads: int, ffn: int, act: str, dropout: float, eps: float, cross: bool):
        super().__init__()
        self.attn = Attention(width, width, width, heads, width, dropout)
        self.attn_norm = nn.LayerNorm(width, eps=eps)
        self.cross_attn = Attention(width, width, width, heads, width, dropout) if cross else None
        self.cross_norm = nn.LayerNorm(width, eps=eps) if cross else None
        self.ffn = FeedForward(width, ffn, act, dropout=dropout)
        self.ffn_norm = nn.LayerNorm(width, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, memory: torch.Tensor | None = None,
                memory_pos: torch.Tensor | None = None, memory_bias: torch.Tensor | None = None) -> torch.Tensor:
        qk = x + pos  # B,T,D
        x = self.attn_norm(x + self.dropout(attend(self.attn, qk, qk, x)))  # B,T,D
        if self.cross_attn is not None:
            y = attend(self.cross_attn, x + pos, memory + memory_pos, memory, memory_bias)  # B,T,D
            x = self.cross_norm(x + self.dropout(y))  # B,T,D
        return self.ffn_norm(x + self.dropout(self.ffn(x)))  # B,T,D


class DetrEncoderModule(nn.Module):
    """1x1 projection of the feature map, flattening, the sine positions and the encoder layers."""

    def __init__(self, channels: int, grid: tuple[int, int], cfg):
        super().__init__()
        self.proj = nn.Conv2d(channels, cfg.width, 1)
        self.register_buffer("positions", sine_positions(*grid, cfg.width), persistent=False)  # h*w,D
        self.layers = nn.ModuleList(
            DetrLayer(cfg.width, cfg.heads, cfg.ffn, cfg.activation, cfg.dropout, cfg.eps, cross=False)
            for _ in range(cfg.layers))
        self.residual = cfg.residual

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        src = self.proj(inputs["input"]["features"]).flatten(2).transpose(1, 2)  # B,h*w,D
        pos = torch.zeros_like(src) + self.positions  # B,h*w,D (a buffer cannot expand to a traced batch)
        x = src
        for layer in self.layers:
            x = layer(x, pos)  # B,h*w,D
        if self.residual:
            x = src + x  # B,h*w,D
        return {"sequence": x, "positions": pos}


class DetrDecoderStack(nn.Module):
    """What a sharing group of decoders has in common: the layers, the final norm and the memory projections."""

    def __init__(self, cfg, image_width: int | None, text_width: int | None):
        super().__init__()
        w = cfg.width
        self.layers = nn.ModuleList(
            DetrLayer(w, cfg.heads, cfg.ffn, cfg.activation, cfg.dropout, cfg.eps, cross=True)
            for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(w, eps=cfg.eps)
        projected = image_width is not None and image_width != w
        self.image_proj = nn.Linear(image_width, w) if projected else nn.Identity()
        self.image_pos_proj = nn.Linear(image_width, w) if projected else nn.Identity()
        self.text_proj = nn.Linear(text_width, w) if text_width is not None else None
        self.text_pos_proj = nn.Linear(text_width, w) if text_width is not None else None


class DetrDecoderModule(nn.Module):
    """This task's queries over the group's (shared) stack."""

    def __init__(self, cfg, group: str, stack: DetrDecoderStack, text_table: nn.Embedding | None):
        super().__init__()
        self.group = group
        """The name of the decoder that owns the stack (this one's, when it shares none)."""
        self.queries = nn.Embedding(cfg.queries, cfg.width)
        if cfg.share is None:
            self.owned = stack
        else:  # held, not registered: the stack's parameters belong to the owner (which holds them once built)
            self.shared = (stack,)
        self.text_table = text_table
        """The text encoder's position table (shared, not owned): its rows are the text positions."""
        self.text_first = cfg.text_first
        self.use_image, self.use_text = cfg.image is not None, cfg.text is not None

    @property
    def stack(self) -> DetrDecoderStack:
        return self.owned if hasattr(self, "owned") else self.shared[0]

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        stack = self.stack
        memories, positions, masks = [], [], []
        if self.use_image:
            image = inputs["image"]
            memories.append(stack.image_proj(image["sequence"]))  # B,N,D
            positions.append(stack.image_pos_proj(image["positions"]))  # B,N,D
        if self.use_text:
            text = inputs["text"]
            seq = text["sequence"][:, :1] if self.text_first else text["sequence"]  # B,S,Dt
            ids = torch.arange(seq.shape[1], device=seq.device)  # S
            memories.append(stack.text_proj(seq))  # B,S,D
            pos = stack.text_pos_proj(self.text_table(ids))  # S,D
            positions.append(pos[None].expand(seq.shape[0], -1, -1))  # B,S,D
            if "mask" in text:
                masks.append(text["mask"][:, :1] if self.text_first else text["mask"])  # B,S
        memory = torch.cat(memories, dim=1)  # B,M,D
        memory_pos = torch.cat(positions, dim=1)  # B,M,D
        bias = None
        if masks:
            if self.use_image:
                masks.insert(0, torch.ones_like(masks[0][:, :1]).expand(-1, memories[0].shape[1]))  # B,N
            bias = padding_bias(torch.cat(masks, dim=1), memory)  # B,1,1,M
        query = self.queries.weight.unsqueeze(0).repeat(memory.shape[0], 1, 1)  # B,Q,D (a copy, not a view)
        x = torch.zeros_like(query)  # B,Q,D
        for layer in stack.layers:
            x = layer(x, query, memory, memory_pos, bias)  # B,Q,D
        x = stack.norm(x)  # B,Q,D
        return {"sequence": x, "first": x[:, 0]}
