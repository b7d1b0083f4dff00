"""eliminate_dead_code: erase nodes whose value is never used, then the modules and tensors they held.

In place. Uses `Graph.eliminate_dead_code` with a stricter side-effect test: besides torch's own
(placeholders, outputs, mutating aten ops, modules marked `_is_impure`), a node is kept when it mutates
an input in a way symbolic_trace leaves visible only by name: `x.add_()`-style methods, `torch.relu_`-
style functions, and calls or modules with `inplace=True`. Placeholders and the output are never
erased. Afterwards, submodules no node reaches and parameters/buffers no node reaches are deleted.
"""

from __future__ import annotations

import inspect
import itertools
from typing import ClassVar

from torch.fx import GraphModule, Node

from mmspec.passes._infra import Pass, PassResult, PostconditionError


class EliminateDeadCode(Pass):
    """Erase unused pure nodes, unused submodules and unreferenced parameters/buffers. In place."""

    name: ClassVar[str] = "eliminate_dead_code"
    description: ClassVar[str] = "remove unused nodes, submodules, parameters and buffers"

    def __init__(self) -> None:
        super().__init__()
        self.deleted_attributes: list[str] = []  # submodules, parameters, buffers deleted (last call)

    def call(self, gm: GraphModule) -> PassResult:
        nodes_before = len(gm.graph.nodes)
        modules_before = [name for name, _ in gm.named_modules()]
        gm.graph.eliminate_dead_code(is_impure_node=_has_side_effect)
        gm.delete_all_unused_submodules()
        modules_after = {name for name, _ in gm.named_modules()}
        self.fired = nodes_before - len(gm.graph.nodes)
        self.deleted_attributes = [name for name in modules_before if name not in modules_after]
        self.deleted_attributes += _delete_unreferenced_tensors(gm)
        return self.finish(gm, self.fired > 0 or bool(self.deleted_attributes))

    def ensures(self, gm: GraphModule) -> None:
        dead = [n.name for n in gm.graph.nodes if not n.users and not _has_side_effect(n)]
        if dead:
            raise PostconditionError(f"{self.name} left dead nodes: {dead}")


def _has_side_effect(node: Node) -> bool:
    if node.is_impure():
        return True
    if node.op == "call_method":
        return _is_inplace_name(node.target)
    if node.op == "call_module":
        return getattr(node.graph.owning_module.get_submodule(node.target), "inplace", False) is True
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        is_operator = getattr(node.target, "__module__", None) == "_operator"  # operator.and_ is pure
        return (_is_inplace_name(name) and not is_operator) or _inplace_argument(node)
    return False


def _is_inplace_name(name: str) -> bool:
    return name.endswith("_") and not name.endswith("__")


def _inplace_argument(node: Node) -> bool:
    """Whether the call passes inplace=True, by keyword or, for Python functions, by position."""
    try:
        arguments = inspect.signature(node.target).bind(*node.args, **node.kwargs).arguments
    except (TypeError, ValueError):  # builtins without a signature, or arguments that do not bind
        arguments = node.kwargs
    return arguments.get("inplace") is True


def _delete_unreferenced_tensors(gm: GraphModule) -> list[str]:
    """Delete parameters and buffers that no call_module or get_attr target is a prefix of."""
    referenced = {n.target for n in gm.graph.nodes if n.op in ("call_module", "get_attr")}
    named = itertools.chain(
        gm.named_parameters(remove_duplicate=False), gm.named_buffers(remove_duplicate=False)
    )
    unreferenced = [name for name, _ in named if referenced.isdisjoint(_prefixes(name))]
    for name in unreferenced:
        owner, _, attr = name.rpartition(".")
        delattr(gm.get_submodule(owner), attr)
    return unreferenced


def _prefixes(qualified_name: str) -> list[str]:
    """'a.b.w' -> ['a', 'a.b', 'a.b.w']."""
    return list(itertools.accumulate(qualified_name.split("."), lambda a, b: f"{a}.{b}"))
