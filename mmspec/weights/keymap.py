"""Checkpoint tensor names <-> model parameter names, from the spec's `weights:` section and the layouts
its components declare (`mmspec.spec.layout.Rule`). Pure name logic; no tensors here.

Model names are node-qualified (`bert.layers.0.attn.q.weight`), as `mmspec summary` counts them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from mmspec.spec.layout import MMSPEC_LAYOUT, Rule

_PLACEHOLDER = re.compile(r"\{([a-z_]+)(\*?)\}")


class Pattern:
    """A dotted name with `{x}` (one segment) and `{x*}` (one or more segments) placeholders."""

    def __init__(self, text: str):
        self.text = text
        regex, pos = "", 0
        for m in _PLACEHOLDER.finditer(text):
            regex += re.escape(text[pos : m.start()]) + f"(?P<{m[1]}>{'.+' if m[2] else '[^.]+'})"
            pos = m.end()
        self._regex = re.compile(regex + re.escape(text[pos:]))

    def match(self, name: str) -> dict[str, str] | None:
        m = self._regex.fullmatch(name)
        return m.groupdict() if m else None

    def fill(self, values: dict[str, str]) -> str:
        return _PLACEHOLDER.sub(lambda m: values[m[1]], self.text)


@dataclass(frozen=True)
class Target:
    """One model tensor a checkpoint tensor fills, and how: transpose, squeeze, then part `part` of `parts`."""

    param: str
    part: int = 0
    parts: int = 1
    transpose: bool = False
    squeeze: bool = False

    def shape(self, shape: tuple[int, ...], rank: int) -> tuple[int, ...] | str:
        """The shape after this target's transforms, or why they do not apply."""
        if self.transpose:
            if len(shape) != 2:
                return f"the layout transposes it, which needs 2 dims, but it has {len(shape)}"
            shape = shape[::-1]
        if self.squeeze:
            while len(shape) > rank and shape[0] == 1:
                shape = shape[1:]
        if self.parts > 1:
            if not shape or shape[0] % self.parts:
                return f"the layout splits dim 0 into {self.parts} equal parts, which {list(shape)} does not allow"
            shape = (shape[0] // self.parts, *shape[1:])
        return shape

    def apply(self, tensor, rank: int):
        """The tensor after this target's transforms (shape() must have accepted it)."""
        if self.transpose:
            tensor = tensor.t()
        if self.squeeze:
            while tensor.dim() > rank and tensor.shape[0] == 1:
                tensor = tensor[0]
        if self.parts > 1:
            tensor = tensor.chunk(self.parts, dim=0)[self.part]
        return tensor.contiguous()


class _CompiledRule:
    def __init__(self, rule: Rule):
        self.src = Pattern(rule.src)
        dst = () if rule.dst is None else (rule.dst,) if isinstance(rule.dst, str) else rule.dst
        self.dst = tuple(Pattern(d) for d in dst)
        self.rule = rule


class KeyMap:
    """Per node: the checkpoint prefix of its tensors and the compiled rules of its layout."""

    def __init__(self, spec, nodes: dict):
        weights = spec.weights
        self._nodes: dict[str, tuple[str, list[_CompiledRule]]] = {}
        for name, cfg in nodes.items():
            entry = weights.nodes.get(name) if weights else None
            prefix, layout = (entry.prefix, entry.layout) if entry else (name, MMSPEC_LAYOUT)
            self._nodes[name] = (prefix, [_CompiledRule(r) for r in cfg.weight_rules(layout)])
        self._by_prefix = sorted(self._nodes.items(), key=lambda item: -len(item[1][0]))

    def targets(self, key: str, exists: Callable[[str], bool]) -> list[Target] | None:
        """What checkpoint tensor `key` fills: [] for a known tensor that holds nothing to load, None when no
        node's layout knows the name. Among matching rules, the first whose targets all `exist` wins."""
        for node, (prefix, rules) in self._by_prefix:
            if prefix and not key.startswith(prefix + "."):
                continue
            local = key[len(prefix) + 1 :] if prefix else key
            first = None
            for r in rules:
                values = r.src.match(local)
                if values is None:
                    continue
                found = [
                    Target(f"{node}.{d.fill(values)}", i, len(r.dst), r.rule.transpose, r.rule.squeeze)
                    for i, d in enumerate(r.dst)
                ]
                if all(exists(t.param) for t in found):
                    return found
                first = found if first is None else first
            if first is not None:
                return first
        return None

    def source(self, param: str) -> str | None:
        """The checkpoint name the layout expects for model tensor `param` (None when no rule produces it)."""
        node, _, local = param.partition(".")
        prefix, rules = self._nodes[node]
        for r in rules:
            for d in r.dst:
                values = d.match(local)
                if values is not None:
                    return f"{prefix}.{r.src.fill(values)}" if prefix else r.src.fill(values)
        return None


class NativeKeyMap:
    """The names of an `mmspec fit` checkpoint: the model's own state-dict names (`components.<node>.*`,
    `objectives.<node>.*`), one to one; the spec's `weights:` layouts do not apply."""

    def __init__(self, full_names: dict[str, str]):
        self._full = full_names
        """node-qualified name -> state-dict name."""
        self._local = {full: name for name, full in full_names.items()}

    def targets(self, key: str, exists: Callable[[str], bool]) -> list[Target] | None:
        name = self._local.get(key)
        return [Target(name)] if name is not None else None

    def source(self, param: str) -> str | None:
        return self._full.get(param)
