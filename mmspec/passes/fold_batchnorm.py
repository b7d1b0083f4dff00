"""fold_batchnorm: fold an eval-mode BatchNorm into the Conv or Linear that feeds it.

Patterns (module types match exactly, so e.g. a weight-standardising Conv2d subclass never folds):
    BatchNorm2d(Conv2d(x))              -> Conv2d'(x)
    BatchNorm2d(ConvTranspose2d(x))     -> ConvTranspose2d'(x)   (groups 1: output channels are weight axis 1)
    BatchNorm1d(Conv1d(x))              -> Conv1d'(x)
    BatchNorm1d(Linear(x)), x: [N, C]   -> Linear'(x)

Algebra. In eval mode BN(y) = (y - mean) * s + beta with s = gamma / sqrt(var + eps) per channel c,
and the producer's output channel c is row c of its weight (column c of a transposed conv's), so
    w'[c] = w[c] * s[c]        b'[c] = (b[c] - mean[c]) * s[c] + beta[c]
with b = 0 for a producer without bias and gamma = 1, beta = 0 for BN with affine=False.

Checks (a refusal is recorded in `refusals` with its reason):
- the BN tracks running statistics;
- the producer's output has exactly one user (the BN) and no other node reaches the producer module
  (another call, a get_attr of its parameters, a call of a module containing it) and no parameter of
  it is tied to another module: the fused module replaces it for every user;
- the producer's output has the rank the pattern assumes: Conv1d 3, Conv2d 4 (checked when
  node.meta carries a shape), Linear 2 (required: BatchNorm1d on [N, L, C] normalises L, not C, so a
  Linear folds only when shape propagation has recorded its output shape).

The fused module is a deep copy with new parameters, registered under the producer's name: the
original module, which the eager model may share, is never mutated. In place on the GraphModule.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.fx import GraphModule, Node

from mmspec.passes._infra import Pass, PassResult, PostconditionError, require_eval

_BatchNorm = nn.BatchNorm1d | nn.BatchNorm2d
_Producer = nn.Conv1d | nn.Conv2d | nn.ConvTranspose2d | nn.Linear

# BN type -> producer types it folds into
_FOLDS_INTO: dict[type[nn.Module], tuple[type[nn.Module], ...]] = {
    nn.BatchNorm1d: (nn.Conv1d, nn.Linear),
    nn.BatchNorm2d: (nn.Conv2d, nn.ConvTranspose2d),
}
# producer type -> rank of its output that the fold assumes ([N, C, L], [N, C, H, W], [N, C])
_RANK: dict[type[nn.Module], int] = {nn.Conv1d: 3, nn.Conv2d: 4, nn.ConvTranspose2d: 4, nn.Linear: 2}


@dataclass(frozen=True)
class _Fold:
    producer_node: Node
    producer: _Producer
    bn_node: Node
    bn: _BatchNorm


class FoldBatchNorm(Pass):
    """Fold eval-mode BatchNorm1d/2d into the preceding Conv1d/Conv2d/ConvTranspose2d/Linear. In place; needs
    eval."""

    name: ClassVar[str] = "fold_batchnorm"
    description: ClassVar[str] = "fold BatchNorm into the preceding Conv1d/Conv2d/ConvTranspose2d/Linear"

    def __init__(self) -> None:
        super().__init__()
        self.refusals: dict[str, str] = {}  # BN node name -> why it was not folded (last call)

    def requires(self, gm: GraphModule) -> None:
        require_eval(gm, self.name)

    def call(self, gm: GraphModule) -> PassResult:
        self.fired = 0
        self.refusals = {}
        for node in list(gm.graph.nodes):
            if not _is_batchnorm(gm, node):
                continue
            fold = _match(gm, node)
            if isinstance(fold, str):
                self.refusals[node.name] = fold
                continue
            _apply(gm, fold)
            self.fired += 1
        return self.finish(gm, self.fired > 0)

    def ensures(self, gm: GraphModule) -> None:
        left = [n.name for n in gm.graph.nodes if _is_batchnorm(gm, n) and isinstance(_match(gm, n), _Fold)]
        if left:
            raise PostconditionError(f"{self.name} left foldable BatchNorm nodes: {left}")


def _is_batchnorm(gm: GraphModule, node: Node) -> bool:
    return node.op == "call_module" and type(gm.get_submodule(node.target)) in _FOLDS_INTO


def _match(gm: GraphModule, bn_node: Node) -> _Fold | str:
    """The fold for `bn_node`, or the reason it cannot be folded."""
    bn = gm.get_submodule(bn_node.target)
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        return "BatchNorm has no running statistics"
    producer_node = bn_node.args[0] if len(bn_node.args) == 1 and not bn_node.kwargs else None
    if not isinstance(producer_node, Node) or producer_node.op != "call_module":
        return "input is not a module call"
    producer = gm.get_submodule(producer_node.target)
    allowed = _FOLDS_INTO[type(bn)]
    if type(producer) not in allowed:
        names = "/".join(t.__name__ for t in allowed)
        return f"input comes from {type(producer).__name__}, not {names}"
    if isinstance(producer, nn.ConvTranspose2d) and producer.groups != 1:
        return "grouped ConvTranspose2d (its output channels are not one weight axis)"
    if len(producer_node.users) != 1:
        return f"output of '{producer_node.name}' has {len(producer_node.users)} users"
    others = _other_references(gm, producer_node)
    if others:
        return f"module '{producer_node.target}' is also used by {others}"
    rank, expected = _rank(producer_node), _RANK[type(producer)]
    if rank is None and isinstance(producer, nn.Linear):
        return "Linear output rank unknown (run shape propagation first); BatchNorm1d folds only on [N, C]"
    if rank is not None and rank != expected:
        return f"output of '{producer_node.name}' has rank {rank}, the fold needs rank {expected}"
    return _Fold(producer_node, producer, bn_node, bn)


def _other_references(gm: GraphModule, producer_node: Node) -> list[str]:
    """Nodes other than `producer_node`, and modules with tied parameters, that reach its module."""
    target = producer_node.target
    others = [
        n.name
        for n in gm.graph.nodes
        if n is not producer_node
        and n.op in ("call_module", "get_attr")
        and (n.target == target or n.target.startswith(f"{target}.") or target.startswith(f"{n.target}."))
    ]
    own = {id(p) for p in gm.get_submodule(target).parameters()}
    others += [
        name
        for name, p in gm.named_parameters(remove_duplicate=False)
        if id(p) in own and not name.startswith(f"{target}.")
    ]
    return others


def _rank(node: Node) -> int | None:
    """Rank of the node's output from node.meta ('val' or ShapeProp's 'tensor_meta'), if recorded."""
    for key in ("val", "tensor_meta"):
        shape = getattr(node.meta.get(key), "shape", None)
        if shape is not None:
            return len(shape)
    return None


def _apply(gm: GraphModule, fold: _Fold) -> None:
    fused = copy.deepcopy(fold.producer)
    axis = 1 if isinstance(fold.producer, nn.ConvTranspose2d) else 0
    weight, bias = _fold_parameters(fold.producer.weight, fold.producer.bias, fold.bn, axis)
    fused.weight = nn.Parameter(weight, requires_grad=fold.producer.weight.requires_grad)
    fused.bias = nn.Parameter(bias, requires_grad=fold.producer.weight.requires_grad)
    gm.add_submodule(fold.producer_node.target, fused)
    fold.bn_node.replace_all_uses_with(fold.producer_node)
    gm.graph.erase_node(fold.bn_node)


def _fold_parameters(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: _BatchNorm, axis: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """New (w', b') for producer parameters (`weight` with its C output channels on `axis`, `bias` [C] or None)
    followed by `bn`."""
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var + bn.eps)  # [C]
        if bn.weight is not None:
            scale = scale * bn.weight  # [C]
        shift = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)  # [C]
        b = bias if bias is not None else torch.zeros_like(bn.running_mean)  # [C]
        shape = [1] * weight.dim()
        shape[axis] = -1
        fused_weight = weight * scale.reshape(shape)  # weight's shape
        fused_bias = (b - bn.running_mean) * scale + shift  # [C]
    return fused_weight.to(weight.dtype), fused_bias.to(weight.dtype if bias is None else bias.dtype)
