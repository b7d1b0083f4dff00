"""torch.distributed for `mmspec fit`: process-group setup inside torchrun workers, the torchrun launch
behind `--nproc`, and FSDP wrapping. See docs/training.md for several machines."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import torch
import torch.distributed as dist
from torch import nn

from mmspec.blocks import distributed as mdist


def in_worker() -> bool:
    """True inside a torchrun worker of a run with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: str) -> str:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA); returns the device to use."""
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend)
    mdist.set_group(dist.new_group(backend=backend))  # the objectives' collectives (gathers, global counts)
    return device


def shutdown() -> None:
    if dist.is_initialized():
        mdist.set_group(None)
        dist.destroy_process_group()


def launch(argv: list[str], nproc: int) -> int:
    """Run `mmspec <argv>` in `nproc` processes on this machine via torchrun; returns its exit code."""
    cmd = [
        sys.executable,
        "-m",
        "mmspec.train._torchrun",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "mmspec.cli",
        *argv,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run(cmd, env=env, check=False).returncode


def apply_fsdp(root: nn.Module) -> list[nn.Parameter]:
    """FSDP2 (`fully_shard`): one unit per component that shares no parameter with another component (tied
    embeddings stay together in the root unit), then the root. Parameters, gradients and optimizer state are
    sharded over the processes; each unit is gathered only for its forward and backward. Scalar parameters
    (a learned temperature) cannot be sharded: they stay replicated and are returned, so that the caller
    averages their gradients."""
    from torch.distributed.fsdp import fully_shard

    model = root.model
    scalars = {p for p in root.parameters() if p.dim() == 0}
    owners = Counter(id(p) for m in model.components.values() for p in set(m.parameters()))
    for module in model.components.values():
        params = [p for p in module.parameters() if p not in scalars]
        if params and all(owners[id(p)] == 1 for p in params) and any(p.requires_grad for p in params):
            fully_shard(module, ignored_params=scalars)
    fully_shard(root, ignored_params=scalars)
    return [p for p in scalars if p.requires_grad]
