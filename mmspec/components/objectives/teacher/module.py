"""EMA teacher: a momentum copy of the student's path from the inputs, run without gradients on the
unaltered batch (BYOL target network, data2vec teacher). After every optimizer step
theta_teacher <- tau * theta_teacher + (1 - tau) * theta_student, tau following the momentum schedule."""

from __future__ import annotations

import copy

import torch
from torch import nn

from mmspec.blocks.schedules import momentum
from mmspec.components.objectives.runtime import ObjectiveModule, StepContext


class EMATeacher(ObjectiveModule):
    """nodes: (name, student module, port -> (source, field or None)) in evaluation order, the student last;
    graph_inputs: (graph input name, modality, field). scope `layers`: only the student's `layers.*` follow the
    EMA, everything else is copied from the student at every step (data2vec shares the embeddings).
    emit_layers: also return `layers` [B, L, S, D], the outputs of the student node's blocks."""

    def __init__(
        self,
        nodes: list,
        graph_inputs: list[tuple[str, str, str]],
        start: float,
        end: float,
        schedule: str,
        steps: int | None,
        scope: str,
        emit_layers: bool,
        train_mode: bool,
    ):
        super().__init__()
        self.wiring = [(name, ports) for name, _, ports in nodes]
        self.graph_inputs = graph_inputs
        self.copies = nn.ModuleDict({name: copy.deepcopy(module) for name, module, _ in nodes})
        self.copies.requires_grad_(False)
        self._live = [module for _, module, _ in nodes]  # the student's modules (not registered twice)
        self.start, self.end, self.schedule, self.steps = start, end, schedule, steps
        self.scope, self.emit_layers, self.train_mode = scope, emit_layers, train_mode
        self.tau = start
        """Momentum of the last update."""

    def run(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        self.copies.train(self.train_mode)
        values: dict[str, dict[str, torch.Tensor]] = {}
        for name, modality, fld in self.graph_inputs:
            values.setdefault(modality, {})[fld] = ctx.clean[name]
        collected: list[torch.Tensor] = []
        student = self.wiring[-1][0]
        hooks = (
            [block.register_forward_hook(lambda m, i, o: collected.append(o)) for block in self.copies[student].layers]
            if self.emit_layers
            else []
        )
        try:
            with torch.no_grad():
                for name, ports in self.wiring:
                    args = {p: values[s] if f is None else {f: values[s][f]} for p, (s, f) in ports.items()}
                    values[name] = self.copies[name](args)
        finally:
            for h in hooks:
                h.remove()
        out = dict(values[student])
        if self.emit_layers:
            out["layers"] = torch.stack(collected, dim=1)  # B,L,S,D
        return out

    @torch.no_grad()
    def after_step(self, step: int, total: int) -> None:
        self.tau = momentum(self.start, self.end, self.schedule, step, self.steps or total)
        student = self.wiring[-1][0]
        for (name, _), live in zip(self.wiring, self._live, strict=True):
            source = dict(live.named_parameters(remove_duplicate=False))
            for pname, p in self.copies[name].named_parameters(remove_duplicate=False):
                follow = self.scope == "all" or (name == student and pname.startswith("layers."))
                p.lerp_(source[pname], 1 - self.tau) if follow else p.copy_(source[pname])
            source_buffers = dict(live.named_buffers())
            for bname, buf in self.copies[name].named_buffers():
                buf.copy_(source_buffers[bname])
