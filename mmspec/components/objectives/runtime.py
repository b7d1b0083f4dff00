"""The runtime side of an objective: how `mmspec fit` calls the module an objective component builds.

Per step, for the global batch (every process draws the same one, then keeps its rows):
1. `views(batch, g)`: objectives that compare augmented views replace the batch by its views (all processes);
2. `corrupt(batch, g)`: masking, noising, negative sampling, condition dropout change the *student's* inputs and
   return derived targets (the masked positions, the noise); the unaltered batch stays for teachers;
3. `run(ctx)`: the loss (a scalar), or a bundle of tensors for other objectives (an EMA teacher); an objective
   that decodes from the model (self-critical training) runs it again on new inputs through `ctx.forward`;
4. `after_step(step, total)`: after each optimizer step (EMA updates, temperature clamps).

Modules never modify a tensor of the batch in place: they put new tensors into `batch.inputs`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class Batch:
    """Graph inputs by ONNX input name, data targets by objective; every tensor has the batch rows first."""

    inputs: dict[str, torch.Tensor]
    targets: dict[str, dict[str, torch.Tensor]]

    @property
    def size(self) -> int:
        return next(iter(self.inputs.values())).shape[0]

    def copy(self) -> Batch:
        return Batch(dict(self.inputs), {k: dict(v) for k, v in self.targets.items()})

    def map(self, fn) -> Batch:
        return Batch(
            {k: fn(v) for k, v in self.inputs.items()},
            {o: {k: fn(v) for k, v in t.items()} for o, t in self.targets.items()},
        )

    def rows(self, start: int, stop: int) -> Batch:
        return self.map(lambda t: t[start:stop])


@dataclass
class StepContext:
    """What an objective sees in one training forward pass."""

    args: dict[str, dict[str, torch.Tensor]]
    """Port -> bundle of the referenced node (modalities as they were before corruption)."""
    targets: dict[str, torch.Tensor]
    """This objective's data targets and the targets its `corrupt` derived."""
    clean: dict[str, torch.Tensor] = field(default_factory=dict)
    """Graph inputs before corruption (teachers see these)."""
    student: dict[str, torch.Tensor] = field(default_factory=dict)
    """Graph inputs as the model saw them (gradient penalties differentiate with respect to these)."""
    forward: Callable[[dict[str, torch.Tensor]], dict[str, dict[str, torch.Tensor]]] | None = None
    """The model on other graph inputs (by input name, every one given, the same rows in each): every node's
    bundle, as `MultimodalModel.node_values`, with gradients unless the caller disables them. `mmspec fit` sets
    it; None where no model is at hand."""


class ObjectiveModule(nn.Module):
    """Base of every objective's module; subclasses implement `forward(args, targets)` or `run`."""

    def views(self, batch: Batch, g: torch.Generator) -> Batch:
        return batch

    def corrupt(self, batch: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        return {}

    def input_grad(self) -> list[str]:
        """Graph inputs that must require grad in the forward pass (R1 penalty)."""
        return []

    def run(self, ctx: StepContext):
        return self(ctx.args, ctx.targets)

    def after_step(self, step: int, total: int) -> None:
        pass


def one(bundle: dict[str, torch.Tensor], fld: str | None = None) -> torch.Tensor:
    """The field `fld` of a bundle, or its only tensor."""
    return bundle[fld] if fld is not None and fld in bundle else next(iter(bundle.values()))
