"""remove_dropout: drop dropout that is the identity at inference.

Rewrites (in place), for an eval-mode model:
    call_module nn.Dropout / Dropout1d/2d/3d / AlphaDropout / FeatureAlphaDropout (any p) -> its input
    call_function F.dropout* / F.*alpha_dropout with `training` known to be False  -> its input
A functional call whose `training` is True, a graph value, or absent where the default is True
(F.dropout, F.dropout1d/2d/3d) is left alone: it is random at inference too. Module types match
exactly, so a subclass with its own forward is never removed. Unused submodules are deleted.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import nn
from torch.fx import GraphModule, Node

from mmspec.passes._infra import Pass, PassResult, PostconditionError, require_eval

_DROPOUT_MODULES = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)

# functional dropout -> default of its `training` argument (positional index 2 in every one)
_DROPOUT_FUNCTIONS = {
    F.dropout: True,
    F.dropout1d: True,
    F.dropout2d: True,
    F.dropout3d: True,
    F.alpha_dropout: False,
    F.feature_alpha_dropout: False,
}


class RemoveDropout(Pass):
    """Replace every inference-time-identity dropout node by its input. In place; needs eval mode."""

    name: ClassVar[str] = "remove_dropout"
    description: ClassVar[str] = "remove dropout modules and training=False functional dropout"

    def requires(self, gm: GraphModule) -> None:
        require_eval(gm, self.name)

    def call(self, gm: GraphModule) -> PassResult:
        self.fired = 0
        for node in list(gm.graph.nodes):
            if _is_identity_dropout(gm, node):
                node.replace_all_uses_with(_arg(node, 0, "input"))
                gm.graph.erase_node(node)
                self.fired += 1
        return self.finish(gm, self.fired > 0)

    def ensures(self, gm: GraphModule) -> None:
        left = [n.name for n in gm.graph.nodes if _is_identity_dropout(gm, n)]
        if left:
            raise PostconditionError(f"{self.name} left identity dropout nodes: {left}")


def _is_identity_dropout(gm: GraphModule, node: Node) -> bool:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)) in _DROPOUT_MODULES
    if node.op == "call_function" and node.target in _DROPOUT_FUNCTIONS:
        return _arg(node, 2, "training", _DROPOUT_FUNCTIONS[node.target]) is False
    return False


def _arg(node: Node, index: int, name: str, default: Any = None) -> Any:
    """The call argument at positional `index` or keyword `name`."""
    return node.args[index] if len(node.args) > index else node.kwargs.get(name, default)
