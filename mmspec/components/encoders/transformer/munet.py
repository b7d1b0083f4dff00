"""muNet's evolutionary search (Gesmundo & Dean 2022), host code around a transformer spec: mutations are
functions from a spec tree (the parsed YAML) to a child tree (clone layers, insert an adapter, remove the top
layer, change a hyperparameter, a new head), the child inherits the parent's tensors it shares, and parents are
drawn with a preference for good, rarely chosen models. Training and scoring are the caller's."""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from typing import Any


def remove_layer(tree: dict, encoder: str) -> dict:
    """The child without the encoder's top layer (at least one layer stays; an adapter after it goes too)."""
    child = copy.deepcopy(tree)
    node = child["encoders"][encoder]
    if node["layers"] <= 1:
        raise ValueError(f"{encoder!r} has one layer; nothing to remove")
    node["layers"] -= 1
    adapters = node.get("adapters")
    if adapters and adapters.get("layers") is not None:
        kept = [i for i in adapters["layers"] if i < node["layers"]]
        if kept:
            adapters["layers"] = kept
        else:
            del node["adapters"]
    if node.get("trainable_layers") is not None:  # the removed layer and its adapter no longer train
        node["trainable_layers"] = [p for p in node["trainable_layers"]
                                    if p not in (node["layers"], f"adapter.{node['layers']}")]
    return child


def insert_adapter(tree: dict, encoder: str, layer: int, hidden: int) -> dict:
    """The child with a residual adapter after `layer` (the encoder's `adapters`; its second linear map starts at
    zero, so the child computes what the parent computes until it trains)."""
    child = copy.deepcopy(tree)
    node = child["encoders"][encoder]
    adapters = node.setdefault("adapters", {"hidden": hidden, "layers": []})
    if adapters.get("layers") is None or layer in adapters["layers"]:
        raise ValueError(f"{encoder!r} already has an adapter after layer {layer}")
    adapters["layers"] = sorted([*adapters["layers"], layer])
    if node.get("trainable_layers") is not None:  # a cloned child trains the adapter it inserts
        node["trainable_layers"] = [*node["trainable_layers"], f"adapter.{layer}"]
    return child


def clone_layers(tree: dict, encoder: str, parts: list[int | str]) -> dict:
    """The child that trains its own copies of `parts` of the encoder (layer indices, `embed`, `final_norm`,
    `pool`, `adapter.I`: the encoder's `trainable_layers`) and shares every other part, frozen, with its parent;
    the heads keep training. What the parent trained, the child shares unless cloned again. Clone before
    inserting adapters in the same child (an insertion adds its adapter to the list)."""
    child = copy.deepcopy(tree)
    child["encoders"][encoder]["trainable_layers"] = list(parts)
    return child


def set_hyperparameter(tree: dict, path: str, value: Any) -> dict:
    """The child with one value changed, addressed as a variant key (`encoders.vit.dropout`,
    `modalities.image.height`)."""
    child = copy.deepcopy(tree)
    *parents, last = path.split(".")
    node = child
    for key in parents:
        node = node[key]
    node[last] = value
    return child


def new_head(tree: dict, head: str, classes: int) -> dict:
    """The child for another task: the head re-created with `classes` outputs (its weights are not inherited
    when the class count differs)."""
    return set_hyperparameter(tree, f"heads.{head}.num_classes", classes)


def inherit(parent: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """The child's state: every parent tensor whose name and shape the child has, the child's own initial
    tensors elsewhere (a new head, a resized position table)."""
    return {name: parent[name] if name in parent and parent[name].shape == value.shape else value
            for name, value in child.items()}


def sample_parent(scores: Mapping[str, float], selected: Mapping[str, int], rng: random.Random) -> str:
    """Walk the models from the best score down and accept each with probability 0.5^(times it was already a
    parent); the walk repeats until one is accepted (a never-selected model is always accepted)."""
    ranked = sorted(scores, key=lambda name: -scores[name])
    while True:
        for name in ranked:
            if rng.random() < 0.5 ** selected.get(name, 0):
                return name
