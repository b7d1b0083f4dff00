"""Hypothesis strategies for valid random specs, driven by the component registry's examples.

`specs(prefix, max_nodes)` draws one or two modalities, then up to `max_nodes` nodes of registered components
(exportable ones four times as often), then an exportable head if none is there yet. Each component starts
from one of its registry examples (`mmspec.registry.Example`), planned once on its own: that tells what every
reference in its config received (rank, dtype, fixed or dynamic width) and what kind of node every name in it
(`tie_to`, `updates`) designates. A draw varies the example:

- rewire: each reference goes to a tensor already in the draft with the rank and dtype (and, where the
  example's was fixed, a fixed width) of the example's input, preferring tensors as wide as the example's and
  tensors that agree with the component's other inputs; each name goes to a draft node of the same slot and
  type. So a component can sit in any legal position: a classifier on a raw vector, on a pooled encoder, on a
  fusion of two heads.
- perturb: integers (widths, layers, list entries; int lists grow or shrink together), floats, booleans and
  `Literal` choices of the config, and its absent boolean and `Literal` fields, are redrawn near the example's
  values (at most one more, so sizes stay tiny).
- transplant: when nothing in the draft fits, or the component refuses what does, the example's own modalities
  and supporting nodes join the draft, renamed with its prefix, and the component reads them.

A variation is kept when its config validates and the planner's rules (one batch axis, then the component's
`infer`) accept its inputs (`Draft.add`), else the unperturbed one is tried. A component registered at runtime
is fuzzed like the others, with no edit here; one without examples is never drawn.

`merge(parts, outputs)` joins specs drawn with distinct name prefixes into one spec of independent sub-graphs,
so that one ONNX export (about a second of fixed cost) covers several specs.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from mmspec.registry import PROBE, Component, Example, components, list_components, spec_model
from mmspec.spec.modality import Modality
from mmspec.spec.model import MODEL_SLOTS, SLOTS, Node, PlanContext, plan, same_batch_axis, select
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

MODALITY_KINDS = ["tokens", "image", "regions", "sequence", "vector"]
_MODALITY = TypeAdapter(Modality)
EXPORT_SLOTS = MODEL_SLOTS
FIXED_FIELDS = {"type", "training_only"}
"""Never perturbed: what the component is, and whether it may be exported."""


def small(lo: int = 1, hi: int = 12) -> st.SearchStrategy[int]:
    return st.integers(lo, hi)


class Draft:
    """A spec being drawn: its raw dict, the validated configs, and every node's bundle."""

    def __init__(self, draw, prefix: str):
        self.draw = draw
        self.prefix = prefix
        self.raw: dict[str, Any] = {"mmspec": 1, "name": f"{prefix}fuzz", "modalities": {}}
        self.configs: dict[str, dict[str, Any]] = {s: {} for s in SLOTS}
        self.modalities: dict[str, Any] = {}
        self.bundles: dict[str, Bundle] = {}
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{self.prefix}{stem}{self.count}"

    @property
    def spec(self) -> Any:
        """What a component's `infer` may look at (the validated parts drawn so far)."""
        return types.SimpleNamespace(modalities=self.modalities, weights=None, **self.configs)

    def slot_of(self, node: str) -> str:
        return next((s for s in SLOTS if node in self.configs[s]), "modalities")

    def readable(self, node: str, reader: str, training: bool) -> bool:
        """Whether a node of slot `reader` (training-only or not) may read `node`: only objectives read objectives,
        and only training-only nodes read what depends on a training-only node."""
        if self.slot_of(node) == "objectives":
            return reader == "objectives"
        return training or not _training_only(self, node)

    def tensors(self, reader: str = "heads", training: bool = False) -> list[tuple[str, str, TensorInfo]]:
        """(reference, node, tensor) for each single tensor a node may read: `node.field`, and the bare `node`
        when it emits one field."""
        out = []
        for node, bundle in self.bundles.items():
            if self.readable(node, reader, training):
                for field, info in sorted(bundle.items()):
                    out.append((f"{node}.{field}", node, info))
                    if len(bundle) == 1:
                        out.append((node, node, info))
        return out

    def pick(self, options: list) -> Any:
        return self.draw(st.sampled_from(options))

    def add(self, slot: str, name: str, config: dict[str, Any]) -> bool:
        """Keep the node if its config validates and its shape rules accept its inputs.

        A refusal is a pydantic ValidationError or a CheckError; any other exception from `infer` is a crash
        of the shape rule (plan() would not catch it either) and propagates, so the fuzzer reports it.
        """
        comp = components(slot)[config["type"]]
        try:
            cfg = comp.config.model_validate(config)
        except ValidationError:
            return False
        inputs = {}
        for port, ref in cfg.references().items():
            node, _, field = ref.partition(".")
            if node not in self.bundles or not self.bundles[node] or (field and field not in self.bundles[node]):
                return False  # plan() reports these itself
            inputs[port] = {field: self.bundles[node][field]} if field else self.bundles[node]
        self.configs[slot][name] = cfg
        try:
            same_batch_axis(cfg, inputs, {m.batch for m in self.modalities.values()})
            bundle = cfg.infer(inputs, PlanContext(self.spec, self.bundles))
        except CheckError:
            self.configs[slot].pop(name, None)
            return False
        self.raw.setdefault(slot, {})[name] = config
        self.bundles[name] = bundle
        return True


