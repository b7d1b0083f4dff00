"""Modules behind the `mlp` and `discriminator` heads."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.activations import activation


def _norm(kind: str, width: int, eps: float) -> nn.Module | None:
    if kind == "batch":
        return nn.BatchNorm1d(width, eps=eps)
    return nn.LayerNorm(width, eps=eps) if kind == "layer" else None


class MLP(nn.Module):
    """[input act] -> [Linear -> norm -> act] x len(hidden) -> Linear(out) [-> output norm] [-> output act], over
    the last axis of [B, D] or [B, S, D]."""

    def __init__(self, dim: int, hidden: list[int], out: int, norm: str, act: str, eps: float, name: str,
                 bias: bool = True, hidden_bias: bool = True, input_act: str = "identity", out_norm: str = "none",
                 out_act: str = "identity"):
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers.append(nn.Linear(dim, width, bias=hidden_bias))
            if (n := _norm(norm, width, eps)) is not None:
                layers.append(n)
            layers.append(activation(act))
            dim = width
        layers.append(nn.Linear(dim, out, bias=bias))
        self.mlp = nn.Sequential(*layers)
        self.input_act = activation(input_act) if input_act != "identity" else None
        self.out_norm = _norm(out_norm, out, eps)
        self.out_act = activation(out_act) if out_act != "identity" else None
        self.name = name

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = next(iter(inputs["input"].values()))  # B,(S,)D
        y = x.flatten(0, -2)  # N,D  (BatchNorm1d needs [N, C])
        if self.input_act is not None:
            y = self.input_act(y)  # N,D
        y = self.mlp(y)  # N,out
        if self.out_norm is not None:
            y = self.out_norm(y)  # N,out
        if self.out_act is not None:
            y = self.out_act(y)  # N,out
        return {self.name: y.unflatten(0, x.shape[:-1])}  # B,(S,)out


class TransposedLinear(nn.Module):
    """y = x W (+ b): another Linear's weight W [D, out] used transposed, over the last axis of [B, (S,) D]."""

    def __init__(self, weight: nn.Parameter, bias: bool, name: str):
        super().__init__()
        self.weight = weight  # shared with the Linear it comes from
        self.bias = nn.Parameter(torch.zeros(weight.shape[1])) if bias else None
        self.name = name

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = next(iter(inputs["input"].values()))  # B,(S,)D
        return {self.name: nn.functional.linear(x, self.weight.t(), self.bias)}  # B,(S,)out


class MLPDiscriminator(nn.Module):
    """One MLP scoring real and fake vectors (concatenated with the condition when there is one)."""

    def __init__(self, dim: int, hidden: list[int], act: str):
        super().__init__()
        self.net = MLP(dim, hidden, 1, "none", act, 1e-5, "logits")

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.net({"input": {"x": x}})["logits"]  # B,1

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        real = next(iter(inputs["real"].values()))  # B,D
        fake = next(iter(inputs["fake"].values()))  # B,D
        if "condition" not in inputs:
            return {"real": self.score(real), "fake": self.score(fake)}
        c = next(iter(inputs["condition"].values()))  # B,C
        return {
            "real": self.score(torch.cat([real, c], -1)),
            "fake": self.score(torch.cat([fake, c], -1)),
            "mismatched": self.score(torch.cat([real, c.roll(1, 0)], -1)),  # another example's condition
        }
