"""Weight layouts: how a reference implementation names a component's tensors (torch-free data).

A component declares its layouts next to its config (`weight_layouts`); a spec picks one per node in its
`weights:` section. `mmspec.weights` applies them when a checkpoint is loaded with `--weights`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """One checkpoint tensor name pattern -> the parameter(s) of the component it fills.

    Patterns are dotted names in which `{x}` stands for one segment and `{x*}` for one or more; both
    sides use the same placeholders (`encoder.layer.{i}.attention.self.query.{p}` ->
    `layers.{i}.attn.q.{p}`). `dst` None marks a known tensor that holds nothing to load (a cached
    buffer). Applied in this order: `transpose` (a 2-D tensor stored [in, out], GPT-2's Conv1D),
    `squeeze` (leading size-1 dims dropped down to the parameter's rank, ViT's [1, 1, D] class token),
    then a split along dim 0 into `len(dst)` equal parts when `dst` names several parameters (fused QKV).
    When several rules match a name, the first whose parameters all exist in the node applies. Tied
    parameters need no rule of their own: naming either owner loads the one shared tensor.
    """

    src: str
    dst: str | tuple[str, ...] | None
    transpose: bool = False
    squeeze: bool = False


MMSPEC_LAYOUT = "mmspec"
"""The layout every component has: mmspec's own parameter names (what a node without an entry in `weights:` uses)."""
IDENTITY = (Rule("{name*}", "{name*}"),)
ONE_LINEAR = (Rule("{p}", "mlp.0.{p}"),)
"""A checkpoint's single nn.Linear into a head whose only layer is `mlp.0` (a classifier or mlp without `hidden`)."""
