"""The spec root model, assembled from the registered components, and the cross-reference checks.

`make_spec_model(registry)` builds the pydantic root with one `type:`-tagged union per slot;
`plan(spec)` resolves references, orders nodes, runs every component's shape rules and returns
the `Plan` the builder follows. Both are torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, Union

from pydantic import Field, create_model

from mmspec.spec.base import Amount, ComponentConfig, KVLayout, Name, Ref, StrictModel
from mmspec.spec.modality import GraphInput, Modality
from mmspec.spec.suggest import suggestion_text
from mmspec.spec.survey import KNOWN_SURVEY_ID
from mmspec.spec.tensors import Bundle, CheckError, Dim, TensorInfo, dim_axes, dim_product, dim_sum, dim_terms
from mmspec.spec.weights import WeightsSpec, check_weights

SLOTS = ("encoders", "fusion", "heads", "objectives")
"""The four sections of a spec that hold components, in evaluation order; each is a registry slot."""
MODEL_SLOTS = SLOTS[:3]
"""The slots whose components make up the model (objectives are training-only and never exported)."""


class Reference(StrictModel):
    """Where an architecture comes from: survey IDs, the paper, the public reference class."""

    survey: list[Annotated[str, Field(pattern=r"^[A-Z0-9]+-\d+$"), KNOWN_SURVEY_ID]]
    """IDs of the survey's architectures (`[CV-01]`), each one listed in mmspec/spec/survey.json."""
    paper: str
    implementation: str | None = None
    """Importable reference class (e.g. `transformers.BertForPreTraining`), or null."""
    notes: str | None = None
    gaps: list[Annotated[str, Field(min_length=1)]] = []
    """What of the survey's architecture this spec does not express yet (a missing tower, a training stage, a
    variant); docs/coverage.md lists them and marks the IDs partial until the list is empty."""


class ExportSpec(StrictModel):
    """One graph of `exports:`: what it is fed from outside, and what it computes."""

    inputs: list[Ref] = []
    """Modalities, and node outputs (`node` or `node.field`) computed elsewhere, that the graph takes."""
    outputs: Annotated[list[Ref], Field(min_length=1)]
    """What the graph returns, as in the top-level `outputs:`."""
    cache: list[Name] = []
    """Nodes this graph runs one decoding step at a time with a KV cache (causal transformers: past keys and
    values per layer come in, the extended ones go out) or with their recurrent states (recurrent networks: the
    states come in, the next ones go out); docs/spec-language.md 4.9."""


class SpecBudget(StrictModel):
    """The sizes a spec declares it is meant to have: limits that replace the default budget for this spec (a
    command-line --max-params / --max-activation-bytes still wins). For models past the defaults on purpose
    (DALL-E's 12B): validate, summary and graph then accept the canonical size, and compile still refuses a
    build that would not fit in this machine's memory."""

    max_params: Amount | None = None
    """Parameters (e.g. 13e9)."""
    max_activation_bytes: Amount | None = None
    """Activation bytes per example at the declared maximum sizes (e.g. 128GiB)."""


class DatasetSpec(StrictModel):
    """One dataset of a training mixture (Flamingo's M3W, ALIGN, LTIP, VTP): its loss weight and its batches'
    sizes. Each `mmspec fit` step draws one batch per dataset and accumulates the gradient of
    sum_m weight_m * loss_m before one optimizer step."""

    weight: Annotated[float, Field(gt=0.0)] = 1.0
    """lambda_m: this dataset's weighted objectives are multiplied by it."""
    sizes: dict[Name, Annotated[int, Field(ge=1)]] = {}
    """Dynamic axis -> its size in this dataset's batches (a batch axis sets its rows); others: as a plain fit."""


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
    exports: Annotated[dict[Name, ExportSpec], Field(min_length=1)] | None = None
    """Several graphs instead of one: graph name -> its inputs and outputs (docs/spec-language.md 4.8)."""
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    """Seed of the random initialisation (same spec + seed -> identical weights and ONNX bytes); below 2**63
    (torch seeds are 64-bit, and verification cases use seed + 1, seed + 2, ...)."""
    variants: dict[Name, dict[str, Any]] = {}
    """Named override sets: dotted path -> value, applied with --variant."""
    weights: WeightsSpec | None = None
    """How `--weights` checkpoints name this model's tensors. Default: mmspec's own names."""
    budget: SpecBudget | None = None
    """This spec's own limits instead of the default budget (2e9 parameters, 64 GiB of activations)."""
    datasets: dict[Name, DatasetSpec] = {}
    """Training mixture: `mmspec fit` accumulates one weighted batch of each into every step (docs/training.md)."""


def make_spec_model(registry: dict[str, dict[str, type[ComponentConfig]]]) -> type[StrictModel]:
    """The root spec model with a discriminated union of registered configs for each section."""
    fields: dict[str, Any] = {}
    for section in SLOTS:
        configs = tuple(registry[section].values())
        union: Any = Annotated[Union[configs], Field(discriminator="type")] if len(configs) > 1 else configs[0]  # noqa: UP007
        fields[section] = (dict[Name, union], {})
    model = create_model("Spec", __base__=_SpecBase, **fields)
    model.__doc__ = "An mmspec model specification."
    return model


