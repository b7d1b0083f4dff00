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
    [B, layers * dirs, H]; `forward` starts from zeros or from the `init` port's states, `step` from given ones."""

    def __init__(self, cell: str, width: int, hidden: int, layers: int, bidirectional: bool, dropout: float,
                 vocab: int | None, field: str | None):
        super().__init__()
        self.cell, self.field, self.layers, self.hidden = cell, field, layers, hidden
        self.dirs = 2 if bidirectional else 1
        self.embed = nn.Embedding(vocab, width) if vocab is not None else None
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(width, hidden, layers, batch_first=True, dropout=dropout, bidirectional=bidirectional)
        self.names = ("h", "c") if cell == "lstm" else ("h",)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        init = inputs.get("init")
        out, states = self.run(inputs["input"], {k: init[k] for k in self.names} if init is not None else None)
        return {"sequence": out, **states}

    def step(self, inputs: dict[str, dict[str, torch.Tensor]], past: list, cross: list | None = None, *,
             state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list, dict[str, torch.Tensor]]:
        """T new positions from `state` ({h, c} [B, layers, H]): (bundle, no keys/values, the next states)."""
        out, states = self.run(inputs["input"], state)
        return {"sequence": out}, [], states

    def run(self, bundle: dict[str, torch.Tensor], state: dict[str, torch.Tensor] | None
            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = self.embed(bundle["ids"]) if self.embed is not None else bundle[self.field]  # B,S,D
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
                               self.rnn.dropout, self.training)  # B,S,H*dirs; L*dirs,B,H
        states = {"h": h.transpose(0, 1)}  # B,L*dirs,H
        if self.cell == "lstm":
            states["c"] = c.transpose(0, 1)  # B,L*dirs,H
        return out, states


@fx.wrap
def recurrence(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, weights: list[torch.Tensor], cell: str,
               layers: int, dirs: int, dropout: float, train: bool) -> tuple[torch.Tensor, ...]:
    """x [B, S, D], h and c [L*dirs, B, H] (c unused for a GRU), torch's per-layer, per-direction (w_ih, w_hh,
    b_ih, b_hh) -> (out [B, S, H*dirs], h_n, c_n [L*dirs, B, H]); c_n is h_n for a GRU."""
    if torch.onnx.is_in_onnx_export():
        return _onnx_recurrence(x, h, c, weights, cell, layers, dirs)
    if cell == "lstm":
        return torch.lstm(x, (h.contiguous(), c.contiguous()), weights, True, layers, dropout, train, dirs == 2,
                          True)
    out, h_n = torch.gru(x, h.contiguous(), weights, True, layers, dropout, train, dirs == 2, True)
    return out, h_n, h_n


def _onnx_recurrence(x, h, c, weights, cell: str, layers: int, dirs: int) -> tuple[torch.Tensor, ...]:
    """One ONNX LSTM/GRU node per layer (time-major, gates reordered), the same results as torch.lstm/gru."""
    gates = _ONNX_GATES[cell]
    hidden = weights[1].shape[1]
    y = x.transpose(0, 1)  # S,B,D
    hs, cs = [], []
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
                "::LSTM", [y, w, r, b, None, h[rows].contiguous(), c[rows].contiguous()], attrs,
                dtypes=[x.dtype] * 3, shapes=[[seq, dirs, batch, hidden], state_shape, state_shape])
            cs.append(c_l)
        else:
            y4, h_l = torch.onnx.ops.symbolic_multi_out(
                "::GRU", [y, w, r, b, None, h[rows].contiguous()], {**attrs, "linear_before_reset": 1},
                dtypes=[x.dtype] * 2, shapes=[[seq, dirs, batch, hidden], state_shape])
        hs.append(h_l)
        y = y4.transpose(1, 2).flatten(2, 3)  # S,B,dirs*H
    h_n = torch.cat(hs)  # L*dirs,B,H
    return y.transpose(0, 1), h_n, torch.cat(cs) if cs else h_n  # B,S,H*dirs
