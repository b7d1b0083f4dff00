"""The spec root model, assembled from the registered components, and the cross-reference checks.

`make_spec_model(registry)` builds the pydantic root with one `type:`-tagged union per slot;
`plan(spec)` resolves references, orders nodes, runs every component's shape rules and returns
the `Plan` the builder follows. Both are torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

from pydantic import Field, create_model

from mmspec.spec._base import ComponentConfig, Name, Ref, StrictModel
from mmspec.spec.modality import GraphInput, Modality
from mmspec.spec.suggest import suggestion_text
from mmspec.spec.tensors import Bundle, CheckError

SECTIONS = ("encoders", "fusion", "heads", "objectives")


class Reference(StrictModel):
    """Where an architecture comes from: survey IDs, the paper, the public reference class."""

    survey: list[Annotated[str, Field(pattern=r"^[A-Z0-9]+-\d+$")]]
    paper: str
    implementation: str | None = None
    """Importable reference class (e.g. `transformers.BertForPreTraining`), or null."""
    notes: str | None = None


class _SpecBase(StrictModel):
    mmspec: Literal[1]
    """Spec format version."""
    name: Name
    """Names the output files: build/<name>.onnx."""
    description: str | None = None
    reference: Reference | None = None
    modalities: Annotated[dict[Name, Modality], Field(min_length=1)]
    outputs: list[Ref] | None = None
    """Exported outputs (node or node.field). Default: every field of every head."""
    seed: Annotated[int, Field(ge=0)] = 0
    """Seed of the random initialisation (same spec + seed -> identical weights and ONNX bytes)."""
    variants: dict[Name, dict[str, Any]] = {}
    """Named override sets: dotted path -> value, applied with --variant."""


def make_spec_model(registry: dict[str, dict[str, type[ComponentConfig]]]) -> type[StrictModel]:
    """The root spec model with a discriminated union of registered configs for each section."""
    fields: dict[str, Any] = {}
    for section in SECTIONS:
        configs = tuple(registry[section].values())
        union: Any = Annotated[Union[configs], Field(discriminator="type")] if len(configs) > 1 else configs[0]  # noqa: UP007
        fields[section] = (dict[Name, union], {})
    model = create_model("Spec", __base__=_SpecBase, **fields)
    model.__doc__ = "An mmspec model specification."
    return model


@dataclass(frozen=True)
class Node:
    """One component instance in evaluation order, with its inputs resolved."""

    section: str
    name: str
    config: ComponentConfig
    inputs: dict[str, tuple[str, str | None]]
    """Port -> (node, field or None for the whole bundle)."""


@dataclass
class Plan:
    """Everything the builder needs, derived from a valid spec without torch."""

    graph_inputs: list[GraphInput]
    nodes: list[Node]
    bundles: dict[str, Bundle]
    outputs: list[tuple[str, str, str]]
    """(ONNX output name, node, field), in export order."""
    axes_max: dict[str, int] = field(default_factory=dict)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    @property
    def export_nodes(self) -> list[Node]:
        """Nodes the exported outputs depend on (objectives and training-only parts never are)."""
        needed = {node for _, node, _ in self.outputs}
        for n in reversed(self.nodes):
            if n.name in needed:
                needed.update(src for src, _ in n.inputs.values())
        return [n for n in self.nodes if n.name in needed]


class PlanError(Exception):
    """Problems found while planning: (path in the spec tree, code, message) triples."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str, str]]):
        self.problems = problems
        super().__init__("; ".join(m for _, _, m in problems))


class _Context:
    """What a component's `infer` may look at: the spec, and bundles of nodes already planned."""

    def __init__(self, spec: Any, bundles: dict[str, Bundle]):
        self.spec = spec
        self.bundles = bundles


