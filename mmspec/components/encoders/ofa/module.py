"""The modules behind the `ofa` stacks, composed from the shared attention (with NormFormer's head scales) and the
BEiT grid index of mmspec.blocks.positions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmspec.blocks.activations import activation
from mmspec.blocks.attention import Attention, KVCache, cached_causal_bias, causal_bias, combine_biases, padding_bias
from mmspec.blocks.positions import grid_relative_index


def token_bucket_table(buckets: int, max_positions: int) -> torch.Tensor:
    """OFA's bucket [2M - 1] of every relative distance r = query - key in -(M-1)..M-1 (entry r + M - 1): r itself
    while |r| <= buckets/2, beyond that sign(r) * (mid + ceil(log(|r|/mid) / log((M-1)/mid) * (mid-1))), shifted by
    buckets - 1 so that the buckets index a table of 2 * buckets - 1 rows."""
    rel = torch.arange(-(max_positions - 1), max_positions)  # 2M-1
    mid = buckets // 2
    distance = torch.where((rel < mid) & (rel > -mid), torch.full_like(rel, mid - 1), rel.abs())  # 2M-1
    log = torch.ceil(torch.log(distance / mid) / math.log((max_positions - 1) / mid) * (mid - 1)) + mid  # 2M-1
    bucket = torch.where(distance <= mid, rel, log.int() * torch.sign(rel))  # 2M-1
    return bucket + buckets - 1  # 2M-1


class OFAPositions(nn.Module):
    """A stack's learned absolute positions, each kind LayerNormed: text rows (position p -> row p) and, with
    `image_rows`, image grid cells (ids r * grid + c + 1)."""

    def __init__(self, width: int, rows: int, image_rows: int, eps: float):
        super().__init__()
        self.embed = nn.Embedding(rows, width)
        self.norm = nn.LayerNorm(width, eps=eps)
        if image_rows:
            self.image_embed = nn.Embedding(image_rows, width)
            self.image_norm = nn.LayerNorm(width, eps=eps)

    def text(self, positions: torch.Tensor) -> torch.Tensor:
        return self.norm(self.embed(positions))  # T,D

    def image(self, ids: torch.Tensor) -> torch.Tensor:
        return self.image_norm(self.image_embed(ids))  # N,D

    def context(self, length, image_ids: torch.Tensor | None) -> torch.Tensor:
        """The encoder's position embeddings [L, D] of `length` = len(image_ids) patches + text tokens."""
        if image_ids is None:
            return self.text(torch.arange(length, device=self.embed.weight.device))  # S,D
        text = torch.arange(length - image_ids.shape[0], device=self.embed.weight.device)  # S
        return torch.cat([self.image(image_ids), self.text(text)])  # N+S,D


class PositionBias(nn.Module):
    """Absolute positions as an attention bias: per head, (q(p_i) * scale) . k(p_j) -> [1, H, T, S]."""

    def __init__(self, width: int, heads: int, scale: float):
        super().__init__()
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.heads, self.scale = heads, scale

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        q = (self.q(queries) * self.scale).view(queries.shape[0], self.heads, -1).transpose(0, 1)  # H,T,d
        k = self.k(keys).view(keys.shape[0], self.heads, -1).transpose(0, 1)  # H,S,d
        return torch.matmul(q, k.transpose(1, 2)).unsqueeze(0)  # 1,H,T,S