# --- modalities -----------------------------------------------------------------------------------


def _axis(draft: Draft) -> tuple[str | int, int]:
    """(axis, its max): a named dynamic axis (max >= 2: a dynamic axis takes two sizes) or a fixed size."""
    d = draft.draw
    axis = d(st.one_of(st.sampled_from([f"{draft.prefix}seq", f"{draft.prefix}len", "seq"]), small(1, 6)))
    return axis, d(small(2 if isinstance(axis, str) else 1, 12))


def add_modality(draft: Draft) -> None:
    d = draft.draw
    kind = d(st.sampled_from(MODALITY_KINDS))
    m: dict[str, Any] = {"type": kind}
    if d(st.integers(0, 5)) == 0:  # another batch axis, or (legal, if odd) one that is also a length axis
        m["batch"] = d(st.sampled_from([f"{draft.prefix}batch2", f"{draft.prefix}seq"]))
    if kind == "tokens":
        length, longest = _axis(draft)
        m.update(vocab_size=d(small(2, 40)), length=length, max_length=longest, mask=d(st.booleans()),
                 segments=d(st.integers(0, 3)))
    elif kind == "image":
        m.update(channels=d(small(1, 3)), height=d(st.sampled_from([4, 6, 8, 12, 16])),
                 width=d(st.sampled_from([4, 6, 8, 12, 16])))
    elif kind == "regions":
        count, most = _axis(draft)
        m.update(dim=d(small(1, 12)), count=count, max_count=most, boxes=d(st.integers(0, 4)), mask=d(st.booleans()))
    elif kind == "sequence":
        length, longest = _axis(draft)
        m.update(dim=d(small(1, 12)), length=length, max_length=longest)
    else:
        m.update(dim=d(small(1, 12)))
    _put_modality(draft, draft.name("m"), m)


def _put_modality(draft: Draft, name: str, m: dict[str, Any]) -> None:
    modality = _MODALITY.validate_python(m)
    draft.raw["modalities"][name] = m
    draft.modalities[name] = modality
    draft.bundles[name] = modality.bundle(name)


# --- examples as templates ------------------------------------------------------------------------

KeyPath = tuple[str | int, ...]
"""Where a leaf is in a config: its keys and list indices."""
_ABSENT = object()


@dataclass(frozen=True)
class Template:
    """A registry example planned on its own: its spec tree, its nodes in plan order, and, for the component's
    config, each reference (path -> (value, the bundle it received)) and each name of another node of the
    example (path -> (value, that node's slot, its type))."""

    component: Component
    example: Example
    tree: dict[str, Any]
    nodes: list[Node]
    refs: dict[KeyPath, tuple[str, Bundle]]
    names: dict[KeyPath, tuple[str, str, str]]

    @property
    def probe(self) -> Node:
        return next(n for n in self.nodes if n.name == PROBE)