def plan(spec: Any) -> Plan:
    """Resolve references, order nodes topologically, run shape rules; raise PlanError with all problems."""
    problems: list[tuple[tuple[str | int, ...], str, str]] = []
    owner: dict[str, str] = {m: "modalities" for m in spec.modalities}
    for section in SECTIONS:
        for name in getattr(spec, section):
            if name in owner:
                problems.append(
                    (
                        (section, name),
                        "duplicate-name",
                        f"name {name!r} is used in both '{owner[name]}' and '{section}'; node names must be unique",
                    )
                )
            else:
                owner[name] = section

    graph_inputs = [gi for name, m in sorted(spec.modalities.items()) for gi in m.graph_inputs(name)]
    bundles: dict[str, Bundle] = {name: m.bundle(name) for name, m in spec.modalities.items()}
    axes_max = _axes_max(spec)

    pending = {
        name: (section, cfg)
        for section in SECTIONS
        for name, cfg in getattr(spec, section).items()
        if owner.get(name) == section
    }
    for name, (section, cfg) in pending.items():
        for port, ref in cfg.references().items():
            target = ref.split(".")[0]
            if target not in owner:
                problems.append(
                    (
                        (section, name, *_ref_field(cfg, port)),
                        "unknown-reference",
                        f"{section}.{name} refers to {target!r}, which is not a modality or component"
                        f"{suggestion_text(target, owner)}",
                    )
                )

    ctx = _Context(spec, bundles)
    nodes: list[Node] = []
    planned: set[str] = set(spec.modalities)
    failed: set[str] = set()
    while pending:
        ready = [
            n
            for n, (_, cfg) in pending.items()
            if all(
                r.split(".")[0] in planned | failed or r.split(".")[0] not in owner for r in cfg.references().values()
            )
        ]
        if not ready:
            cycle = sorted(pending)
            section, _ = pending[cycle[0]]
            problems.append(((section, cycle[0]), "cycle", f"references form a cycle among: {', '.join(cycle)}"))
            break
        for name in sorted(ready):
            section, cfg = pending.pop(name)
            refs = cfg.references()
            if any(r.split(".")[0] in failed or r.split(".")[0] not in owner for r in refs.values()):
                failed.add(name)
                continue
            inputs, ok = {}, True
            for port, ref in refs.items():
                target, _, fld = ref.partition(".")
                if fld and fld not in bundles[target]:
                    problems.append(
                        (
                            (section, name, *_ref_field(cfg, port)),
                            "unknown-field",
                            f"{section}.{name}: {target!r} has no output {fld!r}; it has {sorted(bundles[target])}"
                            f"{suggestion_text(fld, bundles[target])}",
                        )
                    )
                    ok = False
                inputs[port] = (target, fld or None)
            if not ok:
                failed.add(name)
                continue
            try:
                in_bundles = {p: _select(bundles[t], f) for p, (t, f) in inputs.items()}
                bundles[name] = cfg.infer(in_bundles, ctx)
            except CheckError as e:
                problems.append(((section, name, *e.field), e.code, f"{section}.{name}: {e}"))
                failed.add(name)
                continue
            nodes.append(Node(section, name, cfg, inputs))
            planned.add(name)

    outputs = _outputs(spec, bundles, owner, problems)
    if problems:
        raise PlanError(problems)
    return Plan(graph_inputs, nodes, bundles, outputs, axes_max)


def _select(bundle: Bundle, fld: str | None) -> Bundle:
    return bundle if fld is None else {fld: bundle[fld]}


def _ref_field(cfg: ComponentConfig, port: str) -> tuple[str | int, ...]:
    if getattr(cfg, "input", None) is not None:
        return ("input",)
    if not isinstance(getattr(cfg, "inputs", None), list):
        return ("inputs", port)
    return ("inputs", list(cfg.references()).index(port))


def _axes_max(spec: Any) -> dict[str, int]:
    """Upper bound of every named dynamic axis, from the modalities that declare it."""
    out: dict[str, int] = {}
    for m in spec.modalities.values():
        out.setdefault(m.batch, 4096)
        for axis_field, max_field in (("length", "max_length"), ("count", "max_count")):
            axis = getattr(m, axis_field, None)
            if isinstance(axis, str):
                out[axis] = min(out.get(axis, 1 << 30), getattr(m, max_field))
    return out


def _outputs(
    spec: Any, bundles: dict[str, Bundle], owner: dict[str, str], problems: list
) -> list[tuple[str, str, str]]:
    if spec.outputs is None:
        refs = [(h, f) for h in sorted(spec.heads) if h in bundles for f in sorted(bundles[h])]
    else:
        refs = []
        for i, ref in enumerate(spec.outputs):
            node, _, fld = ref.partition(".")
            if node not in bundles:
                if node not in owner:
                    problems.append(
                        (
                            ("outputs", i),
                            "unknown-reference",
                            f"output {ref!r} names no node{suggestion_text(node, owner)}",
                        )
                    )
                continue
            if owner[node] == "objectives":
                problems.append(
                    (
                        ("outputs", i),
                        "training-only",
                        f"output {ref!r} is an objective; objectives are training-only and never exported",
                    )
                )
                continue
            fields = [fld] if fld else sorted(bundles[node])
            for f in fields:
                if f not in bundles[node]:
                    problems.append(
                        (
                            ("outputs", i),
                            "unknown-field",
                            f"outputs: {node!r} has no output {f!r}; it has {sorted(bundles[node])}"
                            f"{suggestion_text(f, bundles[node])}",
                        )
                    )
                else:
                    refs.append((node, f))
    out, seen = [], set()
    for node, f in refs:
        onnx_name = node if len(bundles[node]) == 1 else f"{node}_{f}"
        if onnx_name not in seen:
            seen.add(onnx_name)
            out.append((onnx_name, node, f))
    if not out and not problems:
        problems.append((("outputs",), "no-outputs", "the spec exports nothing: declare `heads:` or `outputs:`"))
    return out
