"""The modules behind `perceiver_resampler` and `gated_xattn_lm`, built from the Flamingo blocks."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.attention import KVCache, cached_causal_bias, causal_bias
from mmspec.blocks.flamingo import GatedCrossDense, PerceiverResampler, RMSDecoderLayer, image_causal
from mmspec.blocks.norms import RMSNorm
from mmspec.blocks.transformer import freeze


class ResamplerModule(nn.Module):
    """[B, M*S, D] -> per item (S = `tokens`, or the whole sequence as one item) -> [B, M/frames, latents, D]."""

    def __init__(self, cfg, field: str, dim: int, tokens: int | None):
        super().__init__()
        self.resampler = PerceiverResampler(cfg.width or dim, cfg.depth, cfg.heads, cfg.head_dim, cfg.latents,
                                            cfg.ffn or 4 * (cfg.width or dim), cfg.activation, cfg.eps, cfg.frames,
                                            cfg.time_embedding, dim)
        self.field, self.tokens = field, tokens

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = inputs["input"][self.field]  # B,M*S,D
        b, d = x.shape[0], x.shape[2]
        items = x if self.tokens is None else x.reshape(-1, self.tokens, d)  # B*M,S,D_in
        latents = self.resampler(items)  # B*M,N,D
        return {"latents": latents.reshape(b, -1, latents.shape[1], latents.shape[2])}  # B,M,N,D


class GatedXattnLMModule(nn.Module):
    """Token table, RMSDecoderLayers with a GatedCrossDense before every `every`-th, final RMSNorm, LM head."""

    def __init__(self, cfg, vocab: int, media_dim: int):
        super().__init__()
        w = cfg.width
        own, self.added_tokens = vocab - cfg.added_tokens, cfg.added_tokens
        self.embed = nn.Embedding(own, w)
        self.layers = nn.ModuleList(RMSDecoderLayer(w, cfg.heads, cfg.ffn, cfg.activation, cfg.eps, cfg.dropout,
                                                    cfg.gated) for _ in range(cfg.layers))
        self.xattn = nn.ModuleList(GatedCrossDense(w, media_dim, cfg.heads, cfg.ffn,
                                                   cfg.xattn_activation or cfg.activation, cfg.eps, cfg.dropout,
                                                   cfg.gated) for _ in range(-(-cfg.layers // cfg.every)))
        self.norm = RMSNorm(w, cfg.eps)
        self.head = nn.Linear(w, own, bias=False)
        if self.added_tokens:
            self.added = nn.Embedding(self.added_tokens, w)
            self.added_head = nn.Linear(w, self.added_tokens, bias=False)
        if not cfg.lm_trainable:
            freeze(self.layers)
            freeze(self.norm)
            self.embed.weight.requires_grad_(False)
        self.every, self.image_token = cfg.every, cfg.image_token

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token vectors [B, T, D]: the LM's own rows, and the added table for the last `added_tokens` ids."""
        if not self.added_tokens:
            return self.embed(ids)  # B,T,D
        own = self.embed.num_embeddings
        x = self.embed(ids.clamp(max=own - 1))  # B,T,D
        added = self.added((ids - own).clamp(min=0))  # B,T,D
        return torch.where((ids >= own)[:, :, None], added, x)  # B,T,D

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)  # B,T,D
        if not self.added_tokens:
            return self.head(h)  # B,T,V
        return torch.cat([self.head(h), self.added_head(h)], dim=-1)  # B,T,V

    def _media(self, inputs, ids: torch.Tensor, before: torch.Tensor | None = None):
        latents = inputs["media"]["latents"]  # B,M,N,Dm
        bias, gate = image_causal(ids, self.image_token, latents.shape[1], latents.shape[2], before)  # B,1,T,M*N
        return latents.flatten(1, 2), bias, gate  # B,M*N,Dm

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        ids = inputs["input"]["ids"]  # B,T
        media, media_bias, gate = self._media(inputs, ids)
        x = self._embed(ids)  # B,T,D
        bias = causal_bias(x)  # T,T
        for i, layer in enumerate(self.layers):
            if i % self.every == 0:
                x = self.xattn[i // self.every](x, media, media_bias, gate)  # B,T,D
            x = layer(x, bias)  # B,T,D
        return {"logits": self._logits(x)}  # B,T,V

    def step(self, inputs: dict[str, dict[str, torch.Tensor]], past: list[KVCache], cross=None, state=None):
        """New positions after the cached ones: each layer's self-attention extends its past [B, H, P, d] (rotary
        positions from P); the media come in whole; state `images` [B, 1] counts the earlier `<image>` tokens.
        Returns (the bundle, presents [B, H, P + T, d] per layer, the next state)."""
        ids = inputs["input"]["ids"]  # B,T
        before = state["images"]  # B,1
        media, media_bias, gate = self._media(inputs, ids, before)
        x = self._embed(ids)  # B,T,D
        bias = cached_causal_bias(x, past[0].length)  # T,P+T
        presents = []
        for i, (layer, cache) in enumerate(zip(self.layers, past, strict=True)):
            if i % self.every == 0:
                x = self.xattn[i // self.every](x, media, media_bias, gate)  # B,T,D
            x, present = layer.step(x, bias, cache)  # B,T,D; B,H,P+T,d
            presents.append(present)
        images = before + (ids == self.image_token).to(torch.float32).sum(1, keepdim=True)  # B,1
        return {"logits": self._logits(x)}, presents, {"images": images}  # B,T,V