_TEMPLATES: dict[int, Template] = {}


def template(component: Component, example: Example) -> Template:
    """The example planned (cached per example object)."""
    cached = _TEMPLATES.get(id(example))
    if cached is None or cached.example is not example or cached.component is not component:
        cached = _TEMPLATES[id(example)] = _plan_example(component, example)
    return cached


def _plan_example(component: Component, example: Example) -> Template:
    """Plan the example's spec alone; collect its component's references and names (see `Template`)."""
    tree = example.spec(component)
    try:
        spec = spec_model().model_validate(tree)
        planned = plan(spec)
    except Exception as e:
        raise AssertionError(f"registry example {component.slot}/{component.name} {example.name!r} does not "
                             f"plan: {e}") from e
    kinds = {n: ("modalities", m.type) for n, m in spec.modalities.items()}
    kinds.update({n.name: (n.section, n.config.type) for n in planned.nodes})
    refs: dict[KeyPath, tuple[str, Bundle]] = {}
    names: dict[KeyPath, tuple[str, str, str]] = {}

    def collect(path: KeyPath, value: Any, kind: tuple) -> Any:
        node, _, field = value.partition(".") if isinstance(value, str) else ("", "", "")
        if kind[0] == "ref" and node in planned.bundles:
            refs[path] = (value, select(planned.bundles[node], field or None))
        elif kind[0] == "name" and value in kinds:
            names[path] = (value, *kinds[value])
        return value

    probe = next(n for n in planned.nodes if n.name == PROBE)
    _walk(tree[component.slot][PROBE], type(probe.config), probe.config, (), collect)
    return Template(component, example, tree, planned.nodes, refs, names)


def _walk(raw: Any, ann: Any, current: Any, path: KeyPath, leaf) -> Any:
    """A copy of the raw config piece `raw` with every leaf replaced by `leaf(path, value, kind)`; `current` is
    its validated value (it resolves unions), `ann` its annotation. A BaseModel's absent boolean and `Literal`
    fields are offered as `_ABSENT` leaves too (a bool's kind carries its default; kept where `leaf` returns a
    value)."""
    ann, meta = _resolve(ann, current)
    if isinstance(current, BaseModel) and isinstance(raw, dict):
        out = {}
        for key, info in type(current).model_fields.items():
            if key in FIXED_FIELDS:
                if key in raw:
                    out[key] = raw[key]
                continue
            field_ann = typing.Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
            if key in raw:
                out[key] = _walk(raw[key], field_ann, getattr(current, key), (*path, key), leaf)
            elif (kind := _kind(*_resolve(field_ann, info.default), info.default))[0] in ("bool", "literal"):
                value = leaf((*path, key), _ABSENT, (*kind, info.default) if kind[0] == "bool" else kind)
                if value is not _ABSENT:
                    out[key] = value
        return out
    args = typing.get_args(ann)
    if isinstance(raw, dict):
        return {k: _walk(v, args[1] if len(args) == 2 else Any, current[k], (*path, k), leaf) for k, v in raw.items()}
    if isinstance(raw, list):
        item = args[0] if args else Any
        if _resolve(item, 0)[0] is int:
            return leaf(path, raw, ("ints",))
        return [_walk(v, item, current[i], (*path, i), leaf) for i, v in enumerate(raw)]
    return leaf(path, raw, _kind(ann, meta, raw))


def _resolve(ann: Any, current: Any) -> tuple[Any, list]:
    """The annotation without `Annotated` (its metadata returned apart) and, of a union, the member `current` is."""
    meta: list = []
    while True:
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            ann, *more = typing.get_args(ann)
            meta += more
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(ann) if a is not type(None)]
            ann = next((m for m in members if _fits(m, current)), members[0])
        else:
            return ann, meta


