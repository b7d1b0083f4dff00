"""Sparsely-gated mixture-of-experts feed-forward layer (Shazeer et al. 2017; GShard/Switch capacity; V-MoE
Batch Priority Routing), with the routing inside the traced graph.

Contract:
- `route(logits, top_k, capacity_factor, renormalize, priority)` -> combine weights [N, E]: row n holds the gate
  of each expert token n is sent to and 0 elsewhere; a choice beyond an expert's capacity is dropped (0).
- `MixtureOfExperts(...)(x)` maps x [B, S, D] -> (y [B, S, D], router logits [B, S, E]); the B*S tokens are
  routed together (one group: capacities count over the whole batch). A token whose every choice
  was dropped gets y = 0, so the residual around the layer passes it through unchanged.
- Static shapes: the capacity is a tensor computed from the token count, dispatch is a dense [N, E] combine
  tensor and every expert runs on every token (batched weights); the weights zero all but the routed,
  in-capacity pairs. That costs E dense FFNs in the graph, but it is exact and exports to ONNX with any
  dynamic token count. Noise (noisy top-k gating) is added only in training, so eval and export are deterministic.
Everything is torch.fx symbolically traceable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmspec.blocks.activations import activation


def expert_positions(choice: torch.Tensor, order: torch.Tensor | None = None) -> torch.Tensor:
    """Slot of each choice in its expert's buffer: choice [N, K, E] one-hot (expert of the k-th choice of token n).

    Slots are filled choice rank by choice rank (every token's first choice before any second choice), within a
    rank in token order, or in `order` (a permutation of the N tokens, highest priority first). Returns [N, K]."""
    n, k, e = choice.shape
    if order is not None:
        choice = choice[order]  # N,K,E in priority order
    ranked = choice.transpose(0, 1).reshape(k * n, e)  # K*N,E: rank-major
    taken = ranked.cumsum(0) - ranked  # K*N,E: earlier choices of the same expert
    slots = (taken * ranked).sum(-1).reshape(k, n).transpose(0, 1)  # N,K
    if order is not None:
        slots = slots[order.argsort()]  # N,K back in token order
    return slots


def route(
    logits: torch.Tensor,
    top_k: int,
    capacity_factor: float | None = None,
    renormalize: bool = True,
    priority: str = "order",
) -> torch.Tensor:
    """Top-k routing of router logits [N, E] -> combine weights [N, E].

    Gates are the softmax probabilities of the k chosen experts, renormalised to sum to 1 with `renormalize`
    (softmax over the top-k logits, Shazeer et al.), else kept as is (Switch, V-MoE). With `capacity_factor`, an
    expert takes at most ceil(capacity_factor * N * k / E) choices; `priority` "order" fills the buffers in token
    order, "score" by descending top-1 gate (Batch Priority Routing)."""
    experts = logits.shape[-1]
    probs = F.softmax(logits, dim=-1)  # N,E
    gates, index = probs.topk(top_k, dim=-1)  # N,K
    if renormalize:
        gates = gates / gates.sum(-1, keepdim=True)  # N,K
    choice = (index[..., None] == torch.arange(experts, device=logits.device)).type_as(probs)  # N,K,E
    if capacity_factor is not None:
        order = gates[:, 0].argsort(descending=True) if priority == "score" else None  # N
        slots = expert_positions(choice, order)  # N,K
        tokens = torch.ones_like(probs[:, 0]).sum()  # scalar N
        capacity = torch.ceil(tokens * (capacity_factor * top_k / experts))  # scalar
        gates = gates * (slots < capacity).type_as(gates)  # N,K
    return (choice * gates[..., None]).sum(1)  # N,E


class MixtureOfExperts(nn.Module):
    """E position-wise experts Linear(dim, hidden) -> act -> Linear(hidden, dim) behind a linear router
    (no bias). `noise`: Shazeer's noisy top-k gating, logits + N(0, 1) * softplus(W_noise x) while training.
    Returns (sum over experts of combine weight * expert(x), router logits)."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        experts: int,
        top_k: int,
        act: str,
        *,
        capacity_factor: float | None = None,
        noise: bool = False,
        bias: bool = False,
        renormalize: bool = True,
        priority: str = "order",
    ):
        super().__init__()
        self.router = nn.Linear(dim, experts, bias=False)
        self.noise = nn.Linear(dim, experts, bias=False) if noise else None
        self.fc1 = nn.Parameter(torch.empty(experts, dim, hidden))
        self.fc2 = nn.Parameter(torch.empty(experts, hidden, dim))
        self.bias1 = nn.Parameter(torch.zeros(experts, hidden)) if bias else None
        self.bias2 = nn.Parameter(torch.zeros(experts, dim)) if bias else None
        self.act = activation(act)
        self.top_k, self.capacity_factor = top_k, capacity_factor
        self.renormalize, self.priority = renormalize, priority
        nn.init.uniform_(self.fc1, -1 / math.sqrt(dim), 1 / math.sqrt(dim))
        nn.init.uniform_(self.fc2, -1 / math.sqrt(hidden), 1 / math.sqrt(hidden))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = x.reshape(-1, x.shape[-1])  # N,D
        logits = self.router(tokens)  # N,E
        if self.noise is not None and self.training:
            logits = logits + torch.randn_like(logits) * F.softplus(self.noise(tokens))  # N,E
        combine = route(logits, self.top_k, self.capacity_factor, self.renormalize, self.priority)  # N,E
        h = torch.einsum("nd,edh->neh", tokens, self.fc1)  # N,E,H
        if self.bias1 is not None:
            h = h + self.bias1
        out = torch.einsum("neh,ehd->ned", self.act(h), self.fc2)  # N,E,D
        if self.bias2 is not None:
            out = out + self.bias2
        y = torch.einsum("ne,ned->nd", combine.type_as(out), out)  # N,D
        return y.view_as(x), logits.view(x.shape[0], x.shape[1], -1)  # B,S,D; B,S,E

