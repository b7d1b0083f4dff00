"""Pass infrastructure: the requires/call/ensures contract and the manager that enforces it.

After torch.fx `infra/pass_base.py` and onnx_ir `_pass_infra.py`. A `Pass` runs `requires`, then
`call`, then `ensures`. All mmspec passes are in place: `call` mutates the GraphModule it is given and
returns that same object, which `Pass.__call__` checks. `PassManager` runs passes in order, reruns the
list up to `max_iterations` times until nothing changes, checks the graph interface after every pass
(README.md), and reports each run as a `PassRecord`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from torch.fx import GraphModule
from torch.utils import _pytree as pytree

from mmspec.errors import CompileError


class PassError(CompileError):
    """A pass failed; `pass_name` is the failing pass, `passes_run` the passes that ran before it."""

    def __init__(self, message: str, *, pass_name: str | None = None, passes_run: Sequence[str] = ()):
        self.reason = message
        self.pass_name = pass_name
        self.passes_run = tuple(passes_run)
        if pass_name is not None:
            message = f"pass '{pass_name}' failed (after {list(self.passes_run)}): {message}"
        super().__init__(message)


class PreconditionError(PassError):
    """The graph is not in a state the pass may run on (for example, a module in training mode)."""


class PostconditionError(PassError):
    """A pass broke its own promise or a manager invariant (graph inputs and outputs unchanged)."""


@dataclass(frozen=True)
class PassResult:
    graph_module: GraphModule
    modified: bool


@dataclass(frozen=True)
class PassRecord:
    """One pass run, as written to report.json under "passes"."""

    name: str
    modified: bool
    nodes_before: int
    nodes_after: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Pass(abc.ABC):
    """An in-place rewrite of a GraphModule.

    Subclasses set `name` and `description`, implement `call`, and may override `requires` and
    `ensures`. `call` mutates `gm` and returns `PassResult(gm, modified)`; when it modifies the graph it
    must run `gm.graph.lint()` and `gm.recompile()`. `fired` counts the rewrites of the last call.
    """

    name: ClassVar[str]
    description: ClassVar[str]

    def __init__(self) -> None:
        self.fired = 0

    def requires(self, gm: GraphModule) -> None:  # noqa: B027 (optional hook)
        """Raise PreconditionError if the pass must not run on `gm`."""

    @abc.abstractmethod
    def call(self, gm: GraphModule) -> PassResult:
        """Rewrite `gm` in place."""

    def ensures(self, gm: GraphModule) -> None:  # noqa: B027 (optional hook)
        """Raise PostconditionError if `gm` does not keep the pass's promise."""

    def finish(self, gm: GraphModule, modified: bool) -> PassResult:
        """Close an in-place rewrite: when modified, drop unused submodules, lint and recompile."""
        if modified:
            gm.delete_all_unused_submodules()
            gm.graph.lint()
            gm.recompile()
        return PassResult(gm, modified)

    def __call__(self, gm: GraphModule) -> PassResult:
        self.requires(gm)
        result = self.call(gm)
        if not isinstance(result, PassResult) or result.graph_module is not gm:
            raise PassError(
                f"{type(self).__name__}.call must return PassResult(gm, modified) for the gm it was given "
                "(mmspec passes are in place)"
            )
        self.ensures(gm)
        return result

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def require_eval(gm: GraphModule, pass_name: str) -> None:
    """Raise PreconditionError unless `gm` and every module the graph calls (with its submodules) are in
    eval mode. The plain containers fx creates to hold get_attr tensors start in training mode and never
    run, so they do not count."""
    training = ["<root>"] if gm.training else []
    for target in dict.fromkeys(n.target for n in gm.graph.find_nodes(op="call_module")):
        modules = gm.get_submodule(target).named_modules(prefix=target)
        training += [name for name, module in modules if module.training]
    if training:
        raise PreconditionError(
            f"{pass_name} needs an eval-mode model (call .eval() first); in training mode: {training[:5]}"
        )


class PassManager:
    """Run `passes` in order, repeating the list until no pass modifies the graph or `max_iterations`.

    Returns the GraphModule and one PassRecord per pass run. A failure is re-raised as PassError (or the
    PassError subclass the pass raised) naming the failing pass and the passes run before it.
    """

    def __init__(self, passes: Sequence[Pass], max_iterations: int = 1):
        for p in passes:
            if not isinstance(p, Pass):
                raise TypeError(f"PassManager takes Pass instances, got {p!r}")
        if max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
        self.passes = tuple(passes)
        self.max_iterations = max_iterations

    def __call__(self, gm: GraphModule) -> tuple[GraphModule, list[PassRecord]]:
        records: list[PassRecord] = []
        for _ in range(self.max_iterations):
            for p in self.passes:
                gm, record = self._run(p, gm, [r.name for r in records])
                records.append(record)
            if not any(r.modified for r in records[-len(self.passes) :]):
                break
        return gm, records

    @staticmethod
    def _run(p: Pass, gm: GraphModule, passes_run: list[str]) -> tuple[GraphModule, PassRecord]:
        nodes_before = len(gm.graph.nodes)
        interface_before = _interface(gm)
        try:
            result = p(gm)
        except PassError as e:
            raise type(e)(e.reason, pass_name=p.name, passes_run=passes_run) from e
        except Exception as e:
            raise PassError(f"{type(e).__name__}: {e}", pass_name=p.name, passes_run=passes_run) from e
        gm = result.graph_module
        try:
            gm.graph.lint()
        except RuntimeError as e:
            raise PostconditionError(
                f"graph lint failed: {e}", pass_name=p.name, passes_run=passes_run
            ) from e
        interface_after = _interface(gm)
        if interface_after != interface_before:
            raise PostconditionError(
                f"graph interface changed: {_describe(interface_before)} -> {_describe(interface_after)}",
                pass_name=p.name,
                passes_run=passes_run,
            )
        return gm, PassRecord(p.name, result.modified, nodes_before, len(gm.graph.nodes))


def _interface(gm: GraphModule) -> tuple[tuple[tuple[str, Any], ...], pytree.TreeSpec]:
    """Placeholder (name, target) pairs in order, and the structure of the output (count and keys)."""
    placeholders = tuple((n.name, n.target) for n in gm.graph.find_nodes(op="placeholder"))
    (output,) = gm.graph.find_nodes(op="output")
    return placeholders, pytree.tree_structure(output.args[0])


def _describe(interface: tuple[tuple[tuple[str, Any], ...], pytree.TreeSpec]) -> str:
    placeholders, outputs = interface
    inputs = [name if name == target else f"{name} (target {target})" for name, target in placeholders]
    return f"inputs {inputs}, {outputs.num_leaves} outputs"
