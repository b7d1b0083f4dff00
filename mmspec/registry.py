"""The component registry: one decorator binds a config model, its shape rules and its builder.

A component is a `ComponentConfig` subclass with a `type: Literal["name"]` field and two methods:
`infer(inputs, ctx) -> Bundle` (torch-free shape rules, raises `CheckError`) and
`build(inputs, ctx) -> torch.nn.Module` (imports torch lazily). Registering it is one decorator:

    @register("encoders", exportable=True)
    class MyEncoder(ComponentConfig): ...

Importing `mmspec.components` populates the registry without importing torch.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args

from mmspec.spec._base import ComponentConfig
from mmspec.spec.suggest import suggestion_text

SLOTS = ("encoders", "fusion", "heads", "objectives")


@dataclass(frozen=True)
class Component:
    """A registry entry: where it may appear, its config class, and what export can do with it."""

    slot: str
    name: str
    config: type[ComponentConfig]
    exportable: bool
    training_only: bool
    notes: str

    @property
    def summary(self) -> str:
        return (self.config.__doc__ or "").strip().splitlines()[0] if self.config.__doc__ else ""


_REGISTRY: dict[str, dict[str, Component]] = {slot: {} for slot in SLOTS}
_VERSION = 0


def version() -> int:
    """Changes whenever a component is registered (so schemas built from the registry can be cached)."""
    _populate()
    return _VERSION


def register(
    slot: str, *, exportable: bool = True, training_only: bool = False, notes: str = ""
) -> Callable[[type[ComponentConfig]], type[ComponentConfig]]:
    """Register a component config under the name of its `type` literal in `slot`."""
    if slot not in SLOTS:
        raise ValueError(f"unknown slot {slot!r}; expected one of {SLOTS}")

    def decorate(config: type[ComponentConfig]) -> type[ComponentConfig]:
        (name,) = get_args(config.model_fields["type"].annotation)
        if name in _REGISTRY[slot]:
            raise ValueError(f"component {slot}/{name} is registered twice")
        config.slot = slot
        _REGISTRY[slot][name] = Component(slot, name, config, exportable, training_only, notes)
        global _VERSION
        _VERSION += 1
        return config

    return decorate


def components(slot: str) -> dict[str, Component]:
    """Every component registered in `slot`, by name."""
    _populate()
    return dict(sorted(_REGISTRY[slot].items()))


def get_component(name: str, slot: str | None = None) -> Component:
    """Look a component up by name (optionally within one slot); unknown names get a did-you-mean."""
    _populate()
    slots = [slot] if slot else list(SLOTS)
    for s in slots:
        if name in _REGISTRY[s]:
            return _REGISTRY[s][name]
    known = [n for s in slots for n in _REGISTRY[s]]
    raise KeyError(f"unknown component {name!r}{suggestion_text(name, known)}")


def list_components(pattern: str = "*") -> list[Component]:
    """All components whose name matches a shell-style pattern, sorted by slot then name."""
    _populate()
    return [c for s in SLOTS for n, c in sorted(_REGISTRY[s].items()) if fnmatch.fnmatch(n, pattern)]


def _populate() -> None:
    import mmspec.components  # noqa: F401  (registers every family; torch-free)
