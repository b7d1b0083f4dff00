"""The spec's `weights:` section: where each node's tensors sit in a checkpoint, and under which names.

    weights:
      nodes:
        bert: {prefix: bert, layout: bert}              # bert.encoder.layer.0... -> node bert
        nsp: {prefix: cls.seq_relationship, layout: linear}
      new: [nsp]                                        # initialised here, not loaded
      ignore: ["cls.predictions.*"]                     # in the checkpoint, deliberately unused

A node without an entry is read under its own name with mmspec's parameter names (layout `mmspec`),
so a spec without this section loads checkpoints written from mmspec models. Torch-free.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints

from mmspec.spec.base import ComponentConfig, Name, StrictModel
from mmspec.spec.layout import MMSPEC_LAYOUT
from mmspec.spec.suggest import suggestion_text

TensorPrefix = Annotated[str, StringConstraints(pattern=r"^([A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*)?$")]
NodePattern = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}(\.[A-Za-z0-9_.*?\[\]]+)?$")]


class NodeWeights(StrictModel):
    """One node's tensors in the checkpoint: `<prefix>.<name in the layout>`."""

    prefix: TensorPrefix
    """Name prefix of the node's tensors in the checkpoint (`bert`, `cls.predictions`); '' for top-level names."""
    layout: Name
    """How the reference names this component's tensors: one of the layouts the component declares
    (`mmspec components NAME`), or `mmspec` for mmspec's own names."""


class WeightsSpec(StrictModel):
    """How `--weights` checkpoints map onto this spec; every tensor is accounted for or loading fails."""

    nodes: dict[Name, NodeWeights] = Field(default_factory=dict)
    new: list[NodePattern] = Field(default_factory=list)
    """Parameters initialised here instead of loaded (a new head): node names or `node.param` globs."""
    ignore: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    """Checkpoint tensors deliberately left unused (a pre-training head): globs over checkpoint names."""


def check_weights(weights: WeightsSpec | None, nodes: dict[str, ComponentConfig]) -> list[tuple[tuple, str, str]]:
    """Problems with a `weights:` section as (path, code, message), for `plan` to report with the rest."""
    if weights is None:
        return []
    problems: list[tuple[tuple[Any, ...], str, str]] = []
    owner: dict[str, str] = {}
    for name, entry in weights.nodes.items():
        path = ("weights", "nodes", name)
        if name not in nodes:
            problems.append(
                (path, "unknown-reference", f"weights.nodes: {name!r} is not a component{suggestion_text(name, nodes)}")
            )
            continue
        known = sorted({MMSPEC_LAYOUT, *type(nodes[name]).weight_layouts})
        if entry.layout not in known:
            problems.append(
                (
                    (*path, "layout"),
                    "value",
                    f"weights.nodes.{name}.layout: {nodes[name].type!r} has no layout {entry.layout!r}"
                    f"{suggestion_text(entry.layout, known)}; it has: {', '.join(known)}",
                )
            )
        if entry.prefix and entry.prefix in owner:
            problems.append(
                (
                    (*path, "prefix"),
                    "check",
                    f"weights.nodes.{name}.prefix {entry.prefix!r} is also the prefix of {owner[entry.prefix]!r}; "
                    "each node needs its own",
                )
            )
        owner.setdefault(entry.prefix, name)
    for i, pattern in enumerate(weights.new):
        node = pattern.split(".")[0]
        if node not in nodes:
            problems.append(
                (
                    ("weights", "new", i),
                    "unknown-reference",
                    f"weights.new: {node!r} is not a component{suggestion_text(node, nodes)}",
                )
            )
    return problems
