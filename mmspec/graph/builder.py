"""build(plan) -> MultimodalModel: the only place that walks the plan and calls component builders."""

from __future__ import annotations

import torch
from torch import nn

from mmspec.blocks.attention import KVCache
from mmspec.spec.model import ExportGraph, Node, Plan, select


class BuildContext:
    """What a component's `build` may use: the spec, the modules built before it (weight tying), and every node's
    bundle (what the plan inferred)."""

    def __init__(self, spec, modules: dict[str, nn.Module], bundles: dict):
        self.spec = spec
        self.modules = modules
        self.bundles = bundles


class MultimodalModel(nn.Module):
    """Generic container: one submodule per component, evaluated in plan order.

    `forward(inputs)` takes {graph input name: tensor} and returns the exported outputs as a tuple in
    `output_names` order; objectives live in `objectives` and never run in forward.
    """

    def __init__(self, plan: Plan, spec):
        super().__init__()
        self.plan = plan
        self.output_names = [name for name, _, _ in plan.outputs]
        self.input_names = [gi.name for gi in plan.graph_inputs]
        built: dict[str, nn.Module] = {}
        ctx = BuildContext(spec, built, plan.bundles)
        for node in plan.nodes:
            built[node.name] = node.config.build(plan.node_inputs(node), ctx)
            if not node.config.trainable:
                built[node.name].requires_grad_(False)  # frozen (`trainable: false`): no gradients, no optimizer state
        self.components = nn.ModuleDict({n.name: built[n.name] for n in plan.nodes if n.section != "objectives"})
        self.objectives = nn.ModuleDict({n.name: built[n.name] for n in plan.nodes if n.section == "objectives"})
        self._export_nodes = [n for n in plan.export_nodes if n.section != "objectives"]

    def forward(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        values = run_nodes(self.components, self.plan.graph_inputs, self._export_nodes, inputs)
        return tuple(values[node][fld] for _, node, fld in self.plan.outputs)

    def node_values(self, inputs: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
        """Bundles of every modality and every component (objectives excluded), by node name: what
        training needs. `forward` computes only the exported outputs; this computes all nodes."""
        nodes = [n for n in self.plan.nodes if n.section != "objectives"]
        return run_nodes(self.components, self.plan.graph_inputs, nodes, inputs)


class GraphView(nn.Module):
    """One graph of `exports:` over a built model's components (shared, not copied): `forward(inputs)` takes
    {input name: tensor} (fed node outputs, KV caches and recurrent states included) and computes only that graph's
    sub-DAG and outputs: its `outputs`, then its `cache_outputs`. A cached node runs one decoding step (`step`)."""

    def __init__(self, model: MultimodalModel, graph: ExportGraph):
        super().__init__()
        self.components = model.components
        self.graph = graph
        self.input_names = [gi.name for gi in graph.inputs]
        self.output_names = graph.output_names
        self.cached = {c.node: c for c in graph.cached}
        self.cache_inputs = {t.name for t in graph.cache_inputs}
        self.train(model.training)

    def forward(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        fed = [gi for gi in self.graph.inputs if gi.name not in self.cache_inputs]
        values = run_nodes(self.components, fed, [], inputs)
        presents: dict[str, list[KVCache]] = {}
        states: dict[str, dict[str, torch.Tensor]] = {}
        for node in self.graph.nodes:
            if node.name in self.cached:
                values[node.name], presents[node.name], states[node.name] = self.step(node, values, inputs)
            else:
                values[node.name] = run_node(self.components, node, values)
        outs = [values[node][fld] for _, node, fld in self.graph.outputs]
        crosses: dict[str, list[KVCache]] = {}
        for t in self.graph.cache_outputs:
            if t.kind == "next_state":
                outs.append(states[t.node][t.part])  # B,...
                continue
            if t.kind == "present":
                kv = presents[t.node][t.layer]  # B,H,P+T,d
            else:
                if t.node not in crosses:
                    context = values[t.context[0]][t.context[1]]  # B,S,Dc
                    crosses[t.node] = self.components[t.node].cross_kv(context)
                kv = crosses[t.node][self._cross_index(t)]  # B,H,S,d
            outs.append(kv.key if t.part == "key" else kv.value)
        return tuple(outs)

    def step(self, node: Node, values: dict, inputs: dict[str, torch.Tensor]
             ) -> tuple[dict, list[KVCache], dict[str, torch.Tensor]]:
        """One decoding step of a cached node: its past (and cross-attention) keys/values and its recurrent states
        from the inputs; returns (bundle, presents, next states). The module's contract is `KVLayout`'s."""
        c = self.cached[node.name]
        args = {}
        for port, (src, fld) in node.inputs.items():
            if port == c.state_port:
                continue
            if port == c.context_port:
                args[port] = {"mask": values[src]["mask"]} if "mask" in values.get(src, {}) else {}
            else:
                args[port] = select(values[src], fld) if fld is None or fld in values[src] else {}
        caches = {kind: self._caches(node.name, kind, inputs) for kind in ("past", "cross")}
        state = {t.part: inputs[t.name] for t in self.graph.cache_inputs if t.node == node.name and t.kind == "state"}
        if not state:
            return (*self.components[node.name].step(args, caches["past"], caches["cross"] or None), {})
        return self.components[node.name].step(args, caches["past"], caches["cross"] or None, state=state)

    def _caches(self, node: str, kind: str, inputs: dict[str, torch.Tensor]) -> list[KVCache]:
        tensors = [t for t in self.graph.cache_inputs if t.node == node and t.kind == kind]
        return [KVCache(inputs[k.name], inputs[v.name]) for k, v in zip(tensors[::2], tensors[1::2], strict=True)]

    def _cross_index(self, t) -> int:
        """Position of a cross-attention layer among the node's cross-attention layers."""
        layers = sorted({u.layer for u in self.graph.cache_outputs if u.node == t.node and u.kind == "cross"})
        return layers.index(t.layer)


def run_nodes(components: nn.ModuleDict, graph_inputs: list, nodes: list[Node],
              inputs: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Every node's bundle, by node name, from {graph input name: tensor}: the inputs grouped into their
    modalities' (or fed nodes') bundles, then `nodes` run in order."""
    values: dict[str, dict[str, torch.Tensor]] = {}
    for gi in graph_inputs:
        values.setdefault(gi.modality, {})[gi.field] = inputs[gi.name]
    for node in nodes:
        values[node.name] = run_node(components, node, values)
    return values


def run_node(components: nn.ModuleDict, node: Node,
             values: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One component on its inputs; an encoder over items runs on them folded into the batch and its outputs
    are unfolded as the plan says (mmspec.spec.model.unfold_rule)."""
    args = {port: select(values[src], fld) for port, (src, fld) in node.inputs.items()}
    if node.fold is None:
        return components[node.name](args)
    batch = next(iter(args[node.fold.ports[0]].values())).shape[0]
    for port in node.fold.ports:
        args[port] = {k: v.flatten(0, 1) for k, v in args[port].items()}  # B,M,... -> B*M,...
    out = {}
    for name, v in components[node.name](args).items():
        v = v.unflatten(0, (batch, -1))  # B*M,... -> B,M,...
        out[name] = v.flatten(1, 2) if name in node.fold.concat else v  # sequences, masks: B,M*N,...
    return out


def build(plan: Plan, spec, device: str | torch.device = "cpu") -> MultimodalModel:
    """Instantiate the model for a planned spec; weights are seeded by `spec.seed`, so builds repeat exactly.

    On device "meta" nothing is allocated (parameter counts and structure of full-size models).
    """
    with torch.device(device):
        torch.manual_seed(spec.seed)
        return MultimodalModel(plan, spec)