def _fits(ann: Any, value: Any) -> bool:
    base = _resolve(ann, value)[0]
    if typing.get_origin(base) is typing.Literal:
        return value in typing.get_args(base)
    cls = typing.get_origin(base) or base
    return isinstance(cls, type) and isinstance(value, cls)


def _kind(ann: Any, meta: list, value: Any) -> tuple:
    """What a leaf is: a reference, a node name, a `Literal` (with its choices), a bool, int or float, or other."""
    pattern = next((p for m in meta if (p := getattr(m, "pattern", None))), None)
    if ann is str and pattern:
        return ("ref",) if "\\." in pattern else ("name",)
    if typing.get_origin(ann) is typing.Literal:
        return ("literal", typing.get_args(ann))
    for kind in (bool, int, float):
        if ann is kind or (ann is Any and type(value) is kind):
            return (kind.__name__,)
    return ("other",)


# --- drawing a component --------------------------------------------------------------------------


def place(draft: Draft, component: Component, room: int = 1 << 30) -> bool:
    """Add `component` from one of its examples, perturbed: rewired into the draft, else (nothing fits, or the
    component refuses what does) transplanted when the example has at most `room` nodes."""
    t = template(component, draft.pick(list(component.examples)))
    name = draft.name(component.name[:3])
    wiring = _wire(draft, t)
    if wiring is not None and _add(draft, t, name, wiring):
        return True
    wiring = _transplant(draft, t) if len(t.nodes) <= room else None
    return wiring is not None and _add(draft, t, name, wiring)


def _add(draft: Draft, t: Template, name: str, wiring: dict[KeyPath, str]) -> bool:
    """The component with `wiring`, perturbed, else as in the example."""
    return any(draft.add(t.component.slot, name, _variant(draft, t, wiring, perturb)) for perturb in (True, False))


def _wire(draft: Draft, t: Template) -> dict[KeyPath, str] | None:
    """New values for the config's names and references, all in the draft; None when one has no candidate."""
    slot, training = t.component.slot, t.probe.config.training_only
    chosen: dict[str, str] = {}  # example node -> draft node (keeps `tie_to: enc` and `input: enc.sequence` together)
    picked: list[TensorInfo] = []
    wiring: dict[KeyPath, str] = {}
    for path, (old, kind_slot, kind) in t.names.items():
        if kind_slot == "modalities":
            options = sorted(n for n, m in draft.modalities.items() if m.type == kind)
        else:
            options = sorted(n for n, c in draft.configs[kind_slot].items()
                             if c.type == kind and draft.readable(n, slot, training))
        if old in chosen and chosen[old] in options:
            options = [chosen[old]]
        if not options:
            return None
        wiring[path] = chosen[old] = draft.pick(options)
    for path, (old, bundle) in t.refs.items():
        options = _sources(draft, bundle, slot, training)
        if not options:
            return None
        node, widths = chosen.get(old.partition(".")[0]), {info.width for info in bundle.values()}
        tiers = [[o for o in options if o[1] == node],
                 [o for o in options if o[2].width in widths],
                 [o for o in options if any(o[2].shape == p.shape for p in picked)],
                 [o for o in options if any(o[2].shape[:-1] == p.shape[:-1] for p in picked)],
                 [o for o in options if any(o[2].width == p.width for p in picked)],
                 options]
        ref, node, info = draft.pick(draft.pick([tier for tier in tiers if tier]))
        chosen.setdefault(old.partition(".")[0], node)
        picked.append(info)
        wiring[path] = ref
    return wiring


