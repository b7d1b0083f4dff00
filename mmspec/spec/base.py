"""Strict pydantic building blocks shared by every spec model (torch-free)."""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from mmspec.spec.layout import IDENTITY, MMSPEC_LAYOUT, Rule
from mmspec.spec.tensors import Bundle, CheckError, Dim

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
"""Identifier for specs, modalities, components and axes: lower-case, starts with a letter, <= 64 chars."""

Ref = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}(\.[a-z][a-z0-9_]{0,63})?$")]
"""Reference to a node's output bundle (`text`) or to one field of it (`text.pooled`)."""

Axis = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")] | Annotated[int, Field(ge=1)]
"""A tensor axis: a named dynamic dim (becomes an ONNX symbolic dim) or a fixed size."""

PositiveInt = Annotated[int, Field(ge=1)]

_AMOUNT = re.compile(r"(?P<num>[0-9][0-9_]*(\.[0-9]*)?([eE][+]?[0-9]+)?)\s*(?P<unit>[kKMGTP]i?B?|B)?")
_UNITS = {"": 1, "B": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
          "KI": 1 << 10, "MI": 1 << 20, "GI": 1 << 30, "TI": 1 << 40, "PI": 1 << 50}
MAX_AMOUNT = 10**30


def amount(text: str) -> int | None:
    """`20000000000`, `2e10`, `20_000`, `64GiB`, `2G` as an int (0 when it overflows); None when it is none."""
    m = _AMOUNT.fullmatch(text.strip())
    if not m:
        return None
    unit = (m["unit"] or "").upper().removesuffix("B")
    try:
        number = float(m["num"].replace("_", "")) if any(c in m["num"] for c in ".eE") else int(m["num"])
        return int(number * _UNITS[unit]) if isinstance(number, float) else number * _UNITS[unit]
    except (ValueError, OverflowError):
        return 0