@dataclass(frozen=True)
class Fold:
    """An encoder over a modality with items (`count`) runs on the items folded into the batch: the inputs of
    `ports` go from [batch, count, ...] to [batch*count, ...], and its outputs are unfolded by `unfold_bundle`."""

    ports: tuple[str, ...]
    batch: Dim
    count: Dim
    concat: tuple[str, ...] = ()
    """The outputs whose items are concatenated along their sequence axis (the others gain an item axis)."""

    @property
    def folded(self) -> Dim:
        return dim_product(self.batch, self.count)

    def outputs(self, folded: Bundle) -> Fold:
        """This fold, with the encoder's outputs over folded items sorted by `unfold_rule`."""
        return replace(self, concat=tuple(k for k, t in folded.items() if unfold_rule(k, t.rank) == "concat"))


@dataclass(frozen=True)
class Node:
    """One component instance in evaluation order, with its inputs resolved."""

    section: str
    name: str
    config: ComponentConfig
    inputs: dict[str, tuple[str, str | None]]
    """Port -> (node, field or None for the whole bundle)."""
    fold: Fold | None = None
    """Set for an encoder that reads items (see `Fold`)."""


@dataclass(frozen=True)
class CacheTensor:
    """One key or value tensor of a KV cache, or one recurrent state, that a graph takes or returns."""

    name: str
    """ONNX name: `past_key_values.{layer}.{part}` in, `present.{layer}.{part}` out, `cross_key_values.{layer}.{part}`
    (precomputed cross-attention context), `state.{part}` in and `next_state.{part}` out (a recurrent state, layer
    0), prefixed `<node>.` when a graph, or the spec, caches several nodes."""
    node: str
    kind: Literal["past", "present", "cross", "state", "next_state"]
    layer: int
    part: str
    """`key` or `value`; for a state, its name (`h`, `c`)."""
    info: TensorInfo
    context: tuple[str, str] | None = None
    """For `cross`: the (node, field) whose keys/values these are; for `state`: the (node, field) its first step
    starts from (None: zeros)."""


@dataclass(frozen=True)
class CachedNode:
    """A node that a graph of `exports:` runs one step at a time (`cache:`)."""

    node: str
    past: str | None
    """The named axis of the cached positions; it may be 0 (the first step). None: no attention cache (a recurrent
    network keeps only states)."""
    length: str
    """The named axis of the new positions of a step."""
    positions: int | None
    """past + length must not exceed this (the node's learned position table); None: no limit."""
    context: tuple[str, str] | None = None
    """The cross-attention context (node, field), replaced in this graph by its precomputed keys/values."""
    context_port: str | None = None
    state_port: str | None = None
    """The port of the initial states, which a step does not read (its states come in)."""


@dataclass(frozen=True)
class ExportGraph:
    """One graph of `exports:`: its inputs (a fed node output is a GraphInput whose `modality` is the node),
    the sub-DAG computing its outputs from them, and its outputs."""

    name: str
    inputs: list[GraphInput]
    sources: list[str]
    """Per input: "modality M" or "node N.F"."""
    nodes: list[Node]
    outputs: list[tuple[str, str, str]]
    """(ONNX output name, node, field), in export order."""
    cached: tuple[CachedNode, ...] = ()
    cache_inputs: tuple[CacheTensor, ...] = ()
    """Past and cross-attention keys/values and recurrent states fed in (their GraphInputs close `inputs`)."""
    cache_outputs: tuple[CacheTensor, ...] = ()
    """Present keys/values and next states, then cross-attention keys/values this graph computes for a step graph;
    after `outputs`."""

    @property
    def output_names(self) -> list[str]:
        return [name for name, _, _ in self.outputs] + [t.name for t in self.cache_outputs]


@dataclass
class Plan:
    """Everything the builder needs, derived from a valid spec without torch."""

    graph_inputs: list[GraphInput]
    nodes: list[Node]
    bundles: dict[str, Bundle]
    outputs: list[tuple[str, str, str]]
    """(ONNX output name, node, field), in export order."""
    axes_max: dict[str, int] = field(default_factory=dict)
    axes_min: dict[str, int] = field(default_factory=dict)
    """Lower bounds other than 1: a past axis of `cache:` may be 0."""
    graphs: list[ExportGraph] = field(default_factory=list)
    """The graphs of `exports:`, each after the graphs that feed it; empty without `exports:` (then `outputs`
    is the one graph's; with it, the union of the graphs' outputs)."""

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def node_inputs(self, node: Node) -> dict[str, Bundle]:
        """The bundles `node`'s component sees (its `infer`, `build`, `estimate_params`): what it references,
        with items folded into the batch for an encoder over items."""
        return fold_inputs({p: select(self.bundles[t], f) for p, (t, f) in node.inputs.items()}, node.fold)

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


class PlanContext:
    """What a component's `infer` may look at: the spec, and bundles of nodes already planned."""

    def __init__(self, spec: Any, bundles: dict[str, Bundle]):
        self.spec = spec
        self.bundles = bundles


