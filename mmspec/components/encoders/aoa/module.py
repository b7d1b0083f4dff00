"""The module behind `aoa_decoder`: torch.nn.LSTMCell, the shared multi-head `Attention` with AoA, a query
LayerNorm; the recurrence is one `torch.fx.wrap`ped call (a Python loop eagerly, an ONNX Scan when exported)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from mmspec.blocks.attention import Attention, attention_on_attention, padding_bias


class AoADecoderModule(nn.Module):
    """ids [B, T], memory [B, R, D] (+ mask [B, R]) -> `sequence` [B, T, D] and the last states `h`, `c`, `context`
    [B, 1, D] (see `AoADecoder`)."""

    def __init__(self, vocab: int, embed: int, hidden: int, heads: int, dropout: float, attention_dropout: float,
                 eps: float):
        super().__init__()
        self.hidden, self.p, self.eps = hidden, dropout, eps
        self.word = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTMCell(embed + hidden, hidden)
        self.query_norm = nn.LayerNorm(hidden, eps=eps)
        self.attn = Attention(hidden, hidden, hidden, heads, hidden, attention_dropout, aoa=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return self.run(inputs["input"]["ids"], inputs["memory"], None)

    def step(self, inputs: dict[str, dict[str, torch.Tensor]], past: list, cross: list | None = None, *,
             state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list, dict[str, torch.Tensor]]:
        """T new positions from `state` ({h, c, context}: [B, 1, D]): (bundle, no keys/values, the next states)."""
        out = self.run(inputs["input"]["ids"], inputs["memory"], state)
        return {"sequence": out.pop("sequence")}, [], out

    def run(self, ids: torch.Tensor, memory_bundle: dict[str, torch.Tensor],
            state: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        memory = memory_bundle["sequence"] if "sequence" in memory_bundle else next(
            t for t in memory_bundle.values() if t.dim() == 3)  # B,R,D
        mask = memory_bundle.get("mask")
        x = self.dropout(torch.relu(self.word(ids)))  # B,T,E
        if mask is None:
            mean = memory.mean(1)  # B,D
            bias = memory.new_zeros(1, 1, 1, 1).expand(memory.shape[0], 1, 1, memory.shape[1])  # B,1,1,R
        else:
            keep = mask[..., None].type_as(memory)  # B,R,1
            mean = (memory * keep).sum(1) / keep.sum(1)  # B,D
            bias = padding_bias(mask, memory)  # B,1,1,R
        kv = self.attn.project_kv(memory)  # B,H,R,d each
        if state is None:
            zeros = memory.new_zeros(1, 1).expand(memory.shape[0], self.hidden)  # B,D
            start = (zeros, zeros, zeros)
        else:
            start = (state["h"][:, 0], state["c"][:, 0], state["context"][:, 0])  # B,D each
        weights = [self.lstm.weight_ih, self.lstm.weight_hh, self.lstm.bias_ih, self.lstm.bias_hh,
                   self.query_norm.weight, self.query_norm.bias, self.attn.q.weight, self.attn.q.bias,
                   self.attn.aoa.proj.weight, self.attn.aoa.proj.bias]
        drops = (self.p, self.attn.dropout) if self.training else (0.0, 0.0)
        contexts, h, c, context = aoa_recurrence(x, start, mean, kv.key, kv.value, bias, weights, self.eps,
                                                 drops)  # B,T,D; B,D x3
        return {"sequence": self.dropout(contexts), "h": h[:, None], "c": c[:, None], "context": context[:, None]}


def _aoa_step(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, context: torch.Tensor, mean: torch.Tensor,
              key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor, weights: list[torch.Tensor], eps: float,
              drops: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One position: the LSTM update from [x; mean + ctx_(t-1)] [B, E + D], the query W_q LN(h) over the
    keys/values [B, H, R, d], AoA of the heads' result and h. Returns (h, c, ctx) [B, D] each."""
    w_ih, w_hh, b_ih, b_hh, norm_w, norm_b, q_w, q_b, aoa_w, aoa_b = weights
    fed = torch.cat([x, mean + F.dropout(context, drops[0], drops[0] > 0)], -1)  # B,E+D
    h, c = torch.lstm_cell(fed, (h, c), w_ih, w_hh, b_ih, b_hh)  # B,D each
    q = F.linear(F.layer_norm(h, h.shape[-1:], norm_w, norm_b, eps), q_w, q_b)  # B,D
    q = q.unflatten(-1, (key.shape[1], -1)).unsqueeze(2)  # B,H,1,d (no batch size read: the scan body keeps it)
    att = F.scaled_dot_product_attention(q, key, value, attn_mask=bias, dropout_p=drops[1])  # B,H,1,d
    return h, c, attention_on_attention(att.flatten(1), h, aoa_w, aoa_b)  # B,D each


@fx.wrap
def aoa_recurrence(x: torch.Tensor, start: tuple[torch.Tensor, torch.Tensor, torch.Tensor], mean: torch.Tensor,
                   key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor, weights: list[torch.Tensor],
                   eps: float, drops: tuple[float, float]) -> tuple[torch.Tensor, ...]:
    """x [B, T, E] from the states (h, c, ctx) [B, D] -> (contexts [B, T, D], last h, c, ctx [B, D]): a Python loop
    eagerly, one torch scan (an ONNX Scan, dynamic T) under torch.onnx.export."""
    if torch.onnx.is_in_onnx_export():
        from torch._higher_order_ops import scan

        def body(carry, x_t):
            h, c, ctx, mean_, key_, value_, bias_ = carry
            h, c, ctx = _aoa_step(x_t, h, c, ctx, mean_, key_, value_, bias_, weights, eps, drops)
            return (h.clone(), c.clone(), ctx.clone(), mean_.clone(), key_.clone(), value_.clone(),
                    bias_.clone()), ctx.clone()

        init = tuple(t.contiguous() for t in (*start, mean, key, value, bias))  # as the body's clones
        (h, c, ctx, *_), out = scan(body, init, x.transpose(0, 1))  # T,B,D
        return out.transpose(0, 1), h, c, ctx  # B,T,D
    h, c, ctx = start
    contexts = []
    for t in range(x.shape[1]):
        h, c, ctx = _aoa_step(x[:, t], h, c, ctx, mean, key, value, bias, weights, eps, drops)  # B,D each
        contexts.append(ctx)
    return torch.stack(contexts, 1), h, c, ctx  # B,T,D