class OFALayer(nn.Module):
    """Pre-LN sublayers x + drop(g(f(LN(x)))): self-attention, cross-attention (decoders), feed-forward
    fc2(LN(act(fc1 x))); with `normformer`, g is a LayerNorm after attention and heads are scaled."""

    def __init__(self, cfg, cross: bool):
        super().__init__()
        d, eps, extra = cfg.width, cfg.eps, cfg.normformer
        scale = (cfg.head_dim * cfg.attention_scale) ** -0.5

        def attention() -> Attention:
            return Attention(d, d, d, cfg.heads, d, cfg.attention_dropout, scale=scale, head_scale=extra)

        self.attn_norm = nn.LayerNorm(d, eps=eps)
        self.attn = attention()
        self.attn_out_norm = nn.LayerNorm(d, eps=eps) if extra else None
        self.cross = cross
        if cross:
            self.cross_norm = nn.LayerNorm(d, eps=eps)
            self.cross_attn = attention()
            self.cross_out_norm = nn.LayerNorm(d, eps=eps) if extra else None
        self.ffn_norm = nn.LayerNorm(d, eps=eps)
        self.fc1 = nn.Linear(d, cfg.ffn)
        self.act = activation(cfg.activation)
        self.ffn_inner_norm = nn.LayerNorm(cfg.ffn, eps=eps) if extra else None
        self.fc2 = nn.Linear(cfg.ffn, d)
        self.dropout = nn.Dropout(cfg.dropout)

    def residual(self, x: torch.Tensor, y: torch.Tensor, norm: nn.Module | None) -> torch.Tensor:
        return x + self.dropout(y if norm is None else norm(y))  # B,T,D

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1(self.ffn_norm(x)))  # B,T,F
        if self.ffn_inner_norm is not None:
            h = self.ffn_inner_norm(h)  # B,T,F
        return x + self.dropout(self.fc2(h))  # B,T,D

    def forward(self, x, bias, context=None, context_bias=None) -> torch.Tensor:
        x = self.residual(x, self.attn(self.attn_norm(x), None, bias), self.attn_out_norm)  # B,T,D
        if self.cross:
            y = self.cross_attn(self.cross_norm(x), context, context_bias)  # B,T,D
            x = self.residual(x, y, self.cross_out_norm)  # B,T,D
        return self.feed_forward(x)  # B,T,D

    def step(self, x, bias, past: KVCache, cross: KVCache, cross_bias) -> tuple[torch.Tensor, KVCache]:
        """`forward` for T new positions after P cached ones (`bias` covers the P + T keys); cross-attention reads
        precomputed keys/values. Returns (x [B, T, D], present [B, H, P + T, d])."""
        y, present = self.attn(self.attn_norm(x), bias=bias, cache=past)  # B,T,D; B,H,P+T,d
        x = self.residual(x, y, self.attn_out_norm)  # B,T,D
        x = self.residual(x, self.cross_attn.attend(self.cross_norm(x), cross, cross_bias), self.cross_out_norm)
        return self.feed_forward(x), present  # B,T,D


