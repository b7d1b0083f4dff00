"""Checkpoints of `mmspec fit --out DIR`: DIR/<stem>.safetensors (the model's state, tied tensors once, with
their other names in the metadata, and the optimizer state as `optimizer.<group>.<tensor>.<state>`) and
DIR/<stem>.spec.yaml (the spec with the variant and --set applied). `compile`, `summary` and `fit --weights`
load the model state by its own names; `fit --resume` also restores the optimizers and the step count."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from mmspec.errors import UsageError
from mmspec.spec.loader import LoadedSpec
from mmspec.weights.load import OPTIMIZER_PREFIX


def resolved_spec_text(loaded: LoadedSpec) -> str:
    """The spec as trained: variant and overrides applied, `variants:` dropped (it loads back unchanged)."""
    resolved = {k: v for k, v in loaded.raw.items() if k != "variants"}
    header = f"# resolved from {loaded.path}" + (f" --variant {loaded.variant}" if loaded.variant else "") + "\n"
    return header + yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True, width=120)


def save(
    state: dict[str, torch.Tensor],
    loaded: LoadedSpec,
    out_dir: str | Path,
    meta: dict,
    optimizer: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the checkpoint pair; returns the .safetensors path."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unique: dict[str, torch.Tensor] = {k: t.detach().cpu().contiguous() for k, t in (optimizer or {}).items()}
    aliases: dict[str, str] = {}
    first: dict[tuple, str] = {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))
        if key in first:
            aliases[name] = first[key]
        else:
            first[key] = name
            unique[name] = t.detach().cpu().contiguous()
    path = out / f"{loaded.stem}.safetensors"
    metadata = {"spec_sha256": loaded.sha256, "aliases": json.dumps(aliases), **{k: str(v) for k, v in meta.items()}}
    save_file(unique, str(path), metadata=metadata)
    (out / f"{loaded.stem}.spec.yaml").write_text(resolved_spec_text(loaded))
    return path


def optimizer_state(model: torch.nn.Module, optimizers: list[torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
    """Every optimizer's per-parameter state tensors by `optimizer.<group>.<state-dict name>.<state>`."""
    names = {id(p): n for n, p in model.named_parameters()}
    out: dict[str, torch.Tensor] = {}
    for g, opt in enumerate(optimizers):
        for p, values in opt.state.items():
            for key, t in values.items():
                if torch.is_tensor(t):
                    out[f"{OPTIMIZER_PREFIX}{g}.{names[id(p)]}.{key}"] = t
    return out


def restore_optimizers(path: str | Path, model: torch.nn.Module, optimizers: list[torch.optim.Optimizer]) -> int:
    """Load `optimizer_state`'s tensors from a fit checkpoint into `optimizers` (built for `model`); returns the
    steps that checkpoint had trained. UsageError when the state does not belong to these optimizers."""
    from mmspec.weights.checkpoint import open_checkpoint

    names = {id(p): n for n, p in model.named_parameters()}
    with open_checkpoint(path) as ckpt:
        if not ckpt.native:
            raise UsageError(f"--resume {path}: not a checkpoint written by `mmspec fit` (use --weights to start "
                             "from other weights)")
        stored = {k: ckpt.read(k) for k in ckpt.entries if k.startswith(OPTIMIZER_PREFIX)}
        steps = ckpt.metadata.get("steps", "")
    if not (steps.isascii() and steps.isdigit()):
        raise UsageError(f"--resume {path}: the checkpoint records no step count (steps={steps!r})")
    used: set[str] = set()
    for g, opt in enumerate(optimizers):
        for group in opt.param_groups:
            for p in group["params"]:
                prefix = f"{OPTIMIZER_PREFIX}{g}.{names[id(p)]}."
                state = {k[len(prefix) :]: t for k, t in stored.items() if k.startswith(prefix)}
                if set(state) != {"step", "exp_avg", "exp_avg_sq"} or state["exp_avg"].shape != p.shape:
                    raise UsageError(
                        f"--resume {path}: no AdamW state of update group {g} for {names[id(p)]!r} "
                        f"{list(p.shape)} (found {sorted(state) or 'none'}); was it trained from another spec?"
                    )
                opt.state[p] = {k: t.to(p.device) if k != "step" else t for k, t in state.items()}
                used.update(prefix + k for k in state)
    if set(stored) != used:
        extra = sorted(set(stored) - used)
        raise UsageError(f"--resume {path}: optimizer state for tensors this spec does not train: {extra[:3]}"
                         + (f" and {len(extra) - 3} more" if len(extra) > 3 else ""))
    return int(steps)
