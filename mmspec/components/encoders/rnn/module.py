"""The module behind the `rnn` encoder: torch.nn.LSTM / torch.nn.GRU parameters, batch first, states batch first.

torch.export specialises the length of a sequence that aten.lstm/aten.gru read (their trace unrolls the time
loop), so the recurrence is one `torch.fx.wrap`ped call: eager it is torch.lstm/torch.gru, and under
torch.onnx.export it is one ONNX LSTM/GRU node per layer (`torch.onnx.ops.symbolic_multi_out`), whose sequence
length stays dynamic."""

from __future__ import annotations

import torch
from torch import fx, nn

_ONNX_GATES = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}
"""torch's gate order (LSTM i,f,g,o; GRU r,z,n) -> ONNX's (LSTM i,o,f,c; GRU z,r,h)."""


class Recurrent(nn.Module):
    """ids [B, S] (embedded) or a sequence [B, S, D] -> `sequence` [B, S, H * dirs] and final states `h` (`c`)
    [B, layers * dirs, H]; `forward` starts from zeros or from the `init` port's states (or its one tensor `start`,
    [B, H] when `start_vector`, else [B, layers * dirs, H]), `step` from given ones. `reverse` runs right to
    left; `embed_dropout` drops word vectors while training."""

    def __init__(self, cell: str, width: int, hidden: int, layers: int, bidirectional: bool, dropout: float,
                 vocab: int | None, field: str | None, bridge: int | None = None, final: bool = False,
                 reverse: bool = False, start: str | None = None, start_vector: bool = False,
                 embed_dropout: float = 0.0):
        super().__init__()
        self.reverse, self.start, self.start_vector = reverse, start, start_vector
        self.cell, self.field, self.layers, self.hidden = cell, field, layers, hidden
        self.dirs = 2 if bidirectional else 1
        self.embed = nn.Embedding(vocab, width) if vocab is not None else None
        self.embed_dropout = nn.Dropout(embed_dropout) if embed_dropout else None
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(width, hidden, layers, batch_first=True, dropout=dropout, bidirectional=bidirectional)
        self.names = ("h", "c") if cell == "lstm" else ("h",)
        self.bridge = nn.Linear(hidden, bridge) if bridge is not None else None
        self.final = final

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        init = inputs.get("init")
        if init is not None and self.start is not None:
            h0 = init[self.start]  # B,H or B,L*dirs,H
            init = {"h": h0[:, None].expand(-1, self.layers * self.dirs, -1) if self.start_vector else h0}  # B,L*dirs,H
        out, states = self.run(inputs["input"], {k: init[k] for k in self.names} if init is not None else None)
        if self.bridge is not None:
            states["bridge"] = torch.tanh(self.bridge(states["h"][:, -1:]))  # B,1,bridge
        if self.final:
            states["final"] = states["h"][:, -self.dirs :].flatten(1)  # B,dirs*H
        if "mask" in inputs["input"]:
            states["mask"] = inputs["input"]["mask"]  # B,S
        return {"sequence": out, **states}

    def step(self, inputs: dict[str, dict[str, torch.Tensor]], past: list, cross: list | None = None, *,
             state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list, dict[str, torch.Tensor]]:
        """T new positions from `state` ({h, c} [B, layers, H]): (bundle, no keys/values, the next states)."""
        out, states = self.run(inputs["input"], state)
        return {"sequence": out}, [], states

    def run(self, bundle: dict[str, torch.Tensor], state: dict[str, torch.Tensor] | None
            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = self.embed(bundle["ids"]) if self.embed is not None else bundle[self.field]  # B,S,D
        if self.embed_dropout is not None:
            x = self.embed_dropout(x)  # B,S,D
        mask = bundle.get("mask")  # B,S: 1s then 0s
        lengths = mask.sum(1).clamp(min=1) if mask is not None else None  # B
        if self.reverse:
            x = x.flip(1)  # B,S,D right to left
        if state is None:
            zeros = x.new_zeros(1, 1, 1).expand(self.layers * self.dirs, x.shape[0], self.hidden)  # L*dirs,B,H
            hx = [zeros for _ in self.names]
        else:
            hx = [state[k].transpose(0, 1) for k in self.names]  # L*dirs,B,H each
        weights = []
        for layer in range(self.layers):
            for suffix in ("", "_reverse")[: self.dirs]:
                weights += [getattr(self.rnn, f"{kind}_l{layer}{suffix}")
                            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        out, h, c = recurrence(x, hx[0], hx[-1], weights, self.cell, self.layers, self.dirs,
                               self.rnn.dropout, self.training, lengths)  # B,S,H*dirs; L*dirs,B,H
        if mask is not None:
            out = out * mask[..., None].to(out.dtype)  # B,S,H*dirs: 0 at the padding
        if self.reverse:
            out = out.flip(1)  # B,S,H back in input order
        states = {"h": h.transpose(0, 1)}  # B,L*dirs,H
        if self.cell == "lstm":
            states["c"] = c.transpose(0, 1)  # B,L*dirs,H
        return out, states


@fx.wrap
def recurrence(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, weights: list[torch.Tensor], cell: str,
               layers: int, dirs: int, dropout: float, train: bool,
               lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """x [B, S, D], h and c [L*dirs, B, H] (c unused for a GRU), torch's per-layer, per-direction (w_ih, w_hh,
    b_ih, b_hh) -> (out [B, S, H*dirs], h_n, c_n [L*dirs, B, H]); c_n is h_n for a GRU. With `lengths` [B] each
    row runs as a packed sequence of that length (ONNX: the LSTM/GRU node's sequence_lens)."""
    if torch.onnx.is_in_onnx_export():
        return _onnx_recurrence(x, h, c, weights, cell, layers, dirs, lengths)
    if lengths is not None and not x.is_meta:  # on the meta device (FLOP counts) unpacked: the same shapes
        return _packed(x, h, c, weights, cell, layers, dirs, dropout, train, lengths)
    if cell == "lstm":
        return torch.lstm(x, (h.contiguous(), c.contiguous()), weights, True, layers, dropout, train, dirs == 2,
                          True)
    out, h_n = torch.gru(x, h.contiguous(), weights, True, layers, dropout, train, dirs == 2, True)
    return out, h_n, h_n


def _packed(x, h, c, weights, cell: str, layers: int, dirs: int, dropout: float, train: bool,
            lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """torch.lstm/gru over rows packed by their lengths (longest first), back in batch order."""
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    order, back = packed.sorted_indices, packed.unsorted_indices
    h, c = h.index_select(1, order).contiguous(), c.index_select(1, order).contiguous()  # L*dirs,B,H
    if cell == "lstm":
        data, h_n, c_n = torch.lstm(packed.data, packed.batch_sizes, (h, c), weights, True, layers, dropout, train,
                                    dirs == 2)
    else:
        data, h_n = torch.gru(packed.data, packed.batch_sizes, h, weights, True, layers, dropout, train, dirs == 2)
        c_n = h_n
    out = nn.utils.rnn.PackedSequence(data, packed.batch_sizes, order, back)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # B,S,H*dirs
    return out, h_n.index_select(1, back), c_n.index_select(1, back)


def _onnx_recurrence(x, h, c, weights, cell: str, layers: int, dirs: int,
                     lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """One ONNX LSTM/GRU node per layer (time-major, gates reordered), the same results as torch.lstm/gru."""
    gates = _ONNX_GATES[cell]
    hidden = weights[1].shape[1]
    y = x.transpose(0, 1)  # S,B,D
    hs, cs = [], []
    lens = lengths.to(torch.int32) if lengths is not None else None  # B
    for layer in range(layers):
        per_dir = [weights[4 * (layer * dirs + d): 4 * (layer * dirs + d) + 4] for d in range(dirs)]

        def order(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(0, (len(gates), hidden))[gates].flatten(0, 1)  # G*H,...

        w = torch.stack([order(p[0]) for p in per_dir])  # dirs,G*H,D
        r = torch.stack([order(p[1]) for p in per_dir])  # dirs,G*H,H
        b = torch.stack([torch.cat([order(p[2]), order(p[3])]) for p in per_dir])  # dirs,2*G*H
        rows = slice(layer * dirs, (layer + 1) * dirs)
        seq, batch = y.shape[0], y.shape[1]
        attrs = {"hidden_size": hidden, "direction": "bidirectional" if dirs == 2 else "forward"}
        state_shape = [dirs, batch, hidden]
        if cell == "lstm":
            y4, h_l, c_l = torch.onnx.ops.symbolic_multi_out(
                "::LSTM", [y, w, r, b, lens, h[rows].contiguous(), c[rows].contiguous()], attrs,
                dtypes=[x.dtype] * 3, shapes=[[seq, dirs, batch, hidden], state_shape, state_shape])
            cs.append(c_l)
        else:
            y4, h_l = torch.onnx.ops.symbolic_multi_out(
                "::GRU", [y, w, r, b, lens, h[rows].contiguous()], {**attrs, "linear_before_reset": 1},
                dtypes=[x.dtype] * 2, shapes=[[seq, dirs, batch, hidden], state_shape])
        hs.append(h_l)
        y = y4.transpose(1, 2).flatten(2, 3)  # S,B,dirs*H
    h_n = torch.cat(hs)  # L*dirs,B,H
    return y.transpose(0, 1), h_n, torch.cat(cs) if cs else h_n  # B,S,H*dirs


class AttentionRecurrent(nn.Module):
    """RNNsearch's decoder: ids [B, T] (previous words), annotations [B, S, C], start state [B, 1, H] ->
    `sequence` [B, T, maxout or H] and the last state `h` [B, 1, H] (see `RNNAttentionDecoder`)."""

    def __init__(self, vocab: int, emb: int, context: int, hidden: int, dim: int, maxout: int | None):
        super().__init__()
        self.hidden, self.maxout = hidden, maxout
        self.embed = nn.Embedding(vocab, emb)
        self.cell = nn.GRUCell(emb + context, hidden)
        self.w_a = nn.Linear(hidden, dim)  # W_a s_(i-1)
        self.u_a = nn.Linear(context, dim, bias=False)  # U_a h_j
        self.v_a = nn.Parameter(torch.empty(dim).uniform_(-dim ** -0.5, dim ** -0.5))
        self.readout = nn.Linear(hidden + emb + context, 2 * maxout) if maxout else None

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        init = inputs.get("init")
        return self.run(inputs["input"], inputs["memory"], next(iter(init.values())) if init is not None else None)

    def step(self, inputs: dict[str, dict[str, torch.Tensor]], past: list, cross: list | None = None, *,
             state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list, dict[str, torch.Tensor]]:
        """T new positions from `state` ({h: [B, 1, H]}): (bundle, no keys/values, the next state)."""
        out = self.run(inputs["input"], inputs["memory"], state["h"])
        return {"sequence": out["sequence"]}, [], {"h": out["h"]}

    def run(self, bundle: dict[str, torch.Tensor], memory_bundle: dict[str, torch.Tensor],
            start: torch.Tensor | None) -> dict[str, torch.Tensor]:
        memory = memory_bundle["sequence"] if "sequence" in memory_bundle else next(iter(memory_bundle.values()))
        x = self.embed(bundle["ids"])  # B,T,E
        s0 = start[:, 0] if start is not None else x.new_zeros(1, 1).expand(x.shape[0], self.hidden)  # B,H
        keys = self.u_a(memory)  # B,S,A: U_a h_j, once per sequence
        weights = [self.w_a.weight, self.w_a.bias, self.v_a, self.cell.weight_ih, self.cell.weight_hh,
                   self.cell.bias_ih, self.cell.bias_hh]
        states, contexts, last = attend(x, s0, memory, keys, weights)  # B,T,H; B,T,C; B,H
        out = states
        if self.readout is not None:
            t = self.readout(torch.cat([states, x, contexts], -1))  # B,T,2*maxout
            out = t.unflatten(-1, (self.maxout, 2)).amax(-1)  # B,T,maxout
        return {"sequence": out, "h": last[:, None]}  # B,1,H


def _attend_step(s: torch.Tensor, y: torch.Tensor, memory: torch.Tensor, keys: torch.Tensor,
                 weights: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """One position: the context from s_(i-1) [B, H] over memory [B, S, C], then the GRU update from
    [y; c] [B, E + C]. Returns (s_i [B, H], c_i [B, C])."""
    w_a, b_a, v_a, w_ih, w_hh, b_ih, b_hh = weights
    e = (torch.tanh(keys + nn.functional.linear(s, w_a, b_a)[:, None]) * v_a).sum(-1)  # B,S
    a = torch.softmax(e, 1)  # B,S
    c = torch.bmm(a.unsqueeze(1), memory).squeeze(1)  # B,C
    return torch.gru_cell(torch.cat([y, c], -1), s, w_ih, w_hh, b_ih, b_hh), c  # B,H; B,C


@fx.wrap
def attend(x: torch.Tensor, s0: torch.Tensor, memory: torch.Tensor, keys: torch.Tensor,
           weights: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [B, T, E] from state s0 [B, H] -> (states [B, T, H], contexts [B, T, C], last state [B, H]): a Python
    loop eagerly, one torch scan (an ONNX Scan, dynamic T) under torch.onnx.export."""
    if torch.onnx.is_in_onnx_export():
        from torch._higher_order_ops import scan

        def body(carry, y):
            s, mem, k = carry
            s, c = _attend_step(s, y, mem, k, weights)
            return (s.clone(), mem.clone(), k.clone()), torch.cat([s, c], -1)

        (last, _, _), out = scan(body, (s0, memory, keys), x.transpose(0, 1))  # T,B,H+C
        out = out.transpose(0, 1)  # B,T,H+C
        return out[..., : s0.shape[1]], out[..., s0.shape[1]:], last
    states, contexts = [], []
    s = s0
    for t in range(x.shape[1]):
        s, c = _attend_step(s, x[:, t], memory, keys, weights)  # B,H; B,C
        states.append(s)
        contexts.append(c)
    return torch.stack(states, 1), torch.stack(contexts, 1), s
