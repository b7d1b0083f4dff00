"""Hypothesis strategies for valid random specs, built from the component registry.

`specs(prefix)` draws one or more modalities, then a random sequence of components from every slot of the
registry. Each component takes its inputs from what the spec already offers (a modality, an encoder's
sequence, a head's logits, ...), chosen among the tensors whose rank, width and dtype fit, and is kept only
when its own shape rules (`infer`) accept it; so a component can sit in any legal position: a classifier on
a raw vector modality, on a pooled encoder, on a fusion of two heads. Sizes stay tiny (widths <= 24,
layers <= 2, sequences <= 12). Exportable components have recipes written for them; any other registered
component (objectives, training-only heads) is filled in from its pydantic fields and kept if it plans.

`merged(k)` draws k specs with distinct name prefixes and joins them into one spec with k independent
sub-graphs, so that one ONNX export (about a second of fixed cost) covers several specs.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter

from mmspec.registry import components
from mmspec.spec.modality import Modality
from mmspec.spec.model import MODEL_SLOTS, SLOTS, PlanContext
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

ACTIVATIONS = ["gelu", "gelu_tanh", "quick_gelu", "relu", "tanh", "silu", "identity"]
MODALITY_KINDS = ["tokens", "image", "regions", "sequence", "vector"]
_MODALITY = TypeAdapter(Modality)
EXPORT_SLOTS = MODEL_SLOTS


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

    def tensors(self, ranks: tuple[int, ...] = (2, 3), float_only: bool = True, fixed_width: bool = True,
                exclude: str | None = None) -> list[tuple[str, TensorInfo]]:
        """References to single tensors: `node.field` (or the bare `node` when it emits one field)."""
        out = []
        for node, bundle in self.bundles.items():
            if node == exclude or _training_only(self, node):
                continue
            for field, info in sorted(bundle.items()):
                if info.rank in ranks and (not float_only or info.dtype == "float32") and \
                        (not fixed_width or isinstance(info.width, int)):
                    out.append((f"{node}.{field}", info))
                    if len(bundle) == 1:
                        out.append((node, info))
        return out

    def pick(self, options: list) -> Any:
        return self.draw(st.sampled_from(options))

    def add(self, slot: str, name: str, config: dict[str, Any]) -> bool:
        """Keep the node if its config validates and its shape rules accept its inputs."""
        comp = components(slot)[config["type"]]
        try:
            cfg = comp.config.model_validate(config)
            refs = cfg.references()
            inputs = {}
            for port, ref in refs.items():
                node, _, field = ref.partition(".")
                if node not in self.bundles or not self.bundles[node] or (field and field not in self.bundles[node]):
                    return False  # plan() reports these itself
                inputs[port] = {field: self.bundles[node][field]} if field else self.bundles[node]
            self.configs[slot][name] = cfg
            bundle = cfg.infer(inputs, PlanContext(self.spec, self.bundles))
        except (CheckError, ValueError, KeyError, TypeError, AttributeError):
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
    name = draft.name("m")
    modality = _MODALITY.validate_python(m)
    draft.raw["modalities"][name] = m
    draft.modalities[name] = modality
    draft.bundles[name] = modality.bundle(name)


# --- recipes for the exportable components --------------------------------------------------------


def _stack(draft: Draft, width: int | None = None) -> dict[str, Any]:
    d = draft.draw
    if width is None:
        heads = d(small(1, 4))
        width = heads * d(small(1, 6))
    else:
        heads = d(st.sampled_from([h for h in range(1, min(width, 4) + 1) if width % h == 0]))
    return {"width": width, "heads": heads, "layers": d(st.integers(0, 2)), "ffn": d(small(1, 24)),
            "activation": d(st.sampled_from(ACTIVATIONS)), "norm": d(st.sampled_from(["post", "pre"])),
            "eps": d(st.sampled_from([1e-12, 1e-6, 1e-5])), "dropout": d(st.sampled_from([0.0, 0.1])),
            "attention_dropout": d(st.sampled_from([0.0, 0.2]))}


def _pool(draft: Draft, kinds: list[str]) -> dict[str, Any] | None:
    d = draft.draw
    if d(st.booleans()):
        return None
    pool: dict[str, Any] = {"type": d(st.sampled_from(kinds)), "norm": d(st.booleans()),
                            "activation": d(st.sampled_from(ACTIVATIONS))}
    if d(st.booleans()):
        pool["dense"] = d(small(1, 12))
    return pool


def transformer(draft: Draft) -> dict[str, Any] | None:
    d = draft.draw
    options = sorted(n for n, m in draft.modalities.items() if m.type in ("tokens", "image", "regions"))
    if not options:
        return None
    name = draft.pick(options)
    m = draft.modalities[name]
    cfg = {"type": "transformer", "input": name, **_stack(draft), "causal": d(st.booleans()),
           "final_norm": d(st.booleans())}
    if m.type == "tokens":
        longest = m.max_length if isinstance(m.length, str) else m.length
        embed: dict[str, Any] = {"type": "tokens", "norm": d(st.booleans()),
                                 "segments": m.segments if m.segments else d(st.integers(0, 2))}
        offset = 0
        if d(st.integers(0, 3)) == 0:
            embed["padding_idx"] = d(st.integers(0, m.vocab_size - 1))
            offset = embed["padding_idx"] + 1
        embed["positions"] = longest + offset + d(st.integers(0, 3))
    elif m.type == "image":
        sizes = [p for p in range(1, min(m.height, m.width) + 1) if m.height % p == 0 and m.width % p == 0]
        embed = {"type": "patches", "patch_size": d(st.sampled_from(sizes)), "class_token": d(st.booleans()),
                 "bias": d(st.booleans()), "norm": d(st.booleans())}
    else:
        embed = {"type": "regions"}
    cfg["embed"] = embed
    pool = _pool(draft, ["cls", "mean", "eos"] if m.type == "tokens" else ["cls", "mean"])
    if pool is not None:
        cfg["pool"] = pool
    return cfg


def resnet(draft: Draft) -> dict[str, Any] | None:
    d = draft.draw
    options = sorted(n for n, m in draft.modalities.items() if m.type == "image")
    if not options:
        return None
    stages = d(st.integers(1, 3))
    block = d(st.sampled_from(["bottleneck", "basic"]))
    reduction = d(small(1, 4))
    widths = [reduction * d(small(1, 4)) for _ in range(stages)]
    return {"type": "resnet", "input": draft.pick(options), "block": block, "reduction": reduction,
            "depths": [d(small(1, 2)) for _ in range(stages)], "widths": widths, "stem": d(small(1, 8))}


def co_attention(draft: Draft) -> dict[str, Any] | None:
    d = draft.draw
    def streams() -> list[str]:
        return sorted(n for n, b in draft.bundles.items() if "sequence" in b and b["sequence"].rank == 3
                      and isinstance(b["sequence"].width, int) and not _training_only(draft, n))

    options = streams()
    if not options and _try(draft, "encoders", "transformer"):  # a stream to work on
        options = streams()
    if not options:
        return None
    text, vision = draft.pick(options), draft.pick(options)
    t = _stack(draft, draft.bundles[text]["sequence"].width)
    v = _stack(draft, draft.bundles[vision]["sequence"].width)
    count = d(st.integers(1, min(t["layers"], v["layers"]) + 1))
    heads = d(small(1, 3))
    co = {"width": heads * d(small(1, 6)), "heads": heads,
          "text_layers": sorted(d(st.sets(st.integers(0, t["layers"]), min_size=count, max_size=count))),
          "vision_layers": sorted(d(st.sets(st.integers(0, v["layers"]), min_size=count, max_size=count)))}
    cfg = {"type": "co_attention", "inputs": {"text": text, "vision": vision}, "text": t, "vision": v, "co": co}
    for stream in ("text", "vision"):
        pool = _pool(draft, ["cls", "mean"])
        if pool is not None:
            cfg[f"{stream}_pool"] = pool
    return cfg


def _same_shape(draft: Draft, ranks: tuple[int, ...], fixed_width: bool, same, ints: bool) -> list[str] | None:
    """Two or three references with `same` shapes; with `ints`, integer tensors (ids, masks) may be among them."""
    first = draft.tensors(ranks, float_only=not ints, fixed_width=fixed_width)
    if not first:
        return None
    ref, info = draft.pick(first)
    others = [r for r, i in draft.tensors(ranks, float_only=not ints, fixed_width=fixed_width) if same(i, info)]
    return [ref] + [draft.pick(others) for _ in range(draft.draw(st.integers(1, 2)))]


def elementwise(draft: Draft) -> dict[str, Any] | None:
    refs = _same_shape(draft, (1, 2, 3, 4), False, lambda a, b: a.shape == b.shape, draft.draw(st.booleans()))
    if refs is None:
        return None
    return {"type": "elementwise", "inputs": refs, "op": draft.pick(["product", "sum", "mean"])}


def concat(draft: Draft) -> dict[str, Any] | None:
    refs = _same_shape(draft, (2, 3, 4), True, lambda a, b: a.shape[:-1] == b.shape[:-1], draft.draw(st.booleans()))
    return None if refs is None else {"type": "concat", "inputs": refs}


def classifier(draft: Draft) -> dict[str, Any] | None:
    d = draft.draw
    options = draft.tensors((2,))
    if not options:
        return None
    return {"type": "classifier", "input": draft.pick(options)[0], "num_classes": d(small(1, 8)),
            "hidden": d(st.lists(small(1, 12), max_size=2)), "activation": d(st.sampled_from(ACTIVATIONS)),
            "norm": d(st.booleans()), "dropout": d(st.sampled_from([0.0, 0.3])),
            "eps": d(st.sampled_from([1e-12, 1e-5]))}


def token_classifier(draft: Draft) -> dict[str, Any] | None:
    d = draft.draw
    options = draft.tensors((3,))
    if not options:
        return None
    ref, info = draft.pick(options)
    cfg = {"type": "token_classifier", "input": ref, "transform": d(st.booleans()),
           "activation": d(st.sampled_from(ACTIVATIONS)), "eps": d(st.sampled_from([1e-12, 1e-5])),
           "bias": d(st.booleans())}
    tied = sorted(n for n, c in draft.configs["encoders"].items()
                  if c.type == "transformer" and c.embed.type == "tokens" and c.width == info.width)
    if tied and d(st.booleans()):
        cfg["tie_to"] = draft.pick(tied)
    else:
        cfg["num_classes"] = d(small(1, 8))
    return cfg


def projection(draft: Draft) -> dict[str, Any] | None:
    options = draft.tensors((2,))
    if not options:
        return None
    return {"type": "projection", "input": draft.pick(options)[0], "dim": draft.draw(small(1, 12)),
            "bias": draft.draw(st.booleans())}


def contrastive(draft: Draft) -> dict[str, Any] | None:
    d = draft.draw
    options = draft.tensors((2,))
    if not options:
        return None
    a, info = draft.pick(options)
    b = draft.pick([r for r, i in options if i.width == info.width])
    keys = d(st.lists(st.sampled_from(["a", "b", "image", "text", "query", "key"]), min_size=2, max_size=2,
                      unique=True))
    return {"type": "contrastive", "inputs": {keys[0]: a, keys[1]: b},
            "logit_scale_init": d(st.floats(0.5, 3.0, allow_nan=False))}


def mlp(draft: Draft) -> dict[str, Any] | None:
    d = draft.draw
    options = draft.tensors((2, 3))
    if not options:
        return None
    return {"type": "mlp", "input": draft.pick(options)[0], "dim": d(small(1, 12)),
            "hidden": d(st.lists(small(1, 12), max_size=2)), "norm": d(st.sampled_from(["none", "batch", "layer"])),
            "activation": d(st.sampled_from(ACTIVATIONS)), "eps": d(st.sampled_from([1e-5, 1e-3]))}


RECIPES = {
    ("encoders", "transformer"): transformer,
    ("encoders", "resnet"): resnet,
    ("fusion", "co_attention"): co_attention,
    ("fusion", "elementwise"): elementwise,
    ("fusion", "concat"): concat,
    ("heads", "classifier"): classifier,
    ("heads", "token_classifier"): token_classifier,
    ("heads", "projection"): projection,
    ("heads", "contrastive"): contrastive,
    ("heads", "mlp"): mlp,
}


# --- any other registered component: fields drawn from its pydantic model -------------------------


def generic(draft: Draft, slot: str, name: str) -> dict[str, Any] | None:
    """Required fields only (plus `type`), each drawn from its annotation; references point at earlier nodes."""
    config: dict[str, Any] = {"type": name}
    refs = [r for r, _ in draft.tensors((0, 1, 2, 3, 4), float_only=False, fixed_width=False)]
    refs += sorted(draft.bundles)
    for field, info in components(slot)[name].config.model_fields.items():
        if field == "type" or not info.is_required():
            continue
        value = _value(draft, info.annotation, info.metadata, refs)
        if value is _SKIP:
            return None
        config[field] = value
    return config


_SKIP = object()


def _value(draft: Draft, ann: Any, metadata: list, refs: list[str]) -> Any:
    d = draft.draw
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return _value(draft, args[0], [*metadata, *args[1:]], refs)
    patterns = [getattr(m, "pattern", None) for m in metadata]
    if ann is str and any(p and "\\." in p for p in patterns):  # a Ref
        return draft.pick(refs) if refs else _SKIP
    if ann is str and any(patterns):  # a Name
        return draft.pick(sorted(draft.bundles)) if draft.bundles else _SKIP
    if origin is typing.Literal:
        return d(st.sampled_from(args))
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        return _value(draft, members[0], metadata, refs) if members else None
    if origin is list:
        item = _value(draft, args[0], [], refs)
        return _SKIP if item is _SKIP else [item]
    if ann is bool:
        return d(st.booleans())
    if ann is int:
        return d(small(1, 4))
    if ann is float:
        return d(st.sampled_from([0.1, 0.5]))
    if ann is str:
        return "x"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        nested = {}
        for field, info in ann.model_fields.items():
            if info.is_required():
                value = _value(draft, info.annotation, info.metadata, refs)
                if value is _SKIP:
                    return _SKIP
                nested[field] = value
        return nested
    return _SKIP


# --- whole specs ----------------------------------------------------------------------------------


def _registered() -> list[tuple[str, str]]:
    """Every registered component; those with a recipe (the exportable ones) four times as often."""
    return [(slot, name) for slot in SLOTS for name in components(slot)] + 3 * sorted(RECIPES)


def _try(draft: Draft, slot: str, name: str) -> bool:
    recipe = RECIPES.get((slot, name))
    config = recipe(draft) if recipe else generic(draft, slot, name)
    return config is not None and draft.add(slot, draft.name(name[:3]), config)


def _exported(draft: Draft) -> bool:
    return any(not c.training_only for c in draft.configs["heads"].values())


@st.composite
def specs(draw, prefix: str = "", max_nodes: int = 6) -> dict[str, Any]:
    """A valid spec as a plain dict (what `yaml.safe_load` of a spec file gives)."""
    draft = Draft(draw, prefix)
    draft.raw["seed"] = draw(st.integers(0, 2**31))
    for _ in range(draw(st.integers(1, 3))):
        add_modality(draft)
    registered = _registered()
    for _ in range(draw(st.integers(1, max_nodes))):
        _try(draft, *draw(st.sampled_from(registered)))
    # Something to export: a head on whatever is there (every modality kind has one that can take it).
    for slot, name in [("heads", "classifier"), ("heads", "mlp"), ("heads", "token_classifier"),
                       ("encoders", "resnet"), ("encoders", "transformer"), ("heads", "classifier"),
                       ("heads", "mlp")]:
        if _exported(draft):
            break
        _try(draft, slot, name)
    assert _exported(draft), draft.raw
    if draw(st.integers(0, 3)) == 0:  # explicit outputs: any field of any node that is not training-only
        inputs = {gi.name for name, m in draft.modalities.items() for gi in m.graph_inputs(name)}
        refs = [r for r, _ in draft.tensors((0, 1, 2, 3, 4), float_only=False, fixed_width=False)
                if "." in r and not _training_only(draft, r.split(".")[0]) and _onnx_name(draft, r) not in inputs]
        if refs:
            draft.raw["outputs"] = draw(st.lists(st.sampled_from(refs), min_size=1, max_size=3, unique=True))
    return draft.raw


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