def _sources(draft: Draft, bundle: Bundle, slot: str, training: bool) -> list[tuple[str, str, TensorInfo]]:
    """What may stand for `bundle`: one tensor of its rank and dtype (and a fixed width where its width was),
    or, for a bundle of several tensors, a node that emits some of them alike."""
    if len(bundle) == 1:
        (want,) = bundle.values()
        return [(ref, node, info) for ref, node, info in draft.tensors(slot, training)
                if info.rank == want.rank and info.dtype == want.dtype
                and (isinstance(info.width, int) or not isinstance(want.width, int))]
    out = []
    for node, have in draft.bundles.items():
        shared = sorted(set(have) & set(bundle))
        if shared and draft.readable(node, slot, training) and \
                all((have[f].rank, have[f].dtype) == (bundle[f].rank, bundle[f].dtype) for f in shared):
            out.append((node, node, have[shared[0]]))
    return out


def _transplant(draft: Draft, t: Template) -> dict[KeyPath, str] | None:
    """Add the example's modalities and supporting nodes, renamed; the config's names and references to them."""
    renamed: dict[str, str] = {}

    def rename(path: KeyPath, value: Any, kind: tuple) -> Any:
        node, dot, field = value.partition(".") if kind[0] in ("ref", "name") else ("", "", "")
        return renamed[node] + dot + field if node in renamed else value

    for old, m in t.tree["modalities"].items():
        renamed[old] = draft.name(old[:3])
        _put_modality(draft, renamed[old], dict(m))
    for node in t.nodes:
        if node.name != PROBE:
            renamed[node.name] = draft.name(node.name[:3])
            config = _walk(t.tree[node.section][node.name], type(node.config), node.config, (), rename)
            if not draft.add(node.section, renamed[node.name], config):
                return None
    return {path: rename(path, old, ("ref",)) for path, (old, *_) in {**t.refs, **t.names}.items()}


def _variant(draft: Draft, t: Template, wiring: dict[KeyPath, str], perturb: bool) -> dict[str, Any]:
    """The example's config with `wiring` applied and, with `perturb`, about one leaf in four redrawn."""
    d = draft.draw
    delta = d(st.sampled_from([0, 1, -1])) if perturb else 0  # int lists (depths and widths) keep equal lengths

    def leaf(path: KeyPath, value: Any, kind: tuple) -> Any:
        if path in wiring:
            return wiring[path]
        if value is None:  # an optional field an example sets to null explicitly stays null
            return value
        if kind[0] == "ints":  # a copy: a list shared by two nodes would be a YAML alias
            value = value[:len(value) + delta] if delta <= 0 else [*value, value[-1] if value else 1]
        if not perturb or kind[0] in ("ref", "name", "other") or d(st.integers(0, 3)) < 3:
            return value
        if kind[0] == "ints":
            return [d(st.sampled_from(_near(v))) for v in value]
        if kind[0] == "literal":
            return d(st.sampled_from([c for c in kind[1] if c != value] or [value]))
        if kind[0] == "bool":
            return not (kind[1] if value is _ABSENT else value)
        if kind[0] == "int":
            return d(st.sampled_from(_near(value)))
        return value * d(st.sampled_from([0.5, 2.0]))

    probe = t.probe
    return _walk(t.tree[t.component.slot][PROBE], type(probe.config), probe.config, (), leaf)


