"""The training loop of `mmspec fit`.

One step on the global batch (the same on every process, drawn from one seed):
  views -> corrupt (student inputs, derived targets) -> this process's rows -> for each update group, in file
  order: forward of every node, the group's objectives, weighted sum, backward, optimizer step -> after-step
  hooks (EMA teachers, temperature clamps). With `datasets:` the step holds one batch per dataset: each group's
  forward and backward run once per dataset, the losses weighted by the dataset's weight, and the gradients
  accumulate into the group's one optimizer step (Flamingo's mixture).
An update group is the objectives with one `updates:` list (GAN: discriminator, then generator); the default
group updates every trainable parameter. Frozen components (`trainable: false`) and frozen parts inside a
component (a stack with `trainable: false`, marked by blocks.transformer.freeze) have no gradients, no optimizer
state, and run in eval mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mmspec.blocks import distributed as mdist
from mmspec.blocks.transformer import is_frozen
from mmspec.components.objectives.runtime import Batch, StepContext
from mmspec.errors import TrainingError, UsageError
from mmspec.spec.loader import LoadedSpec
from mmspec.train.data import dataset_seed


@dataclass
class Group:
    """Objectives that share one optimizer step."""

    key: tuple[str, ...] | None
    losses: list[str]
    needed: list[str]
    """Objectives to run: the group's losses and the objectives they read (teachers), in plan order."""
    params: list[nn.Parameter] = field(default_factory=list)


class TrainStep(nn.Module):
    """forward(student inputs, clean inputs, targets, group) -> {objective: loss}: one training forward pass.
    A module, so that DDP/FSDP can wrap it."""

    def __init__(self, model, groups: list[Group]):
        super().__init__()
        self.model = model
        self.groups = groups

    def forward(
        self,
        student: dict[str, torch.Tensor],
        clean: dict[str, torch.Tensor],
        targets: dict[str, dict[str, torch.Tensor]],
        group: int,
    ) -> dict[str, torch.Tensor]:
        plan = self.model.plan
        values = self.model.node_values(student)
        for gi in plan.graph_inputs:  # objectives read the modalities as they were before corruption
            values[gi.modality] = {**values.get(gi.modality, {}), gi.field: clean[gi.name]}
        losses: dict[str, torch.Tensor] = {}
        wanted = self.groups[group]
        for node in plan.nodes:
            if node.name not in wanted.needed:
                continue
            args = {p: values[s] if f is None else {f: values[s][f]} for p, (s, f) in node.inputs.items()}
            ctx = StepContext(args, targets.get(node.name, {}), clean, student, self.model.node_values)
            result = self.model.objectives[node.name].run(ctx)
            if node.name in wanted.losses:
                losses[node.name] = result
            else:
                values[node.name] = result
        return losses


def group_params(model, key: tuple[str, ...] | None) -> list[nn.Parameter]:
    """Trainable parameters of the nodes in `key` (every trainable parameter for None), each once."""
    if key is None:
        modules = [model]
    else:
        modules = [model.components[n] if n in model.components else model.objectives[n] for n in key]
    params = {id(p): p for m in modules for p in m.parameters() if p.requires_grad}
    return list(params.values())


def make_groups(loaded: LoadedSpec, model) -> list[Group]:
    plan = loaded.plan
    objectives = [n for n in plan.nodes if n.section == "objectives"]
    loss_names = [n.name for n in objectives if "loss" in plan.bundles[n.name]]
    keys: dict[tuple[str, ...] | None, list[str]] = {}
    for name, cfg in loaded.spec.objectives.items():  # file order
        if name in loss_names:
            keys.setdefault(tuple(cfg.updates) if cfg.updates else None, []).append(name)
    deps = {n.name: {s for s, _ in n.inputs.values()} for n in objectives}
    groups = []
    for key, names in keys.items():
        needed, stack = set(), list(names)
        while stack:
            name = stack.pop()
            if name in deps and name not in needed:
                needed.add(name)
                stack.extend(deps[name])
        groups.append(Group(key, names, [n.name for n in objectives if n.name in needed]))
    for g in groups:
        g.params = group_params(model, g.key)
        if not g.params:
            raise UsageError(
                f"objectives {', '.join(g.losses)} update no trainable parameter "
                f"({'updates: ' + ', '.join(g.key) if g.key else 'everything is frozen'})"
            )
    return groups