class _Stack(nn.Module):
    """What both stacks share: text relative buckets, per-layer relative tables, layers and final norm."""

    def __init__(self, cfg, image_tables: bool):
        super().__init__()
        d, h = cfg.width, cfg.heads
        self.max_positions = cfg.max_positions
        self.scale = (cfg.head_dim * cfg.attention_scale) ** -0.5
        self.layers = nn.ModuleList(OFALayer(cfg, cfg.decoder) for _ in range(cfg.layers))
        self.token_relative = nn.ModuleList(nn.Embedding(2 * cfg.token_buckets - 1, h) for _ in range(cfg.layers))
        if image_tables:
            rows = (2 * cfg.image_buckets - 1) ** 2 + 3
            self.image_relative = nn.ModuleList(nn.Embedding(rows, h) for _ in range(cfg.layers))
        self.register_buffer("token_buckets", token_bucket_table(cfg.token_buckets, cfg.max_positions),
                             persistent=False)
        self.final_norm = nn.LayerNorm(d, eps=cfg.eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def share(self, owner: nn.Module) -> None:
        """Use the parameters of `owner` (the same kind of stack, same sizes) instead of own ones: every
        sub-module this stack has that `owner` has too."""
        for name in list(self._modules):
            if name in owner._modules:
                setattr(self, name, owner._modules[name])

    def relative_index(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Bucket [T, S] of text query positions [T] against key positions [S]."""
        return self.token_buckets[queries[:, None] - keys[None, :] + self.max_positions - 1]  # T,S

    def text_bias(self, layer: int, index: torch.Tensor) -> torch.Tensor:
        return self.token_relative[layer](index).permute(2, 0, 1)  # H,T,S


class OFAEncoder(_Stack):
    """[image patches ; text tokens] -> pre-LN layers with position biases -> LayerNorm."""

    def __init__(self, cfg, vocab: int, image: tuple[str, int, int, int] | None, shared: OFAEncoder | None = None):
        super().__init__(cfg, image is not None)
        d, grid = cfg.width, cfg.image_buckets
        self.embed = nn.Embedding(vocab, d)
        self.type_embed = nn.Embedding(2, d)
        self.embed_norm = nn.LayerNorm(d, eps=cfg.eps)
        self.positions = OFAPositions(d, cfg.max_positions + 2, grid**2 + 1 if image else 0, cfg.eps)
        self.position_bias = PositionBias(d, cfg.heads, self.scale)
        self.image_field, self.patches = None, 0
        if image is not None:
            self.image_field, channels, h, w = image
            self.patches = h * w
            self.image_proj = nn.Linear(channels, d)
            self.patch_norm = nn.LayerNorm(d, eps=cfg.eps)
            ids = (torch.arange(h)[:, None] * grid + torch.arange(w) + 1).flatten()  # N
            self.register_buffer("image_ids", ids, persistent=False)
            index = grid_relative_index(grid, grid)  # 1+G*G,1+G*G
            self.register_buffer("image_index", index[ids][:, ids], persistent=False)  # N,N
        if shared is not None:
            self.share(shared)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        ids, mask = inputs["input"]["ids"], inputs["input"].get("mask")
        x = self.dropout(self.embed_norm(self.embed(ids) + self.type_embed.weight[0]))  # B,S,D
        s = ids.shape[1]
        text = torch.arange(s, device=ids.device)  # S
        pos = self.positions.text(text)  # S,D
        index = self.relative_index(text, text)  # S,S
        n = self.patches
        if self.image_field is not None:
            maps = inputs["image"][self.image_field]  # B,C,h,w
            patches = self.image_proj(maps.flatten(2).transpose(1, 2))  # B,N,D
            patches = self.dropout(self.patch_norm(patches + self.type_embed.weight[1]))  # B,N,D
            x = torch.cat([patches, x], dim=1)  # B,N+S,D
            pos = self.positions.context(n + s, self.image_ids)  # N+S,D
            if mask is not None:
                mask = torch.cat([mask.new_ones(mask.shape[0], n), mask], dim=1)  # B,N+S
        pad = None
        if mask is not None:
            x = x * mask[:, :, None].type_as(x)  # B,N+S,D
            pad = padding_bias(mask, x)  # B,1,1,N+S
        absolute = self.position_bias(pos, pos)  # 1,H,N+S,N+S
        for i, layer in enumerate(self.layers):
            relative = self.text_bias(i, index)  # H,S,S
            if self.image_field is not None:
                image = self.image_relative[i](self.image_index).permute(2, 0, 1)  # H,N,N
                relative = torch.cat([F.pad(image, (0, s)), F.pad(relative, (n, 0))], dim=1)  # H,N+S,N+S
            x = layer(x, combine_biases(absolute + relative, pad))  # B,N+S,D
        out = {"sequence": self.final_norm(x)}  # B,N+S,D
        if mask is not None:
            out["mask"] = mask
        return out


class OFADecoder(_Stack):
    """Target tokens -> causal pre-LN layers with position biases and cross-attention to the encoder -> LayerNorm
    -> logits over the encoder's table. Text targets (OFA without code_masks) take the embedding LayerNorm, text
    positions and 1-D relative buckets; image-code targets (`codes`, code_masks everywhere) the code LayerNorm,
    image-grid positions (a start token, then a code_grid x code_grid window of the image position grid) and the
    2-D relative tables. Both kinds of parameters exist in every decoder, as in OFA."""

    def __init__(self, cfg, vocab: int, encoder: OFAEncoder, shared: OFADecoder | None = None):
        super().__init__(cfg, True)
        d, grid = cfg.width, cfg.image_buckets
        self.embed = encoder.embed
        self.context_positions = encoder.positions
        self.context_field = "sequence"
        if encoder.patches:
            self.register_buffer("context_ids", encoder.image_ids.clone(), persistent=False)  # N
        else:
            self.context_ids = None
        self.embed_norm = nn.LayerNorm(d, eps=cfg.eps)
        self.code_norm = nn.LayerNorm(d, eps=cfg.eps)
        self.positions = OFAPositions(d, cfg.max_positions + 2, grid**2 + 1, cfg.eps)
        self.self_position_bias = PositionBias(d, cfg.heads, self.scale)
        self.cross_position_bias = PositionBias(d, cfg.heads, self.scale)
        self.codes = cfg.codes
        if self.codes:
            w = cfg.code_grid
            cells = (torch.arange(w)[:, None] * grid + torch.arange(w) + 1).flatten()  # W*W
            ids = torch.cat([torch.zeros(1, dtype=torch.long), cells])  # 1+W*W: the start token takes id 0
            self.register_buffer("code_ids", ids, persistent=False)
            self.register_buffer("code_index", grid_relative_index(grid, grid)[ids][:, ids], persistent=False)
        if shared is not None:
            self.share(shared)

    def _biases(self, x: torch.Tensor, past, context_length, cross_mask):
        """Self-attention position biases [1, H, T, P+T] (absolute) and relative [H, T, P+T] per layer (a function
        of the layer), for T new positions after `past`, and the cross-attention bias [B|1, H, T, L] over
        `context_length` encoder positions."""
        t = x.shape[1]
        queries = torch.arange(t, device=x.device) + past  # T
        keys = torch.arange(past + t, device=x.device)  # P+T
        if self.codes:
            q_pos = self.positions.image(self.code_ids[queries])  # T,D
            k_pos = self.positions.image(self.code_ids[keys])  # P+T,D
            index = self.code_index[queries][:, keys]  # T,P+T

            def relative(i: int) -> torch.Tensor:
                return self.image_relative[i](index).permute(2, 0, 1)  # H,T,P+T
        else:
            q_pos, k_pos = self.positions.text(queries), self.positions.text(keys)  # T,D; P+T,D
            index = self.relative_index(queries, keys)  # T,P+T

            def relative(i: int) -> torch.Tensor:
                return self.text_bias(i, index)  # H,T,P+T
        absolute = self.self_position_bias(q_pos, k_pos)  # 1,H,T,P+T
        context = self.context_positions.context(context_length, self.context_ids)  # L,D
        cross = self.cross_position_bias(q_pos, context)  # 1,H,T,L
        if cross_mask is not None:
            cross = cross + padding_bias(cross_mask, x)  # B,H,T,L
        return absolute, relative, cross

    def embed_targets(self, ids: torch.Tensor) -> torch.Tensor:
        norm = self.code_norm if self.codes else self.embed_norm
        return self.dropout(norm(self.embed(ids)))  # B,T,D

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        ids, mask = inputs["input"]["ids"], inputs["input"].get("mask")
        x = self.embed_targets(ids)  # B,T,D
        context = inputs["cross"][self.context_field]  # B,L,D
        absolute, relative, cross = self._biases(x, 0, context.shape[1], inputs["cross"].get("mask"))
        causal = causal_bias(x)  # T,T
        pad = padding_bias(mask, x) if mask is not None else None  # B,1,1,T
        for i, layer in enumerate(self.layers):
            bias = combine_biases(absolute + relative(i), causal, pad)  # B|1,H,T,T
            x = layer(x, bias, context, cross)  # B,T,D
        x = self.final_norm(x)  # B,T,D
        out = {"sequence": x, "logits": F.linear(x, self.embed.weight)}  # B,T,V
        if mask is not None:
            out["mask"] = mask
        return out

    def step(self, inputs: dict[str, dict[str, torch.Tensor]], past: list[KVCache], cross: list[KVCache]
             ) -> tuple[dict[str, torch.Tensor], list[KVCache]]:
        """One decoding step (`exports.G.cache`): T new ids after P cached positions (no padding mask); `past`
        holds each layer's keys/values [B, H, P, d], `cross` each layer's precomputed encoder keys/values
        (`cross_kv`), whose mask may come in `inputs["cross"]`. Returns (the bundle, presents [B, H, P + T, d])."""
        offset = past[0].length
        x = self.embed_targets(inputs["input"]["ids"])  # B,T,D
        absolute, relative, cross_bias = self._biases(x, offset, cross[0].length,
                                                      inputs.get("cross", {}).get("mask"))
        causal = cached_causal_bias(x, offset)  # T,P+T
        presents = []
        for i, (layer, cache, kv) in enumerate(zip(self.layers, past, cross, strict=True)):
            bias = combine_biases(absolute + relative(i), causal)  # 1,H,T,P+T
            x, present = layer.step(x, bias, cache, kv, cross_bias)  # B,T,D
            presents.append(present)
        x = self.final_norm(x)  # B,T,D
        return {"sequence": x, "logits": F.linear(x, self.embed.weight)}, presents  # B,T,V

    def cross_kv(self, context: torch.Tensor) -> list[KVCache]:
        """Each layer's cross-attention keys/values [B, H, L, d] of the encoder's sequence [B, L, D]."""
        return [layer.cross_attn.project_kv(context) for layer in self.layers]