def _near(v: int) -> list[int]:
    """Integers near `v` and no larger than v + 1: `v` itself first, its neighbours, its half, 1 and 0."""
    return list(dict.fromkeys(x for x in (v, v - 1, v + 1, v // 2, 1, 0) if x >= 0))


# --- whole specs ----------------------------------------------------------------------------------


def _registered() -> dict[str, list[Component]]:
    """Every registered component with examples, by slot (a slot is drawn first, so a slot with few components,
    fusion, is reached as often as one with many); the exportable ones four times as often within their slot."""
    drawn = [c for c in list_components() if c.examples]
    by_slot: dict[str, list[Component]] = {}
    for c in drawn + 3 * [c for c in drawn if c.exportable]:
        by_slot.setdefault(c.slot, []).append(c)
    return by_slot


def _exported(draft: Draft) -> bool:
    return any(not c.training_only for c in draft.configs["heads"].values())


@st.composite
def specs(draw, prefix: str = "", max_nodes: int = 4, must: Component | None = None) -> dict[str, Any]:
    """A valid spec as a plain dict (what `yaml.safe_load` of a spec file gives); with `must`, that component is
    placed first (which shows that every registered component can be drawn, however many there are)."""
    draft = Draft(draw, prefix)
    draft.raw["seed"] = draw(st.integers(0, 2**31))
    for _ in range(draw(st.integers(1, 2))):
        add_modality(draft)
    registered = _registered()
    size = draw(st.integers(1, max_nodes))
    if must is not None:
        place(draft, must, size)
    for _ in range(size):
        room = size - sum(map(len, draft.configs.values()))
        if room <= 0:
            break
        slot = draw(st.sampled_from(sorted(registered)))
        place(draft, draw(st.sampled_from(registered[slot])), room)
    # Something to export: an exportable head on what is there, else with its example's inputs.
    heads = [c for c in components("heads").values() if c.exportable and c.examples]
    for head in draw(st.permutations(heads)):
        if _exported(draft) or place(draft, head, room=0):
            break
    if not _exported(draft):
        place(draft, draw(st.sampled_from(heads)))
    assert _exported(draft), draft.raw
    unread = _unread(draft)
    if unread or draw(st.integers(0, 3)) == 0:
        # Explicit outputs: with unread encoders or fusion nodes (tested by no oracle unless exported), the heads
        # and a field of each of them; else any fields of any nodes that are not training-only.
        inputs = {gi.name for name, m in draft.modalities.items() for gi in m.graph_inputs(name)}
        refs = [r for r, _, _ in draft.tensors() if "." in r and _onnx_name(draft, r) not in inputs]
        outputs = [f"{h}.{f}" for h, c in sorted(draft.configs["heads"].items()) if not c.training_only
                   for f in sorted(draft.bundles[h])] if unread else []
        outputs += [draft.pick([r for r in refs if r.partition(".")[0] == node]) for node in unread]
        outputs += draw(st.lists(st.sampled_from(refs), min_size=0 if outputs else 1, max_size=3, unique=True))
        draft.raw["outputs"] = list(dict.fromkeys(outputs))
    return draft.raw


def _unread(draft: Draft) -> list[str]:
    """Encoders and fusion nodes (not training-only) that no node outside training reads."""
    read = {ref.partition(".")[0] for slot in SLOTS for node, cfg in draft.configs[slot].items()
            if not _training_only(draft, node) for ref in cfg.references().values()}
    return [n for slot in ("encoders", "fusion") for n in draft.configs[slot]
            if n not in read and not _training_only(draft, n)]


def _onnx_name(draft: Draft, ref: str) -> str:
    node, _, field = ref.partition(".")
    return node if len(draft.bundles[node]) == 1 else f"{node}_{field}"


def _training_only(draft: Draft, node: str) -> bool:
    """Whether `node` is, or depends on, a training-only node (it may then not be exported)."""
    for slot in SLOTS:
        cfg = draft.configs[slot].get(node)
        if cfg is None:
            continue
        if slot == "objectives" or cfg.training_only:
            return True
        return any(_training_only(draft, ref.split(".")[0]) for ref in cfg.references().values())
    return False


def merge(parts: list[dict[str, Any]], outputs: list[list[str]]) -> dict[str, Any]:
    """One spec with every part as an independent sub-graph; `outputs[i]` are part i's exported references."""
    spec: dict[str, Any] = {"mmspec": 1, "name": "merged", "seed": parts[0].get("seed", 0), "modalities": {}}
    for part in parts:
        for key in ("modalities", *SLOTS):
            spec.setdefault(key, {}).update(part.get(key, {}))
    spec["outputs"] = [ref for refs in outputs for ref in refs]
    return spec


def batch_names(spec: dict[str, Any]) -> set[str]:
    return {m.get("batch", "batch") for m in spec["modalities"].values()}


def registered_exportable() -> list[tuple[str, str]]:
    return [(c.slot, c.name) for slot in EXPORT_SLOTS for c in components(slot).values()
            if c.exportable and not c.training_only]