@dataclass
class History:
    """What `mmspec fit --json` writes: the weighted total per step and each objective's (unweighted) loss."""

    steps: int = 0
    losses: list[float] = field(default_factory=list)
    objectives: dict[str, list[float]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"steps": self.steps, "losses": self.losses, "objectives": self.objectives}


def reported(dataset: str | None, objective: str) -> str:
    """The name a loss is reported under: the objective's, `dataset.objective` in a `datasets:` mixture."""
    return objective if dataset is None else f"{dataset}.{objective}"


class Trainer:
    """Builds the training state of a loaded spec and runs steps. `strategy`: none, ddp or fsdp (the last two
    need torch.distributed to be initialised, as torchrun does). Optimizer: AdamW, one per update group."""

    def __init__(
        self,
        loaded: LoadedSpec,
        lr: float = 3e-3,
        device: str = "cpu",
        strategy: str = "none",
        resample: bool = False,
        weights: str | Path | None = None,
    ):
        from mmspec.graph.builder import build
        from mmspec.weights.load import load_weights

        self.loaded = loaded
        self.device = torch.device(device)
        self.model = build(loaded.plan, loaded.spec).eval()
        self.weights_report = load_weights(self.model, loaded, weights) if weights is not None else None
        """The load report of `weights` (a pretrained checkpoint, or a fit checkpoint to start from)."""
        self.model.to(self.device)
        self.groups = make_groups(loaded, self.model)
        self.weights = {n: cfg.weight for n, cfg in loaded.spec.objectives.items()}
        self.datasets: dict[str | None, float] = {m: d.weight for m, d in loaded.spec.datasets.items()} or {None: 1.0}
        """Dataset -> its weight lambda_m (None: the one batch of a fit without `datasets:`)."""
        self.replicated: list[nn.Parameter] = []
        """Parameters FSDP cannot shard (scalars); their gradients are averaged here."""
        self.frozen = [n.name for n in loaded.plan.nodes if not n.config.trainable and n.section != "objectives"]
        self.frozen_parts = [m for m in self.model.components.modules() if is_frozen(m)]
        """Frozen parts inside components (a `trainable: false` stack)."""
        self.resample = resample
        """Draw new views, masks, noise and negatives every step (else once: the run overfits one batch)."""
        self.step_module: nn.Module = TrainStep(self.model, self.groups)
        if strategy == "ddp":
            # One group: the same parameters are used every step (static_graph also copes with unused ones).
            # Several groups use different parameters in each of their passes.
            static = len(self.groups) == 1
            self.step_module = nn.parallel.DistributedDataParallel(
                self.step_module, static_graph=static, find_unused_parameters=not static
            )
        elif strategy == "fsdp":
            from mmspec.train.distributed import apply_fsdp

            self.replicated = apply_fsdp(self.step_module)
            for g in self.groups:  # fully_shard replaced the parameters by sharded ones
                g.params = group_params(self.model, g.key)
        self.optimizers = [torch.optim.AdamW(g.params, lr=lr) for g in self.groups]
        self.input_grad = sorted({n for m in self.model.objectives.values() for n in m.input_grad()})
        self.step_index = 0

    def prepare(self, batch: Batch, seed: int) -> tuple[Batch, Batch]:
        """(clean, student) rows of this process for the next step: views, then corruption, of the global batch."""
        g = torch.Generator().manual_seed(seed * 1_000_003 + (self.step_index if self.resample else 0))
        for module in self.model.objectives.values():
            batch = module.views(batch, g)
        student = batch.copy()
        for name, module in self.model.objectives.items():
            derived = module.corrupt(student, g)
            if derived:
                student.targets[name] = {**student.targets.get(name, {}), **derived}
        rank, world = mdist.world()
        if world > 1:
            if batch.size % world:
                raise UsageError(f"the batch of {batch.size} rows does not split over {world} processes")
            rows = batch.size // world
            batch, student = batch.rows(rank * rows, (rank + 1) * rows), student.rows(rank * rows, (rank + 1) * rows)
        move = lambda t: t.to(self.device)  # noqa: E731
        batch, student = batch.map(move), student.map(move)
        for name in self.input_grad:
            student.inputs[name] = student.inputs[name].detach().clone().requires_grad_(True)
        return batch, student

    def loss_names(self) -> dict[str, tuple[str | None, str]]:
        """Reported loss name -> (dataset, objective): the objective's name, `dataset.objective` with `datasets:`."""
        return {reported(m, n): (m, n) for g in self.groups for n in g.losses for m in self.datasets}

    def accumulate(self, prepared: dict[str | None, tuple[Batch, Batch]], group: int) -> dict[str, torch.Tensor]:
        """Backward of group `group`'s weighted losses on each dataset's (clean, student) rows, the gradients
        summed into .grad: sum_m lambda_m * sum_n weight_n * loss_{m,n}. Returns the losses by reported name."""
        out = {}
        for m, (clean, student) in prepared.items():
            losses = self.step_module(student.inputs, clean.inputs, student.targets, group)
            total = self.datasets[m] * sum(self.weights[n] * losses[n] for n in self.groups[group].losses)
            total.backward()
            out.update({reported(m, n): v.detach() for n, v in losses.items()})
        return out

    def step(self, batch: Batch | dict[str, Batch], seed: int, total_steps: int) -> dict[str, float]:
        """One training step on `batch` (with `datasets:`, {dataset: its batch}); returns each reported loss
        (`loss_names`) averaged over processes, and `total`."""
        self.step_module.train()
        for name in self.frozen:
            self.model.components[name].eval()
        for module in self.frozen_parts:
            module.eval()
        mixture = batch if isinstance(batch, dict) else {None: batch}
        if set(mixture) != set(self.datasets):
            raise UsageError(f"the step needs one batch per dataset ({', '.join(map(str, self.datasets))}); "
                             f"got {', '.join(map(str, mixture))}")
        prepared = {m: self.prepare(mixture[m], dataset_seed(seed, i)) for i, m in enumerate(self.datasets)}
        values: dict[str, torch.Tensor] = {}
        for i, opt in enumerate(self.optimizers):
            opt.zero_grad(set_to_none=True)
            values.update(self.accumulate(prepared, i))
            for p in self.replicated:
                if p.grad is not None:
                    p.grad.copy_(mdist.global_sum(p.grad) / mdist.world()[1])
            opt.step()
        for module in self.model.objectives.values():
            module.after_step(self.step_index, total_steps)
        self.step_index += 1
        names = self.loss_names()
        stacked = (mdist.global_sum(torch.stack([values[n].float() for n in names])) / mdist.world()[1]).cpu()
        out = {n: float(v) for n, v in zip(names, stacked, strict=True)}
        out["total"] = float(sum(self.datasets[m] * self.weights[n] * out[k] for k, (m, n) in names.items()))
        return out

    def resume(self, path: str | Path) -> None:
        """Continue a `mmspec fit` run: its model state, optimizer state and step count. Every process loads the
        whole state (DDP); FSDP's sharded state is not supported."""
        from mmspec.train.checkpoint import restore_optimizers
        from mmspec.weights.load import load_weights

        self.weights_report = load_weights(self.model, self.loaded, path)
        self.step_index = restore_optimizers(path, self.model, self.optimizers)

    def fit(self, batch: Batch | dict[str, Batch], steps: int, seed: int,
            on_step: Callable[[int, dict], None] | None = None) -> History:
        """`steps` more steps; schedules (EMA momentum) run over this run's end, steps done before included."""
        history = History(objectives={n: [] for n in self.loss_names()})
        total = self.step_index + steps
        for k in range(steps):
            values = self.step(batch, seed, total)
            if not math.isfinite(values["total"]):
                bad = ", ".join(f"{n} {v}" for n, v in values.items() if n != "total" and not math.isfinite(v))
                raise TrainingError(f"the loss became non-finite at step {self.step_index} ({bad or values['total']}); "
                                    "lower --lr or check the batch; nothing was written")
            history.steps += 1
            history.losses.append(values["total"])
            for n in history.objectives:
                history.objectives[n].append(values[n])
            if on_step:
                on_step(k, values)
        return history
