"""Capture a MultimodalModel as a torch.fx GraphModule with one named placeholder per graph input.

Our components are written to be symbolically traceable (no data-dependent Python control flow, no
opaque built-in composite modules), so `torch.fx.symbolic_trace` sees every Linear, Conv, BatchNorm
and Dropout as a `call_module` node that passes can rewrite; see docs/capture.md for why this and
not torch.export, which the ONNX exporter then runs on the optimized graph.
"""

from __future__ import annotations

import operator
import re

import torch
from torch import fx

from mmspec.errors import CompileError
from mmspec.graph.builder import GraphView, MultimodalModel


def capture(model: MultimodalModel | GraphView) -> fx.GraphModule:
    """Trace `model` (a whole model or one graph of `exports:`) and turn `inputs["x"]` look-ups into
    placeholders `x` in its input order."""
    try:
        graph = fx.Tracer().trace(model)
    except Exception as e:  # tracing user components: report, never crash
        raise CompileError(f"graph capture failed: {type(e).__name__}: {e}") from e
    (root,) = [n for n in graph.nodes if n.op == "placeholder"]
    lookups = {n.args[1]: n for n in root.users if n.op == "call_function" and n.target is operator.getitem}
    names = list(model.input_names)
    with graph.inserting_before(root):
        for name in names:
            placeholder = graph.placeholder(re.sub(r"\W", "_", name))  # `past_key_values.0.key`: an identifier
            if name in lookups:
                lookups[name].replace_all_uses_with(placeholder)
                graph.erase_node(lookups[name])
    graph.erase_node(root)
    gm = fx.GraphModule(model, graph, class_name="Captured")
    gm.graph.lint()
    gm.meta["output_names"] = list(model.output_names)
    gm.meta["input_names"] = names
    return gm


def example_call(gm: fx.GraphModule, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Run a captured graph on named inputs."""
    return gm(*(inputs[name] for name in gm.meta["input_names"]))
