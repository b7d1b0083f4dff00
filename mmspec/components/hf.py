"""What the family folders' `hf.py` share: reading a Hugging Face config.json, and `@hf_family` (torch-free).

A folder's `hf.py` maps the model types that its component computes: a builder `(Config, architecture) -> the
spec tree's modalities, encoders, heads, outputs and weights:` decorated with `@hf_family`, which records it in
`HF_FAMILIES`. `mmspec import hf` (mmspec/importers/hf.py) imports every folder's `hf.py` on demand and looks a
config's model_type up there, so adding a family is one `hf.py`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mmspec.errors import ConfigError, Diagnostic, shorten

ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "quick_gelu": "quick_gelu",
               "relu": "relu", "silu": "silu", "swish": "silu", "tanh": "tanh"}  # fmt: skip
"""transformers' activation names -> ours."""


def config_error(file: str, text: str, keys: list[str], message: str) -> ConfigError:
    """A diagnostic on config.json at the key reached through `keys` (a nested key after its parent's), or 0:0
    when the text does not name it."""
    line = col = 0
    at = 0
    for key in keys:
        m = re.compile(rf'"{re.escape(key)}"\s*:').search(text, at)
        if m is None:
            line = col = 0
            break
        at = m.start()
        line, col = text.count("\n", 0, at) + 1, at - (text.rfind("\n", 0, at) + 1) + 1
    return ConfigError([Diagnostic(file, line, col, "hf-config", message)])


class Config:
    """One config.json mapping read with a family's defaults; a wrong type or an unsupported value is a
    ConfigError located at the key in the file's text."""

    def __init__(self, data: dict, defaults: dict, file: str, where: str = "", text: str = ""):
        self.data, self.defaults, self.file, self.where, self.text = data, defaults, file, where, text

    def get(self, key: str, kind: type | tuple[type, ...]) -> Any:
        value = self.data.get(key, self.defaults.get(key))
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
            kinds = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise self.error(key, f"expected {kinds}, got {shorten(repr(value))}")
        return value

    def int(self, key: str) -> int:
        return self.get(key, int)

    def float(self, key: str) -> float:
        value = float(self.get(key, (int, float)))
        if not math.isfinite(value):
            raise self.error(key, f"expected a finite number, got {value}")
        return value

    def activation(self, key: str) -> str:
        name = self.get(key, str)
        if name not in ACTIVATIONS:
            raise self.error(key, f"activation {name!r} is not supported yet; supported: {', '.join(ACTIVATIONS)}")
        return ACTIVATIONS[name]

    def require(self, key: str, expected: Any, why: str) -> None:
        """Refuse a config whose `key` differs from `expected`: mmspec does not compute that variant."""
        value = self.data.get(key, self.defaults.get(key))
        if value != expected:
            raise self.error(key, f"{value!r} is not supported yet (only {expected!r}): {why}")

    def sub(self, key: str, defaults: dict) -> Config:
        value = self.data.get(key) or {}
        if not isinstance(value, dict):
            raise self.error(key, f"expected a mapping, got {value!r}")
        return Config(value, defaults, self.file, f"{self.where}{key}.", self.text)

    def error(self, key: str, message: str) -> ConfigError:
        keys = [*filter(None, self.where.split(".")), key]
        return config_error(self.file, self.text, keys, f"{self.where}{key}: {message}")


Builder = Callable[[Config, str], dict]


@dataclass(frozen=True)
class Family:
    """A model_type: the architectures it maps (the first when config.json names none), the defaults of its
    transformers config class, its builder, and the `reference:` of the specs it writes."""

    model_type: str
    architectures: tuple[str, ...]
    defaults: dict
    build: Builder
    reference: dict


HF_FAMILIES: dict[str, Family] = {}
"""model_type -> its Family, filled by `@hf_family` when a folder's `hf.py` is imported."""


def hf_family(
    model_type: str, architectures: tuple[str, ...], defaults: dict, survey: list[str], paper: str
) -> Callable[[Builder], Builder]:
    """Register the decorated builder for `model_type`; `architectures[0]` is assumed when config.json names none."""

    def decorate(build: Builder) -> Builder:
        if model_type in HF_FAMILIES:
            raise ValueError(f"model_type {model_type!r} is mapped twice: {HF_FAMILIES[model_type].build.__module__}")
        reference = {"survey": survey, "paper": paper}
        HF_FAMILIES[model_type] = Family(model_type, architectures, defaults, build, reference)
        return build

    return decorate


def num_labels(cfg: Config) -> int:
    """A classification head's class count: the size of `id2label` when given, else `num_labels`."""
    labels = cfg.data.get("id2label")
    return len(labels) if isinstance(labels, dict) and labels else cfg.get("num_labels", int)
