"""`fit`: one training run of a loaded spec, in this process or as one torchrun worker of several."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from mmspec.blocks import distributed as mdist
from mmspec.errors import UsageError
from mmspec.spec.loader import LoadedSpec
from mmspec.train import distributed
from mmspec.train.checkpoint import optimizer_state, save
from mmspec.train.data import mixture_batches, read_batch_file, synthetic_batch
from mmspec.train.trainer import Trainer


def fit(
    loaded: LoadedSpec,
    steps: int,
    batch: int = 8,
    lr: float = 3e-3,
    seed: int = 0,
    batch_file: str | Path | None = None,
    out_dir: str | Path | None = None,
    json_path: str | Path | None = None,
    device: str = "cpu",
    fsdp: bool = False,
    resample: bool = False,
    on_step: Callable[[int, dict], None] | None = None,
    weights: str | Path | None = None,
    resume: str | Path | None = None,
) -> dict:
    """Train for `steps` on one global batch (synthetic with `batch` rows, or `batch_file`); inside a torchrun
    worker the batch is split over the processes (DDP, or FSDP with `fsdp`). Rank 0 writes `json_path`
    ({"steps", "losses", "objectives"}) and the checkpoint in `out_dir`. Returns that dict.

    `weights` starts from a checkpoint (a pretrained one through the spec's `weights:` layouts, or a fit
    checkpoint); `resume` continues a fit checkpoint's run with its optimizer state and step count."""
    if not loaded.spec.objectives or not any("loss" in loaded.plan.bundles[n] for n in loaded.spec.objectives):
        raise UsageError(f"{loaded.path}: the spec declares no loss objective; nothing to train")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: this machine has no CUDA device (torch.cuda.is_available() is false)")
    if fsdp and not distributed.in_worker():
        raise UsageError("--fsdp shards over several processes; use it with --nproc K (K > 1) or under torchrun")
    if weights is not None and resume is not None:
        raise UsageError("--weights and --resume both give the starting state; pass one (--resume also restores "
                         "the optimizer and the step count)")
    if resume is not None and fsdp:
        raise UsageError("--resume restores whole optimizer state; FSDP shards it, which is not supported yet")
    started = distributed.in_worker()
    if started:
        device = distributed.init(device)
    try:
        rank, world = mdist.world()
        if batch_file and loaded.spec.datasets:
            raise UsageError("--batch-file: the spec declares datasets: (one batch each); a batch file per dataset "
                             "is not supported yet")
        if loaded.spec.datasets:
            data = mixture_batches(loaded, batch, seed)
        else:
            data = read_batch_file(batch_file, loaded) if batch_file else synthetic_batch(loaded, batch, seed)
        for b in data.values() if isinstance(data, dict) else [data]:
            if b.size % world:
                raise UsageError(f"the batch of {b.size} rows does not split evenly over {world} processes")
        strategy = ("fsdp" if fsdp else "ddp") if world > 1 else "none"
        trainer = Trainer(loaded, lr=lr, device=device, strategy=strategy, resample=resample, weights=weights)
        if resume is not None:
            trainer.resume(resume)
        torch.manual_seed(seed + rank + trainer.step_index)  # dropout differs per process (and after a resume)
        history = trainer.fit(data, steps, seed, on_step if rank == 0 else None).as_dict()
        state = _full_state(trainer, fsdp) if out_dir else None
        optim = None if fsdp or not out_dir else optimizer_state(trainer.model, trainer.optimizers)
        if rank == 0:
            if json_path:
                Path(json_path).write_text(json.dumps(history) + "\n")
            if out_dir:
                meta = {"steps": trainer.step_index, "lr": lr, "seed": seed, "processes": world}
                save(state, loaded, out_dir, meta, optim)
        return history
    finally:
        if started:
            distributed.shutdown()


def _full_state(trainer: Trainer, fsdp: bool) -> dict[str, torch.Tensor]:
    if not fsdp:
        return trainer.model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(trainer.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return full
