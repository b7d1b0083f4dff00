"""Module behind the `distributional` head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LINKS = {"identity": lambda x: x, "exp": torch.exp, "softplus": F.softplus, "sigmoid": torch.sigmoid}


class DistributionalHead(nn.Module):
    """params: (name, link, [(port, width, penalty dict or None)]) per distribution parameter."""

    def __init__(self, params: list[tuple[str, str, list[tuple[str, int, dict | None]]]]):
        super().__init__()
        self.links = {name: link for name, link, _ in params}
        self.ports = {name: [port for port, _, _ in terms] for name, _, terms in params}
        self.intercept = nn.ParameterDict({name: nn.Parameter(torch.zeros(1)) for name, _, _ in params})
        self.coef = nn.ModuleDict({port: nn.Linear(width, 1, bias=False)
                                   for _, _, terms in params for port, width, _ in terms})
        self.penalties = {port: pen for _, _, terms in params for port, _, pen in terms if pen is not None}

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        out = {}
        first = next(iter(next(iter(inputs.values())).values()))  # B or B,p
        for name, ports in self.ports.items():
            eta = self.intercept[name].expand(first.shape[0])  # B
            for port in ports:
                x = next(iter(inputs[port].values()))  # B or B,p
                eta = eta + self.coef[port](x.reshape(x.shape[0], -1))[:, 0]  # B
            out[name] = LINKS[self.links[name]](eta)  # B
        return out

    def penalty(self) -> torch.Tensor:
        """sum over penalised terms of strength * w^T S w (S = D^T D of `order`-th differences, or I)."""
        total = self.intercept[next(iter(self.intercept))].new_zeros(())
        for port, pen in self.penalties.items():
            w = self.coef[port].weight[0]  # p
            w = torch.diff(w, n=pen["order"]) if pen["kind"] == "difference" else w
            total = total + pen["strength"] * (w * w).sum()
        return total