RESERVED_NODE_NAMES = frozenset({
    "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "clear", "compile", "cpu", "cuda",
    "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer", "get_extra_state",
    "get_parameter", "get_submodule", "half", "ipu", "items", "keys", "load_state_dict", "modules", "mtia",
    "named_buffers", "named_children", "named_modules", "named_parameters", "parameters", "pop",
    "register_backward_hook", "register_buffer", "register_forward_hook", "register_forward_pre_hook",
    "register_full_backward_hook", "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook", "register_module", "register_parameter", "register_state_dict_post_hook",
    "register_state_dict_pre_hook", "requires_grad_", "set_extra_state", "set_submodule", "share_memory",
    "state_dict", "to", "to_empty", "train", "training", "type", "update", "values", "xpu", "zero_grad",
})  # fmt: skip
"""Attributes of torch's nn.ModuleDict that a node name could spell: the built model keys its nodes by name in
one, so these names cannot be nodes (tests/spec/test_names.py compares the set with the installed torch)."""


def plan(spec: Any) -> Plan:
    """Resolve references, order nodes topologically, run shape rules; raise PlanError with all problems."""
    problems: list[tuple[tuple[str | int, ...], str, str]] = []
    owner: dict[str, str] = {m: "modalities" for m in spec.modalities}
    for section in SLOTS:
        for name in getattr(spec, section):
            if name in RESERVED_NODE_NAMES:
                problems.append(((section, name), "bad-name", f"{section}.{name}: {name!r} is an attribute of the "
                                 f"torch module container that holds the nodes; rename the node (e.g. {name}_)"))
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
    problems += _degenerate_axes(spec, axes_max)
    problems += [(("modalities", name, fld), "check", f"modalities.{name}: {msg}")
                 for name, m in sorted(spec.modalities.items()) for fld, msg in m.problems()]

    pending = {
        name: (section, cfg)
        for section in SLOTS
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

    ctx = PlanContext(spec, bundles)
    batch_names = {m.batch for m in spec.modalities.values()}
    nodes: list[Node] = []
    planned: set[str] = set(spec.modalities)
    failed: set[str] = set()
    # Waves in linear time: a node is ready once every pending node it references is planned or failed;
    # each wave is handled in name order (a spec with thousands of chained nodes must not take hours).
    waiting = {n: ({r.split(".")[0] for r in cfg.references().values()} | set(cfg.planned_after())) & pending.keys()
               for n, (_, cfg) in pending.items()}
    users: dict[str, list[str]] = {}
    for n, deps in waiting.items():
        for dep in deps:
            users.setdefault(dep, []).append(n)
    ready = [n for n, deps in waiting.items() if not deps]
    while pending:
        if not ready:
            problems += _cycles(pending, waiting)
            break
        wave, ready = sorted(ready), []
        for name in wave:
            for user in users.get(name, ()):
                waiting[user].discard(name)
                if not waiting[user]:
                    ready.append(user)
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
                elif not bundles[target]:  # e.g. an objective that only transforms the batch
                    problems.append(((section, name, *_ref_field(cfg, port)), "unknown-field",
                                     f"{section}.{name}: {target!r} emits no tensors to read"))
                    ok = False
                inputs[port] = (target, fld or None)
            if not ok:
                failed.add(name)
                continue
            try:
                selected = {p: select(bundles[t], f) for p, (t, f) in inputs.items()}
                same_batch_axis(cfg, selected, batch_names)
                fold = _fold(spec, section, cfg, inputs) if section == "encoders" else None
                in_bundles = fold_inputs(selected, fold)
                out = cfg.infer(in_bundles, ctx)
                fold = fold and fold.outputs(out)
                bundles[name] = unfold_bundle(out, fold)
            except CheckError as e:
                problems.append(((section, name, *e.field), e.code, f"{section}.{name}: {e}"))
                failed.add(name)
                continue
            nodes.append(Node(section, name, cfg, inputs, fold))
            planned.add(name)

    graphs: list[ExportGraph] = []
    if spec.exports is None:
        outputs = _outputs(spec, bundles, owner, problems)
        problems += _io_name_clashes(spec, graph_inputs, outputs, owner)
    else:
        if spec.outputs is not None:
            problems.append((("outputs",), "conflict", "a spec with `exports:` names each graph's outputs there; "
                                                       "remove the top-level `outputs:`"))
        graphs = _export_graphs(spec, nodes, bundles, owner, problems, axes_max)
        outputs = list({name: (name, n, f) for g in graphs for name, n, f in g.outputs}.values())
    problems += _training_only_problems(spec, nodes, outputs if spec.exports is None else [], owner)
    problems += check_weights(spec.weights, {n: c for s in SLOTS for n, c in getattr(spec, s).items()})
    if problems:
        raise PlanError(problems)
    axes_min = {c.past: 0 for g in graphs for c in g.cached if c.past is not None}
    return Plan(graph_inputs, nodes, bundles, outputs, axes_max, axes_min, graphs)


def _training_only_problems(spec: Any, nodes: list[Node], outputs: list, owner: dict[str, str]) -> list:
    """Training-only parts stay out of every export: no exported output may depend on a `training_only`
    node, only objectives may read an objective's outputs, and objectives need no `training_only` key."""
    problems: list[tuple[tuple[str | int, ...], str, str]] = []
    by_name = {n.name: n for n in nodes}
    for n in nodes:
        if n.section == "objectives" and "training_only" in n.config.model_fields_set:
            msg = f"objectives.{n.name}: objectives are always training-only; remove `training_only`"
            problems.append(((n.section, n.name, "training_only"), "training-only", msg))
        for port, (src, _) in n.inputs.items() if n.section != "objectives" else ():
            if owner.get(src) == "objectives":
                msg = f"{n.section}.{n.name} reads objective {src!r}; only objectives may use an objective's outputs"
                problems.append(((n.section, n.name, *_ref_field(n.config, port)), "training-only", msg))
    # first[n]: the first training-only node a depth-first walk up from n meets (last input first), or None;
    # computed once in plan order, so thousands of chained outputs stay linear.
    first: dict[str, str | None] = {}
    for n in nodes:
        hit = None
        for src, _ in reversed(list(n.inputs.values())):
            if src in by_name:
                hit = src if by_name[src].config.training_only else first.get(src)
                if hit:
                    break
        first[n.name] = hit
    reported: set[str] = set()
    for _, out_node, _ in outputs:
        if out_node in reported:
            continue
        reported.add(out_node)
        name = first.get(out_node)
        if name:
            where: tuple[str | int, ...] = (
                ("outputs", next(i for i, r in enumerate(spec.outputs) if r.split(".")[0] == out_node))
                if spec.outputs is not None
                else (owner[out_node], out_node)
            )
            msg = (
                f"exported node {out_node!r} depends on training-only node {name!r}; mark "
                f"{owner[out_node]}.{out_node} `training_only: true` too, or export something else"
            )
            problems.append((where, "training-only", msg))
    return problems


def _cycles(pending: dict[str, tuple[str, Any]], waiting: dict[str, set[str]]) -> list:
    """One `cycle` problem per reference cycle among the nodes left pending, naming the cycle's members only
    (not the nodes that merely depend on it). Each stuck node waits on at least one other stuck node."""
    problems: list[tuple[tuple[str | int, ...], str, str]] = []
    done: set[str] = set()
    for start in sorted(pending):
        path: list[str] = []
        index: dict[str, int] = {}
        node = start
        while node not in done and node not in index:
            index[node] = len(path)
            path.append(node)
            node = min(waiting[node])
        if node in index:
            cycle = sorted(path[index[node] :])
            section, _ = pending[cycle[0]]
            problems.append(((section, cycle[0]), "cycle", f"references form a cycle among: {', '.join(cycle)}"))
        done.update(path)
    return problems


def _io_name_clashes(spec: Any, graph_inputs: list[GraphInput], outputs: list, owner: dict[str, str]) -> list:
    """ONNX graph inputs and outputs share one namespace: `text_mask` is the mask input of modality `text`, so
    neither a modality nor an exported output may take that name."""
    problems: list[tuple[tuple[str | int, ...], str, str]] = []
    taken: dict[str, str] = {}
    for gi in graph_inputs:
        if taken.setdefault(gi.name, gi.modality) != gi.modality:
            problems.append((("modalities", gi.modality), "duplicate-name",
                             f"modality {gi.modality!r} has the ONNX input name {gi.name!r}, which is already an "
                             f"input of modality {taken[gi.name]!r}; rename modality {gi.modality!r}"))
    for onnx_name, node, fld in outputs:
        if onnx_name in taken:
            fix = "export a computed tensor instead" if owner[node] == "modalities" else f"rename {owner[node]}.{node}"
            problems.append((_output_path(spec, owner, node), "duplicate-name",
                             f"the ONNX output name {onnx_name!r} of {node}.{fld} is already an input of "
                             f"modality {taken[onnx_name]!r}; {fix}"))
    return problems


def _output_path(spec: Any, owner: dict[str, str], node: str) -> tuple[str | int, ...]:
    """Where an exported node is named: its `outputs:` entry, else (default outputs) the node itself."""
    if spec.outputs is not None:
        return ("outputs", next(i for i, r in enumerate(spec.outputs) if r.split(".")[0] == node))
    return (owner[node], node)


def select(bundle: Bundle, fld: str | None) -> Bundle:
    """The bundle a reference reads: the whole bundle, or only its field `fld`."""
    return bundle if fld is None else {fld: bundle[fld]}


def same_batch_axis(cfg: ComponentConfig, selected: dict[str, Bundle], batch_names: set[str]) -> None:
    """Every input of a node shares one batch axis: the modalities' batch names found in the leading dims of what
    each port reads (`batch*media` counts as `batch`) must agree, else a CheckError at the first port that
    differs. Shape rules can then join inputs along the batch without checking it themselves."""
    first: tuple[str, set[str]] | None = None
    refs = cfg.references()
    for port, bundle in selected.items():
        names = {a for t in bundle.values() if t.rank for a in dim_axes(t.shape[0]) & batch_names}
        if not names:
            continue
        if first is None:
            first = (port, names)
        elif names != first[1]:
            raise CheckError(_ref_field(cfg, port), f"{refs[port]!r} has batch {' and '.join(sorted(names))!r} "
                             f"but {refs[first[0]]!r} has {' and '.join(sorted(first[1]))!r}; the inputs of "
                             f"one node need the same batch axis")


def _fold(spec: Any, section: str, cfg: ComponentConfig, inputs: dict[str, tuple[str, str | None]]) -> Fold | None:
    """The Fold of an encoder whose inputs are modalities with items; None when none of them has items, or when
    the encoder reads the item axis itself (`reads_items`: a video's frames)."""
    if getattr(cfg, "reads_items", False):
        return None
    items = {p: spec.modalities[t] for p, (t, _) in inputs.items() if t in spec.modalities
             and spec.modalities[t].items is not None}
    if not items:
        return None
    first, m = next(iter(items.items()))
    for port, (target, _) in inputs.items():
        other = items.get(port)
        if other is None or (other.batch, other.items) != (m.batch, m.items):
            what = f"has items [{other.batch}, {other.items}]" if other else "has no items"
            raise CheckError(_ref_field(cfg, port), f"{target!r} {what} but {inputs[first][0]!r} has items "
                             f"[{m.batch}, {m.items}]; an encoder over items reads only modalities with the same "
                             f"batch and count")
    return Fold(tuple(items), m.batch, m.items)


def fold_inputs(inputs: dict[str, Bundle], fold: Fold | None) -> dict[str, Bundle]:
    """Items folded into the batch: [batch, count, ...] -> [batch*count, ...] on the ports of `fold`."""
    if fold is None:
        return inputs
    return {p: {k: t.with_shape(fold.folded, *t.shape[2:]) for k, t in b.items()} if p in fold.ports else b
            for p, b in inputs.items()}


def unfold_rule(field: str, rank: int) -> str:
    """How an encoder's output over folded items [batch*count, ...] is unfolded: "concat" for sequences
    [B*M, N, D] -> [B, M*N, D] and their masks (`mask`, `*_mask`: [B*M, N] -> [B, M*N]), the items concatenated
    along the sequence; "items" for everything else, which gains an item axis: [B*M, D] -> [B, M, D],
    [B*M, C, h, w] -> [B, M, C, h, w]."""
    is_mask = field == "mask" or field.endswith("_mask")
    return "concat" if rank == 3 or (rank == 2 and is_mask) else "items"


def unfold_bundle(bundle: Bundle, fold: Fold | None) -> Bundle:
    """An encoder's output bundle over folded items, unfolded by `unfold_rule` (what downstream nodes see)."""
    if fold is None:
        return bundle
    out: Bundle = {}
    for name, t in bundle.items():
        if not t.shape or t.shape[0] != fold.folded:
            raise CheckError("input", f"output {name!r} {list(t.shape)} does not start with the folded batch "
                                      f"{fold.folded!r}, so its items cannot be restored; read this modality "
                                      f"without `count` or use another encoder")
        if name in fold.concat:
            out[name] = TensorInfo((fold.batch, dim_product(fold.count, t.shape[1]), *t.shape[2:]), t.dtype)
        else:
            out[name] = TensorInfo((fold.batch, fold.count, *t.shape[1:]), t.dtype)
    return out


def _ref_field(cfg: ComponentConfig, port: str) -> tuple[str | int, ...]:
    if hasattr(cfg, "port_path"):  # components whose ports are not one `input`/`inputs` field (modality_pool)
        return cfg.port_path(port)
    if port in getattr(cfg, "ref_fields", ()) or port in type(cfg).model_fields:  # one field per reference
        return (port,)
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


def _degenerate_axes(spec: Any, axes_max: dict[str, int]) -> list:
    """A named (dynamic) axis must be able to take two sizes; `max_length: 1` makes it a constant."""
    problems: list[tuple[tuple[str | int, ...], str, str]] = []
    for name, m in sorted(spec.modalities.items()):
        for axis_field, max_field in (("length", "max_length"), ("count", "max_count")):
            axis = getattr(m, axis_field, None)
            if isinstance(axis, str) and axes_max.get(axis, 2) < 2 and getattr(m, max_field) < 2:
                problems.append((("modalities", name, max_field), "check",
                                 f"modalities.{name}: the dynamic axis {axis!r} can only have size 1 ({max_field} "
                                 f"{getattr(m, max_field)}); raise {max_field}, or write `{axis_field}: 1` for a "
                                 f"fixed size"))
    return problems


def _outputs(
    spec: Any, bundles: dict[str, Bundle], owner: dict[str, str], problems: list
) -> list[tuple[str, str, str]]:
    if spec.outputs is None:
        refs = [
            (h, f)
            for h in sorted(spec.heads)
            if h in bundles and not spec.heads[h].training_only
            for f in sorted(bundles[h])
        ]
    else:
        refs = [r for _, r in _output_refs(spec, spec.outputs, ("outputs",), "outputs", bundles, owner, problems)]
    out = _onnx_outputs(refs, bundles, problems, lambda node: _output_path(spec, owner, node), owner)
    if not out and not problems:
        problems.append((("outputs",), "no-outputs", "the spec exports nothing: declare `heads:` or `outputs:`"))
    return out


def _output_refs(spec: Any, refs: list[str], at: tuple[str | int, ...], label: str, bundles: dict[str, Bundle],
                 owner: dict[str, str], problems: list, what: str = "output") -> list[tuple[int, tuple[str, str]]]:
    """(index in `refs`, (node, field)) for every exportable field that `refs` (the list at path `at`) names;
    `what` ("output", "input") is how the messages call an entry."""
    out = []
    for i, ref in enumerate(refs):
        node, _, fld = ref.partition(".")
        if node not in bundles:
            if node not in owner:
                problems.append(((*at, i), "unknown-reference",
                                 f"{what} {ref!r} names no node{suggestion_text(node, owner)}"))
            continue
        if owner[node] == "objectives":
            problems.append(((*at, i), "training-only",
                             f"{what} {ref!r} is an objective; objectives are training-only and never exported"))
            continue
        if owner[node] != "modalities" and getattr(spec, owner[node])[node].training_only:
            problems.append(((*at, i), "training-only",
                             f"{what} {ref!r} names a training-only node ({owner[node]}.{node} has "
                             f"`training_only: true`)"))
            continue
        for f in [fld] if fld else sorted(bundles[node]):
            if f not in bundles[node]:
                problems.append(((*at, i), "unknown-field", f"{label}: {node!r} has no output {f!r}; it has "
                                 f"{sorted(bundles[node])}{suggestion_text(f, bundles[node])}"))
            else:
                out.append((i, (node, f)))
    return out


def _export_graphs(spec: Any, nodes: list[Node], bundles: dict[str, Bundle], owner: dict[str, str],
                   problems: list, axes_max: dict[str, int]) -> list[ExportGraph]:
    """The graphs of `exports:`, each after the graphs that feed it; graphs that feed each other are a `cycle`.
    A step graph's cross-attention keys/values become extra outputs of the graph that outputs their context."""
    spec_axes = set(axes_max)
    graphs = [_export_graph(spec, g, ex, {n.name: n for n in nodes}, bundles, owner, problems, axes_max, spec_axes)
              for g, ex in spec.exports.items()]
    made = {(n, f): g.name for g in graphs for _, n, f in g.outputs}
    for g in list(graphs):
        for c in g.cached:
            if c.context is None:
                continue
            k = spec.exports[g.name].cache.index(c.node)
            producer = made.get(c.context)
            if producer is None:
                problems.append((("exports", g.name, "cache", k), "missing-input",
                                 f"exports.{g.name}: {c.node} cross-attends to {'.'.join(c.context)}, which no graph "
                                 f"outputs; output it from the graph that computes it (its keys/values are computed "
                                 f"there once)"))
                continue
            cross = tuple(t for t in g.cache_inputs if t.node == c.node and t.kind == "cross")
            i = next(i for i, h in enumerate(graphs) if h.name == producer)
            graphs[i] = replace(graphs[i], cache_outputs=graphs[i].cache_outputs + cross)
    feeders = {g.name: ({made.get((gi.modality, gi.field)) for gi in g.inputs}
                        | {made.get(c.context) for c in g.cached}
                        | {made.get(t.context) for t in g.cache_inputs if t.kind == "state"}) - {None, g.name}
                for g in graphs}
    ordered: list[ExportGraph] = []
    while len(ordered) < len(graphs):
        done = {g.name for g in ordered}
        ready = [g for g in graphs if g.name not in done and feeders[g.name] <= done]
        if not ready:
            stuck = [g.name for g in graphs if g.name not in done]
            problems.append((("exports", stuck[0]), "cycle",
                             f"exports: graphs {', '.join(stuck)} feed each other in a cycle, so no order can run "
                             f"them; merge them, or feed the shared tensors from one graph only"))
            return ordered + [g for g in graphs if g.name not in done]
        ordered.append(ready[0])
    return ordered


def _one_axis(d: str) -> bool:
    """A graph input's dim the exporter can take: one named axis, or `c*axis + k` of one (torch.export's derived
    dims; the named axis need not be an input's own)."""
    named = [k for k in dim_terms(d) if k]
    return len(named) == 1 and len(named[0]) == 1


def _export_graph(spec: Any, g: str, ex: Any, by_name: dict[str, Node], bundles: dict[str, Bundle],
                  owner: dict[str, str], problems: list, axes_max: dict[str, int], spec_axes: set[str]) -> ExportGraph:
    """One graph: its fed inputs, the nodes its outputs need (stopping at the inputs), its outputs, and the KV
    caches of the nodes it decodes step by step."""
    at = ("exports", g)
    fed: dict[str, dict[str, int]] = {}  # node or modality -> {field: index of its `inputs` entry}
    inputs, sources = [], []
    for j, (node, f) in _output_refs(spec, ex.inputs, (*at, "inputs"), f"exports.{g}.inputs", bundles, owner,
                                     problems, what="input"):
        fed.setdefault(node, {})[f] = j
        if node in spec.modalities:
            inputs.append(next(gi for gi in spec.modalities[node].graph_inputs(node) if gi.field == f))
            sources.append(f"modality {node}")
            continue
        info = bundles[node][f]
        bounds = (0, 2) if info.dtype != "float32" else (None, None)
        inputs.append(GraphInput(onnx_name(bundles, node, f), node, f, info, *bounds))
        sources.append(f"node {node}.{f}")
        derived = [d for d in info.shape if isinstance(d, str) and not _one_axis(d)]
        if derived:
            problems.append(((*at, "inputs", j), "check", f"exports.{g}.inputs: {node}.{f} has the derived axis "
                             f"{derived[0]!r}, which a graph input cannot have (one named axis times and plus "
                             f"integers, e.g. `text_len + 576`, can); feed a tensor with such axes"))
    layouts = _kv_layouts(spec, g, ex, by_name, bundles, problems)
    out_refs = _output_refs(spec, ex.outputs, (*at, "outputs"), f"exports.{g}.outputs", bundles, owner, problems)
    used: set[int] = set()
    read: set[tuple[str, str]] = set()  # fed (source, field) pairs some node of the graph reads
    included: set[str] = set()
    for i, (node, f) in out_refs:
        missing: list[tuple[str, str]] = []
        trained: list[str] = []
        stack: list[tuple[str, str | None]] = [(node, f)]
        while stack:
            src, fld = stack.pop()
            if src in fed or src in spec.modalities:
                for field_ in [fld] if fld else sorted(bundles[src]):
                    if field_ in fed.get(src, {}):
                        used.add(fed[src][field_])
                        read.add((src, field_))
                    else:
                        whole = src in spec.modalities and src not in fed
                        missing.append((f"modality {src!r}", src) if whole
                                       else (f"node output '{src}.{field_}'", f"{src}.{field_}"))
            elif src not in included:
                included.add(src)
                if by_name[src].config.training_only:
                    trained.append(src)
                stack.extend(_step_reads(by_name[src], layouts.get(src), bundles))
        ref = ex.outputs[i]
        if missing:
            first, add = missing[0]
            problems.append(((*at, "outputs", i), "missing-input",
                             f"exports.{g}: output {ref!r} needs {first}, which graph {g!r} does not take; add "
                             f"`{add}` to exports.{g}.inputs (or an input computed from it)"))
        if trained:
            problems.append(((*at, "outputs", i), "training-only",
                             f"exports.{g}: output {ref!r} depends on training-only node {trained[0]!r}; feed it "
                             f"as an input, or export something else"))
    cached, cache_inputs, cache_outputs = [], [], []
    for k, (name, layout) in enumerate(layouts.items()):
        if name not in included:
            problems.append(((*at, "cache", k), "unused-input", f"exports.{g}.cache: {name!r} is not computed by "
                             f"graph {g!r} (its outputs do not need it); remove it from cache"))
            continue
        if layout.context is not None:
            if layout.context[1] not in fed.get(layout.context[0], {}):
                problems.append(((*at, "cache", k), "missing-input", f"exports.{g}: {name} cross-attends to "
                                 f"{'.'.join(layout.context)}; add it to exports.{g}.inputs (its keys/values then come "
                                 f"in from the graph that outputs it)"))
                continue
            used.add(fed[layout.context[0]][layout.context[1]])
        # names and past axes prefixed with the node when several nodes are cached (in this graph or across graphs)
        prefixed = len(layouts) > 1 or len({n for e in spec.exports.values() for n in e.cache}) > 1
        node = _cached_node(g, name, layout, prefixed, axes_max, spec_axes, problems, (*at, "cache", k))
        cached.append(node)
        ins, outs = _cache_tensors(name, layout, node, prefixed)
        cache_inputs += ins
        cache_outputs += outs
    if cached:  # a step graph takes only what its nodes read (no padding mask; cross keys/values, not the context)
        keep = [(gi, src) for gi, src in zip(inputs, sources, strict=True) if (gi.modality, gi.field) in read]
        inputs, sources = [gi for gi, _ in keep], [src for _, src in keep]
        inputs += [GraphInput(t.name, t.node, t.name, t.info) for t in cache_inputs]
        sources += [f"cache {t.node}.{t.kind}.{t.layer}.{t.part}" for t in cache_inputs]
    resolved = {j for fields in fed.values() for j in fields.values()}
    for j in sorted(resolved - used):
        problems.append(((*at, "inputs", j), "unused-input",
                         f"exports.{g}.inputs: {ex.inputs[j]!r} is not needed by the graph's outputs; remove it"))

    def out_path(node: str) -> tuple[str | int, ...]:
        return (*at, "outputs", next(i for i, r in enumerate(ex.outputs) if r.split(".")[0] == node))

    outputs = _onnx_outputs([r for _, r in out_refs], bundles, problems, out_path, owner)
    taken: dict[str, str] = {}
    for gi, src in zip(inputs, sources, strict=True):
        if taken.setdefault(gi.name, src) != src:
            problems.append(((*at, "inputs", fed[gi.modality][gi.field]), "duplicate-name",
                             f"exports.{g}: the ONNX input name {gi.name!r} of {src} is already the name of input "
                             f"{taken[gi.name]}; rename {owner[gi.modality]}.{gi.modality}"))
    for name, node, f in outputs:
        if name in taken:
            problems.append((out_path(node), "duplicate-name",
                             f"exports.{g}: the ONNX output name {name!r} of {node}.{f} is already an input of the "
                             f"graph ({taken[name]}); export a computed tensor instead"))
    return ExportGraph(g, inputs, sources, [n for n in by_name.values() if n.name in included], outputs,
                       tuple(cached), tuple(cache_inputs), tuple(cache_outputs))


def _kv_layouts(spec: Any, g: str, ex: Any, by_name: dict[str, Node], bundles: dict[str, Bundle],
                problems: list) -> dict[str, KVLayout]:
    """The KV layout of each node of `exports.G.cache`, by name; located problems for the others."""
    out: dict[str, KVLayout] = {}
    for k, name in enumerate(ex.cache):
        at = ("exports", g, "cache", k)
        node = by_name.get(name)
        if node is None or node.section == "objectives":
            what = "an objective" if node is not None else "not a component"
            problems.append((at, "unknown-reference", f"exports.{g}.cache: {name!r} is {what}; name a causal "
                             f"transformer or recurrent network the graph computes{suggestion_text(name, by_name)}"))
            continue
        if name in out:
            problems.append((at, "duplicate-name", f"exports.{g}.cache: {name!r} is listed twice"))
            continue
        inputs = fold_inputs({p: select(bundles[t], f) for p, (t, f) in node.inputs.items()}, node.fold)
        try:
            out[name] = node.config.kv_layout(inputs, PlanContext(spec, bundles))
        except CheckError as e:
            problems.append((at, e.code, f"exports.{g}.cache: {node.section}.{name} cannot decode step by step: {e}"))
    return out


def _step_reads(node: Node, layout: KVLayout | None, bundles: dict[str, Bundle]) -> list[tuple[str, str | None]]:
    """What a node reads: its inputs; a node decoded step by step does not read its input's `dropped` fields, and
    reads its cross-attention context's mask (when there is one) instead of the context."""
    if layout is None:
        return list(node.inputs.values())
    reads: list[tuple[str, str | None]] = []
    for port, (src, fld) in node.inputs.items():
        if port == layout.state_port:
            continue
        if port == layout.context_port:
            reads += [(src, "mask")] if "mask" in bundles[src] else []
        elif fld is None:
            reads += [(src, f) for f in sorted(bundles[src]) if f not in layout.dropped]
        elif fld not in layout.dropped:
            reads.append((src, fld))
    return reads


def _cached_node(g: str, name: str, layout: KVLayout, prefixed: bool, axes_max: dict[str, int],
                 spec_axes: set[str], problems: list, at: tuple[str | int, ...]) -> CachedNode:
    """The past axis of a cached node (`past`, or `<node>_past` when a graph caches several), bounded so that past
    and new positions fit its position table; recorded in `axes_max`. None for a node without attention layers."""
    if layout.layers == 0:
        return CachedNode(name, None, layout.length, layout.positions, layout.context, layout.context_port,
                          layout.state_port)
    past = f"{name}_past" if prefixed else "past"
    bound = max(1, layout.positions - 1) if layout.positions else axes_max.get(layout.length, 1)
    if past in spec_axes or axes_max.setdefault(past, bound) != bound:
        problems.append((at, "duplicate-name", f"exports.{g}.cache: the past axis {past!r} of {name} is already an "
                         f"axis of a modality or of another cached node; rename that axis"))
    return CachedNode(name, past, layout.length, layout.positions, layout.context, layout.context_port,
                      layout.state_port)


def _cache_tensors(name: str, layout: KVLayout, node: CachedNode,
                   prefixed: bool) -> tuple[list[CacheTensor], list[CacheTensor]]:
    """(past and cross keys/values and states in, present keys/values and next states out) of one cached node,
    layer by layer, then state by state."""
    prefix = f"{name}." if prefixed else ""

    def heads(length: Dim) -> TensorInfo:
        return TensorInfo((layout.batch, layout.heads, length, layout.head_dim))  # B,H,S,d

    ins: list[CacheTensor] = []
    outs: list[CacheTensor] = []
    for i in range(layout.layers):
        for part in ("key", "value"):
            ins.append(CacheTensor(f"{prefix}past_key_values.{i}.{part}", name, "past", i, part, heads(node.past)))
            outs.append(CacheTensor(f"{prefix}present.{i}.{part}", name, "present", i, part,
                                    heads(dim_sum(node.past, node.length))))
    for i in layout.cross_layers:
        for part in ("key", "value"):
            ins.append(CacheTensor(f"{prefix}cross_key_values.{i}.{part}", name, "cross", i, part,
                                   heads(layout.context_length), layout.context))
    init = {state: (src, fld) for state, src, fld in layout.state_init}
    for state, shape in layout.states:
        ins.append(CacheTensor(f"{prefix}state.{state}", name, "state", 0, state, TensorInfo(shape), init.get(state)))
        outs.append(CacheTensor(f"{prefix}next_state.{state}", name, "next_state", 0, state, TensorInfo(shape)))
    return ins, outs


def onnx_name(bundles: dict[str, Bundle], node: str, fld: str) -> str:
    """The ONNX name of a node output: the node's name when it emits one field, else `node_field`."""
    return node if len(bundles[node]) == 1 else f"{node}_{fld}"


def _onnx_outputs(refs: list[tuple[str, str]], bundles: dict[str, Bundle], problems: list, path: Any,
                  owner: dict[str, str]) -> list[tuple[str, str, str]]:
    """(ONNX name, node, field) per distinct reference; two references sharing one name are a problem."""
    out, seen = [], {}
    for node, f in refs:
        name = onnx_name(bundles, node, f)
        if name not in seen:
            seen[name] = (node, f)
            out.append((name, node, f))
        elif seen[name] != (node, f):  # `a_b` (one field) and field `b` of `a` would be one ONNX output
            other = ".".join(seen[name])
            problems.append((path(node), "duplicate-name",
                             f"the ONNX output name {name!r} of {node}.{f} is already the name of output "
                             f"{other}; rename {owner[node]}.{node}"))
    return out
