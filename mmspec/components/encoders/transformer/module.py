"""The module behind the `transformer` encoder."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.attention import KVCache, cached_causal_bias, causal_bias, combine_biases, padding_bias
from mmspec.blocks.embeddings import (
    PatchEmbedding,
    RegionEmbedding,
    SequenceEmbedding,
    TokenEmbedding,
    drop_tokens,
)
from mmspec.blocks.mlp import FeedForward
from mmspec.blocks.pooling import make_pool
from mmspec.blocks.positions import GridRelativePositionBias
from mmspec.blocks.sparse import grid_sparse_bias
from mmspec.blocks.transformer import freeze, make_blocks
from mmspec.components.common import sequence_of


class TransformerEncoderModule(nn.Module):
    """embed -> [drop tokens] -> blocks (with cross-attention to a context) -> optional final norm -> optional
    pooling, over one input bundle (and the context's bundle with `cross`)."""

    def __init__(self, cfg, bundles, modality, shared: nn.Embedding | None = None, owner: nn.Module | None = None):
        super().__init__()
        e = cfg.embed
        if e.type == "tokens":
            self.embed = TokenEmbedding(
                modality.vocab_size,
                cfg.width,
                e.positions,
                e.segments,
                e.norm,
                cfg.eps,
                cfg.dropout,
                e.padding_idx,
                e.position_kind,
                e.scale,
                shared,
            )
        elif e.type == "patches":
            grid = (modality.height // e.patch_size) * (modality.width // e.patch_size)
            self.embed = PatchEmbedding(
                modality.channels, cfg.width, e.patch_size, grid, e.bias, e.class_token, e.norm, cfg.eps, cfg.dropout,
                e.mask_token, **({} if e.positions else {"positions": False}),
            )
        elif e.type == "regions":
            self.embed = RegionEmbedding(
                modality.dim,
                modality.boxes,
                cfg.width,
                cfg.eps,
                cfg.dropout,
                e.norm,
                e.positions or 0,
                e.position_ids,
                e.segments,
                e.segment,
                e.activation,
            )
        else:
            self.field, src = e.source(bundles["input"], cfg.input)
            prefix = cfg.mask_prefix(bundles["input"], src) if e.mask_token else 0
            self.embed = SequenceEmbedding(
                src.width, cfg.width, e.positions or 0, e.norm, cfg.eps, cfg.dropout, e.mask_token, prefix,
                e.class_token,
                e.project,
            )
        self.kind = e.type
        self.drop = cfg.drop_sizes(bundles["input"]["pixels"]) if cfg.drop else None
        """(patch tokens, tokens kept while training) with `drop`."""
        self.class_tokens = int(e.type == "patches" and e.class_token)
        context = sequence_of(bundles["cross"], cfg.cross.input, "cross") if cfg.cross else None
        self.context_field = context[0] if context else None
        relative = cfg.patch_grid(modality) if cfg.relative_position else None
        self.relative = GridRelativePositionBias(*relative, cfg.heads) if cfg.relative_position == "shared" else None
        if owner is not None:  # share_stack: the owner's layers and final norm (one tower, LIMoE)
            self.layers, self.final_norm = owner.layers, owner.final_norm
        else:
            self.layers = make_blocks(
                cfg,
                cfg.layers,
                context[1].width if context else None,
                cfg.cross.every if cfg.cross else 1,
                cfg.cross.gated if cfg.cross else False,
                cfg.stack_trainable,
                **({"relative": relative} if cfg.relative_position == "layer" else {}),
            )
            self.final_norm = nn.LayerNorm(cfg.width, eps=cfg.eps, bias=cfg.bias) if cfg.final_norm else None
            if self.final_norm is not None and not cfg.stack_trainable:
                freeze(self.final_norm)
        self.pool = make_pool(cfg.pool, cfg.width, cfg.eps)
        self.adapters = nn.ModuleDict()
        """Residual adapters by layer index (as a string), each x + fc2(act(fc1(x))) with fc2 starting at zero."""
        if cfg.adapters:
            for i in cfg.adapters.layers_of(cfg.layers):
                adapter = FeedForward(cfg.width, cfg.adapters.hidden, cfg.adapters.activation)
                nn.init.zeros_(adapter.fc2.weight)
                nn.init.zeros_(adapter.fc2.bias)
                self.adapters[str(i)] = adapter
        if cfg.trainable_layers is not None:
            self._freeze_all_but({str(part) for part in cfg.trainable_layers})
        self.causal = cfg.causal
        self.emit_first = cfg.emit_first
        self.emit_hidden = cfg.emit_hidden
        s = cfg.sparse
        self.sparse = (s.kinds(cfg.layers), s.prefix, s.columns, s.kernel, tuple(s.extent), s.rows) if s else None
        """(mask kind per layer, text prefix, grid columns, convolution kernel, nearby extent, grid rows) of the
        sparse attention (DALL-E, NÜWA)."""

    def _freeze_all_but(self, kept: set[str]) -> None:
        """`trainable_layers`: freeze every part not in `kept` (layer indices as strings, `embed`, `final_norm`,
        `pool`, `adapter.I`); parts no entry can name (a shared relative position table) are frozen too."""
        for name, part in self.named_children():
            if name == "layers":
                for i, layer in enumerate(part):
                    if str(i) not in kept:
                        freeze(layer)
            elif name == "adapters":
                for i, adapter in part.items():
                    if f"adapter.{i}" not in kept:
                        freeze(adapter)
            elif name not in kept:
                freeze(part)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        b = inputs["input"]
        mask = b.get("mask")
        extra = {}
        if self.kind == "tokens":
            x = self.embed(b["ids"], b.get("segments"))  # B,S,D
        elif self.kind == "patches":
            x = self.embed(b["pixels"])  # B,1+N,D
        elif self.kind == "regions":
            x = self.embed(b["features"], b.get("boxes"))  # B,R,D
        else:
            x = self.embed(b[self.field], b.get("restore"))  # B,S,D
            if self.embed.cls is not None and mask is not None:
                mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)  # B,1+S
            if "dropped" in b and "restore" in b:
                extra["dropped"] = b["dropped"]
        if self.drop is not None:
            x, extra["restore"], extra["dropped"] = drop_tokens(x, self.class_tokens, *self.drop, self.training)
        bias = padding_bias(mask, x) if mask is not None else None  # B,1,1,S
        if self.causal:
            bias = causal_bias(x) if bias is None else bias + causal_bias(x)  # (B,1,)S,S
        if self.relative is not None:
            bias = combine_biases(bias, self.relative())  # (B|1),H,S,S
        context = context_bias = None
        if self.context_field is not None:
            context = inputs["cross"][self.context_field]  # B,T,Dc
            context_mask = inputs["cross"].get("mask")
            context_bias = padding_bias(context_mask, context) if context_mask is not None else None  # B,1,1,T
        routers = []
        for i, (layer, layer_bias) in enumerate(zip(self.layers, self.layer_biases(x, 0, bias), strict=True)):
            x = layer(x, layer_bias, context, context_bias)  # B,S,D
            if layer.routed:
                x, logits = x  # B,S,D; B,S,E
                routers.append(logits)
            if str(i) in self.adapters:
                x = x + self.adapters[str(i)](x)  # B,S,D
        hidden = x  # B,S,D
        if self.final_norm is not None:
            x = self.final_norm(x)
        out = {"sequence": x}
        if self.emit_hidden:
            out["hidden"] = hidden
        if mask is not None:
            out["mask"] = mask
        if routers:
            out["router"] = torch.cat(routers, dim=1)  # B,n*S,E
        if self.pool is not None:
            out["pooled"] = self.pool(x, b.get("ids"), mask)  # B,D'
        if self.emit_first:
            out["first"] = x[:, 0]  # B,D
        return {**out, **extra}

    def step(
        self, inputs: dict[str, dict[str, torch.Tensor]], past: list[KVCache], cross: list[KVCache] | None = None
    ) -> tuple[dict[str, torch.Tensor], list[KVCache]]:
        """One decoding step (`exports.G.cache`): the new positions of `inputs` (no padding mask) attend to every
        past position; `past` holds each layer's keys/values [B, H, P, d] (P may be 0), `cross` the context's
        precomputed ones for the cross-attention layers (`cross_kv`), whose `mask` may still come in `inputs`.
        Returns (the bundle, present keys/values per layer [B, H, P + T, d])."""
        b = inputs["input"]
        offset = past[0].length if past else 0
        if self.kind == "tokens":
            x = self.embed(b["ids"], b.get("segments"), offset=offset)  # B,T,D
        else:
            x = self.embed(b[self.field], offset=offset)  # B,T,D
        bias = cached_causal_bias(x, offset)  # T,P+T
        context_bias = None
        if self.context_field is not None and "mask" in inputs.get("cross", {}):
            context_bias = padding_bias(inputs["cross"]["mask"], x)  # B,1,1,S
        kv = iter(cross or ())
        presents = []
        layers = zip(self.layers, past, self.layer_biases(x, offset, bias), strict=True)
        for i, (layer, cache, layer_bias) in enumerate(layers):
            x, present = layer.step(x, layer_bias, cache, next(kv) if layer.cross else None, context_bias)  # B,T,D
            presents.append(present)
            if str(i) in self.adapters:
                x = x + self.adapters[str(i)](x)  # B,T,D
        if self.final_norm is not None:
            x = self.final_norm(x)
        out = {"sequence": x}
        if self.pool is not None:
            out["pooled"] = self.pool(x, b.get("ids"), None)  # B,D'
        return out, presents

    def layer_biases(self, x: torch.Tensor, offset, bias: torch.Tensor | None) -> list[torch.Tensor | None]:
        """The self-attention bias of each layer for the positions offset.. of x [B, T, D]: `bias` everywhere, plus
        each layer's sparse mask [T, offset + T] with `sparse` (one per kind, shared by the layers of that kind)."""
        if self.sparse is None:
            return [bias] * len(self.layers)
        kinds, *grid = self.sparse
        masks = {kind: combine_biases(bias, grid_sparse_bias(kind, x, offset, *grid))
                 for kind in dict.fromkeys(kinds)}  # (B,1,)T,P+T each
        return [masks[kind] for kind in kinds]

    def cross_kv(self, context: torch.Tensor) -> list[KVCache]:
        """The keys/values [B, H, S, d] that each cross-attention layer reads from context [B, S, Dc], in layer
        order: computed once per context (an encoder graph) and fed to every `step`."""
        return [layer.cross_attn.project_kv(context) for layer in self.layers if layer.cross]
