"""Collectives that objectives need under torch.distributed; each is the identity on one process.

Losses here are written so that the mean over K processes of their per-process values (which is what
DDP computes for gradients, and what `mmspec fit` records) equals the loss of one process on the whole
global batch: token-level means divide by the global count (`global_mean`), and contrastive losses
compare against the embeddings of every process (`gather_rows`).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

_GROUP = None
"""Process group for the objectives' collectives (a separate one, so they never interleave with DDP's)."""


def set_group(group) -> None:
    global _GROUP
    _GROUP = group


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(_GROUP), dist.get_world_size(_GROUP)
    return 0, 1


def global_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of a (detached) tensor over all processes."""
    x = x.detach().clone()
    if world()[1] > 1:
        dist.all_reduce(x, group=_GROUP)
    return x


def global_mean(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """`total / count` over the global batch, as this process's share: total * K / (sum of counts)."""
    k = world()[1]
    return total * k / global_sum(count.to(total.device, total.dtype)).clamp_min(1.0)


class _GatherRows(torch.autograd.Function):
    """all_gather along dim 0 whose backward sums every process's gradient for this process's rows (as CLIP)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        rank, k = world()
        parts = [torch.empty_like(x) for _ in range(k)]
        dist.all_gather(parts, x.contiguous(), group=_GROUP)
        ctx.rows, ctx.rank = x.shape[0], rank
        return torch.cat(parts)  # K*B,...

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=_GROUP)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(rows of every process concatenated in rank order, offset of this process's rows); keeps gradients."""
    rank, k = world()
    if k == 1:
        return x, 0
    return _GatherRows.apply(x), rank * x.shape[0]
