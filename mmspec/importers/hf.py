"""`mmspec import hf DIR`: an mmspec spec from a Hugging Face `config.json` (torch-free).

Each family lives in the `hf.py` of the component folder it maps onto (`@hf_family`, mmspec/components/hf.py);
this module reads and bounds config.json, picks the family by `model_type` and the architecture in
`architectures[0]`, and writes the spec. Only families whose computation the registered components reproduce
exactly are imported; each is parity-tested against transformers (tests/weights/test_import_hf.py). A family
reads its config with the defaults of its transformers config class, refuses options that would change the
computation into something mmspec does not do (naming the option), and emits the modalities, encoders, heads,
outputs and the `weights:` name map, so that `mmspec compile SPEC --weights DIR` loads the checkpoint next to
the config.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import tempfile
from functools import cache
from pathlib import Path

import yaml

import mmspec.components as components
from mmspec.components.hf import HF_FAMILIES, Config, Family, config_error
from mmspec.errors import ConfigError, Diagnostic, SpecError, UsageError
from mmspec.spec.budget import Budget
from mmspec.spec.files import FileProblem, is_dir, read_limited

CONFIG_MAX_BYTES = 1 << 20
NOT_YET = {  # model_type -> what mmspec lacks for it
    "visual_bert": "visual embeddings inside the text stream",
}


@cache
def families() -> dict[str, Family]:
    """model_type -> Family, after importing the `hf.py` of every component folder that has one."""
    for folder in components.FAMILIES:
        module = f"{components.__name__}.{folder}.hf"
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
    return HF_FAMILIES


def import_hf(path: str | Path, name: str | None = None) -> tuple[dict, str]:
    """(spec tree, transformers class name) for the checkpoint directory (or config.json) at `path`."""
    file = Path(path) / "config.json" if is_dir(path) else Path(path)
    where = str(file)
    try:
        raw = read_limited(file, CONFIG_MAX_BYTES)
    except FileProblem as e:
        raise ConfigError([Diagnostic(where, 0, 0, "read-error", f"cannot read the config: {e}")]) from None
    if len(raw) > CONFIG_MAX_BYTES:
        raise ConfigError([Diagnostic(where, 0, 0, "hf-config",
                                      f"larger than {CONFIG_MAX_BYTES >> 20} MiB; not a model config")])
    text = raw.decode("utf-8", errors="replace")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError([Diagnostic(where, e.lineno, e.colno, "hf-config", f"not valid JSON: {e.msg}")]) from None
    except ValueError as e:
        raise ConfigError([Diagnostic(where, 0, 0, "hf-config", f"not valid JSON: {e}")]) from None
    if not isinstance(data, dict):
        raise ConfigError([Diagnostic(where, 1, 1, "hf-config", "expected a JSON object")])
    model_type = data.get("model_type")
    supported = families()
    if not isinstance(model_type, str):
        raise config_error(where, text, ["model_type"],
                           f"model_type must be a string naming the architecture family, got {model_type!r}")
    if model_type not in supported:
        why = f" ({NOT_YET[model_type]} is missing)" if model_type in NOT_YET else ""
        raise config_error(where, text, ["model_type"], f"model_type {model_type!r} is not supported yet{why}; "
                           f"supported: {', '.join(sorted(supported))}")
    family = supported[model_type]
    archs = data.get("architectures") or [family.architectures[0]]
    arch = archs[0] if isinstance(archs, list) and archs else archs
    if arch not in family.architectures:
        raise config_error(where, text, ["architectures"],
                           f"architecture {arch!r} is not supported yet for model_type {model_type!r}; "
                           f"supported: {', '.join(family.architectures)}")
    if name is not None and not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
        raise UsageError(f"--name {name!r}: use lower-case letters, digits and '_', starting with a letter")
    cfg = Config(data, family.defaults, where, text=text)
    tree = {
        "mmspec": 1,
        "name": name or _name(file.parent.name, model_type),
        "description": f"Imported from {file} ({arch}) by `mmspec import hf`.",
        "reference": {**family.reference, "implementation": f"transformers.{arch}"},
        **family.build(cfg, arch),
    }
    _check_values(tree, file)
    return tree, arch


IMPORT_BUDGET = Budget(max_params=10**13)
"""A checkpoint's parameter count is a fact, not a mistake: imports accept any size a released model has (the
largest hold about 1.6e12 parameters; the CLI tells how to raise --max-params past the default budget) and refuse
only what no checkpoint could be, past 1e13, as values that make no valid model."""


def _check_values(tree: dict, file: Path) -> None:
    """Refuse config values that make no valid model (heads that do not divide the width, negative sizes,
    activations past the default budget) as a usage error on the config file, naming each problem."""
    from mmspec.registry import spec_model
    from mmspec.spec.loader import load_spec

    text = yaml.safe_dump(tree, sort_keys=False, default_flow_style=None, width=120, allow_unicode=True)
    try:
        load_spec(f"{file} (as a spec)", spec_model(), budget=IMPORT_BUDGET, text=text)
    except SpecError as e:
        raise ConfigError([Diagnostic(str(file), 0, 0, "hf-config", "its values do not make a valid model: "
                                      + d.message) for d in e.diagnostics]) from None


def write_spec(tree: dict, out: str | Path) -> int:
    """Write `tree` as YAML to `out`, after checking that it loads as a valid spec (written atomically); its
    estimated parameter count."""
    from mmspec.registry import spec_model
    from mmspec.spec.loader import load_spec

    text = yaml.safe_dump(tree, sort_keys=False, default_flow_style=None, width=120, allow_unicode=True)
    target = Path(out)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".mmspec-", suffix=".yaml", dir=target.parent)
    except OSError as e:
        raise UsageError(f"cannot write {target}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            loaded = load_spec(target, spec_model(), budget=IMPORT_BUDGET, text=text)
        except SpecError as e:
            raise AssertionError(f"mmspec import hf wrote an invalid spec (a bug):\n{e.render()}") from None
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return loaded.estimate.params


def _name(dirname: str, fallback: str) -> str:
    name = re.sub(r"[^a-z0-9_]+", "_", dirname.lower()).strip("_")[:64]
    return name if re.fullmatch(r"[a-z][a-z0-9_]*", name) else re.sub(r"[^a-z0-9_]", "_", fallback)
