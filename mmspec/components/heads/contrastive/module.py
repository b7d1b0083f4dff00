"""The module behind the `contrastive` head (CLIP similarity logits)."""

from __future__ import annotations

import torch
from torch import nn


class ContrastiveModule(nn.Module):
    """Cosine similarity logits: CLIP's learned log inverse temperature (exp'd, as in the reference), or ALIGN's
    learned temperature that divides the cosines (`temperature` its initial value); with `learn` false either is a
    constant buffer (VATT's fixed temperature)."""

    def __init__(self, names: list[str], logit_scale_init: float, temperature: float | None = None,
                 learn: bool = True):
        super().__init__()
        self.a, self.b = names
        name, value = ("logit_scale", logit_scale_init) if temperature is None else ("temperature", temperature)
        if learn:
            setattr(self, name, nn.Parameter(torch.tensor(value)))
        else:  # a constant (not in the state dict)
            self.register_buffer(name, torch.tensor(value), persistent=False)

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        a = next(iter(inputs[self.a].values()))
        b = next(iter(inputs[self.b].values()))
        a = a / a.norm(p=2, dim=-1, keepdim=True)  # Ba,D
        b = b / b.norm(p=2, dim=-1, keepdim=True)  # Bb,D
        if hasattr(self, "temperature"):
            logits = a @ b.t() / self.temperature  # Ba,Bb
        else:
            logits = self.logit_scale.exp() * a @ b.t()  # Ba,Bb
        return {
            f"logits_per_{self.a}": logits,
            f"logits_per_{self.b}": logits.t(),
            f"{self.a}_embeds": a,
            f"{self.b}_embeds": b,
        }