def _amount(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and 1 <= value <= MAX_AMOUNT:
        return int(value)
    if isinstance(value, str):
        parsed = amount(value)
        if parsed is None:
            raise ValueError(f"expected a count such as 13000000000, 1.3e10, 13G or 64GiB, got {value!r}")
        return parsed
    return value


Amount = Annotated[int, BeforeValidator(_amount), Field(ge=1, le=MAX_AMOUNT)]
"""A positive count or byte size: a whole number (`13000000000`, `1.3e+10`), or a string such as `13e9`, `13G` or
`64GiB`."""
Probability = Annotated[float, Field(ge=0.0, lt=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]


@dataclass(frozen=True)
class KVLayout:
    """How a component decodes incrementally (`exports.G.cache`): the keys/values and the recurrent states it keeps
    per step.

    The module's contract: `step(inputs, past, cross)` -> (bundle, presents) for attention caches, with past/present
    keys/values per layer; a component with `states` is called `step(inputs, past, cross, state={name: tensor})`
    and returns (bundle, presents, {name: next state}), each state batch-first with the shape `states` gives."""

    layers: int
    """Self-attention layers; each keeps past keys and values [batch, heads, past, head_dim]. 0: no attention cache
    (a recurrent network keeps only `states`), and no past axis."""
    heads: int
    head_dim: int
    batch: Dim
    length: str
    """The named axis of the new positions of a step (its input's sequence axis)."""
    positions: int | None
    """past + new positions must not exceed this (a learned position table); None: no limit."""
    dropped: tuple[str, ...] = ()
    """Fields of its `input` bundle a step does not read (the padding mask: a step attends to every past key)."""
    cross_layers: tuple[int, ...] = ()
    """Layers with cross-attention, whose context keys/values come in precomputed [batch, heads, S, head_dim]."""
    context: tuple[str, str] | None = None
    """The cross-attention context (node, field); its `mask`, when its node has one, still comes in."""
    context_port: str | None = None
    context_length: Dim | None = None
    states: tuple[tuple[str, tuple[Dim, ...]], ...] = ()
    """Recurrent states a step takes and returns, (name, shape) with the batch first (an LSTM's `h` and `c`
    [batch, layers, hidden]); the first step takes zeros, or the values of `state_init`."""
    state_init: tuple[tuple[str, str, str], ...] = ()
    """(state, node, field): the node output a state starts from (an encoder's final state) instead of zeros."""
    state_port: str | None = None
    """The port that reads `state_init` in the full forward; a step does not read it (its states come in)."""


class StrictModel(BaseModel):
    """Every spec model: unknown keys are errors, no type coercion, no NaN/Inf, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


COMMON_FIELDS = {
    "input": "What this component reads: a modality, a node, or one field of a node (`node.field`, section 4.2).",
    "inputs": "What this component reads: modalities, nodes or `node.field`s (section 4.2).",
    "eps": "Epsilon added to the variance in this component's normalization layers.",
    "dropout": "Dropout probability while training (inference graphs have none).",
    "attention_dropout": "Dropout probability on the attention weights while training.",
    "label_smoothing": "Label smoothing: this share of each target's mass is spread uniformly over the classes.",
    "heads": "Attention heads; they divide the width.",
}
"""Descriptions of fields that mean the same in every component, for configs that do not document them."""


class ComponentConfig(StrictModel):
    """Base of every registered component's config. Subclasses add `type: Literal[...]`.

    Inputs are declared by fields named `input` (one Ref) or `inputs` (a list or mapping of Refs);
    `references()` returns them keyed by port name, which is how the module receives them. Every field is
    documented (an attribute docstring, or COMMON_FIELDS), and the JSON Schema carries the text to editors
    (`field_docs`, `describe_schema`).
    """

    slot: ClassVar[str] = ""
    weight_layouts: ClassVar[dict[str, tuple[Rule, ...]]] = {}
    """Reference implementations' names for this component's tensors (`weights.nodes.NODE.layout`)."""

    def weight_rules(self, layout: str) -> tuple[Rule, ...]:
        """The rules of `layout` for this config; override where they depend on it (e.g. stage depths)."""
        return IDENTITY if layout == MMSPEC_LAYOUT else self.weight_layouts[layout]

    trainable: bool = True
    """false: frozen; the parameters get no gradients and no optimizer state, and the module runs in eval mode
    while training (a parameter shared with a frozen component is frozen too)."""
    training_only: bool = False
    """true: used only while training (projection/predictor heads, discriminators); never exported, and no
    exported output may depend on it. Objectives are always training-only."""

    def kv_layout(self, inputs: dict[str, Bundle], ctx) -> KVLayout:
        """How this component decodes with a KV cache, for `exports.G.cache`; raise CheckError when it cannot."""
        raise CheckError((), f"a {type(self).__name__} does not decode incrementally; `cache` takes causal "
                             f"transformers and recurrent networks")

    def planned_after(self) -> tuple[str, ...]:
        """Nodes to plan and build before this one without reading them (e.g. the owner of shared parameters,
        which `build` takes from `ctx.modules`); no data flows, so graphs of `exports:` do not compute them."""
        return ()

    def references(self) -> dict[str, str]:
        """Port name -> referenced node (or `node.field`)."""
        single: Any = getattr(self, "input", None)
        many: Any = getattr(self, "inputs", None)
        if isinstance(single, str):
            return {"input": single}
        if isinstance(many, dict):
            return dict(many)
        if isinstance(many, list | tuple):
            return {str(i): ref for i, ref in enumerate(many)}
        return {}


def field_docs(cls: type[BaseModel]) -> dict[str, str]:
    """Field name -> description of a spec model: `Field(description=...)`, else the attribute docstring (the string
    right under the field, in its class or a base), else, for a component config, COMMON_FIELDS or what its
    `type` selects. Read from the source when asked (by `mmspec schema`, `components` and the docs), not at import,
    so that loading the registry stays fast."""
    return dict(_field_docs(cls))


@cache
def _field_docs(cls: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    written: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if isinstance(klass, type) and issubclass(klass, BaseModel) and klass is not BaseModel:
            written |= _attribute_docstrings(klass)
    docs = {}
    for name, info in cls.model_fields.items():
        doc = info.description or written.get(name)
        if not doc and issubclass(cls, ComponentConfig):
            if name == "type" and getattr(info.annotation, "__args__", None):
                doc = f"`{info.annotation.__args__[0]}`: selects this component."
            else:
                doc = COMMON_FIELDS.get(name)
        if doc:
            docs[name] = doc
    return tuple(docs.items())


def _attribute_docstrings(klass: type) -> dict[str, str]:
    """The docstrings written right under the annotated attributes in `klass`'s own body."""
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):  # defined where there is no source (an interactive session)
        return {}
    body = ast.parse(source).body[0].body
    out = {}
    for node, after in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            out[node.target.id] = inspect.cleandoc(after.value.value)
    return out


def describe_schema(schema: dict, root: type[BaseModel]) -> dict:
    """`schema` (the JSON Schema of `root`) with every property of `root` and of the spec models in its `$defs`
    described by `field_docs`, in place; returns it."""
    models = {m.__name__: m for m in _subclasses(StrictModel)}
    for name, definition in [(root.__name__, schema), *schema.get("$defs", {}).items()]:
        model = models.get(name) if name != root.__name__ else root
        if model is None:
            continue
        docs = field_docs(model)
        for field, prop in definition.get("properties", {}).items():
            key = next((f for f, info in model.model_fields.items() if (info.alias or f) == field), field)
            if key in docs and "description" not in prop:
                definition["properties"][field] = dict(sorted({**prop, "description": docs[key]}.items()))
    return schema


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out
