"""The module behind the `contrastive` head (CLIP similarity logits)."""

from __future__ import annotations

import torch
from torch import nn


class ContrastiveModule(nn.Module):
    """Cosine similarity logits: CLIP's learned log inverse temperature (exp'd, as in the reference), or ALIGN's
    learned temperature that divides the cosines (`temperature` its initial value)."""

    def __init__(self, names: list[str], logit_scale_init: float, temperature: float | None = None):
        super().__init__()
        self.a, self.b = names
        if temperature is None:
            self.logit_scale = nn.Parameter(torch.tensor(logit_scale_init))
        else:
            self.temperature = nn.Parameter(torch.tensor(temperature))

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
