"""Checkpoints of `mmspec fit --out DIR`: DIR/<stem>.safetensors (the model's state, tied tensors once, with
their other names in the metadata) and DIR/<stem>.spec.yaml (the spec with the variant and --set applied)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from mmspec.spec.loader import LoadedSpec


def resolved_spec_text(loaded: LoadedSpec) -> str:
    """The spec as trained: variant and overrides applied, `variants:` dropped (it loads back unchanged)."""
    resolved = {k: v for k, v in loaded.raw.items() if k != "variants"}
    header = f"# resolved from {loaded.path}" + (f" --variant {loaded.variant}" if loaded.variant else "") + "\n"
    return header + yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True, width=120)


def save(state: dict[str, torch.Tensor], loaded: LoadedSpec, out_dir: str | Path, meta: dict) -> Path:
    """Write the checkpoint pair; returns the .safetensors path."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unique: dict[str, torch.Tensor] = {}
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
