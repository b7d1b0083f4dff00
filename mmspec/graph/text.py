"""Canonical, diff-friendly text forms of a captured graph and of a parameter table (golden files)."""

from __future__ import annotations

from torch import fx, nn


def _arg(a) -> str:
    if isinstance(a, fx.Node):
        return f"%{a.name}"
    if isinstance(a, tuple | list):
        inner = ", ".join(_arg(x) for x in a)
        return f"({inner})" if isinstance(a, tuple) else f"[{inner}]"
    if isinstance(a, dict):
        return "{" + ", ".join(f"{k}: {_arg(v)}" for k, v in a.items()) + "}"
    if isinstance(a, slice):
        return f"{_arg(a.start)}:{_arg(a.stop)}:{_arg(a.step)}"
    if isinstance(a, float):
        return repr(round(a, 8))
    return repr(a)


def _target(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return f"{node.target}<{type(gm.get_submodule(node.target)).__name__}>"
    if node.op == "call_function":
        mod = getattr(node.target, "__module__", None) or ""
        return f"{mod.replace('torch._C._nn', 'torch.nn.functional')}.{getattr(node.target, '__name__', node.target)}"
    return str(node.target)


def graph_text(gm: fx.GraphModule) -> str:
    """One line per node: `%name = op target(args, kwargs)`, in graph order."""
    lines = []
    for node in gm.graph.nodes:
        args = ", ".join([*(_arg(a) for a in node.args), *(f"{k}={_arg(v)}" for k, v in node.kwargs.items())])
        lines.append(f"%{node.name} = {node.op} {_target(gm, node)}({args})")
    return "\n".join(lines) + "\n"


def param_table(model: nn.Module) -> str:
    """One line per parameter (`name shape count`, tied tensors once), then the total."""
    lines, total = [], 0
    for name, p in model.named_parameters():
        lines.append(f"{name} {list(p.shape)} {p.numel()}")
        total += p.numel()
    lines.append(f"total {total}")
    return "\n".join(lines) + "\n"
