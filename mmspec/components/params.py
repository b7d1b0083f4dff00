"""Parameter-count formulas of the shared blocks and component modules, for budgets before allocation (torch-free).

Each function returns exactly what the matching torch module allocates (tests/test_budget.py checks
every component against a meta-device build), as a Python int, so huge configs cost nothing.
"""

from __future__ import annotations

from typing import Any


def linear(fan_in: int, fan_out: int, bias: bool = True) -> int:
    return fan_in * fan_out + (fan_out if bias else 0)


def layer_norm(dim: int) -> int:
    return 2 * dim


def conv_bn(cin: int, cout: int, kernel: int) -> int:
    """Conv2d without bias + BatchNorm2d (running statistics are buffers, not parameters)."""
    return cin * cout * kernel * kernel + 2 * cout


def feed_forward(dim: int, hidden: int, out: int | None = None) -> int:
    return linear(dim, hidden) + linear(hidden, out or dim)


def attention(q_dim: int, kv_dim: int, inner: int, out_dim: int) -> int:
    return linear(q_dim, inner) + 2 * linear(kv_dim, inner) + linear(inner, out_dim)


def block(width: int, ffn: int) -> int:
    """blocks.transformer.Block: self-attention, feed-forward and their two LayerNorms."""
    return attention(width, width, width, width) + feed_forward(width, ffn) + 2 * layer_norm(width)


def cross_sublayer(width: int, kv_dim: int, gated: bool) -> int:
    """The optional cross-attention sublayer of a Block: attention to a kv_dim context, its LayerNorm, the gate."""
    return attention(width, kv_dim, width, width) + layer_norm(width) + int(gated)


def stack(cfg: Any) -> int:
    """`cfg.layers` blocks of a StackConfig."""
    return cfg.layers * block(cfg.width, cfg.ffn)


def pool(cfg: Any, width: int) -> int:
    """layers.common.Pool: optional LayerNorm and dense layer."""
    if cfg is None:
        return 0
    return (layer_norm(width) if cfg.norm else 0) + (linear(width, cfg.dense) if cfg.dense else 0)
