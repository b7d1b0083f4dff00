"""The component registry: one decorator binds a config model, its shape rules and its builder.

A component is a `ComponentConfig` subclass with a `type: Literal["name"]` field and two methods:
`infer(inputs, ctx) -> Bundle` (torch-free shape rules, raises `CheckError`) and
`build(inputs, ctx) -> torch.nn.Module` (imports torch lazily); optionally `estimate_params(inputs, ctx)` (its
parameter count by formula) and `weight_layouts` (reference implementations' tensor names). Registering it is one
decorator, with at least one example:

    @register("encoders", examples=[Example(modalities={"x": {...}}, config={"input": "x", ...})])
    class MyEncoder(ComponentConfig): ...

The examples drive the tests of every registered component (`mmspec.testing.check_example`) and the fuzz
generator. Importing `mmspec.components` populates the registry without importing torch.

Plugins: an installed distribution that declares an entry point in the group `mmspec.components` (its value a
module, e.g. `my_components = "my_package.components"`) has that module imported when the registry is first
read, after the built-in families; its `@register` decorators add its components, which remember the
distribution they came from (`Component.origin`). A plugin that fails to import is skipped and recorded
(`plugin_errors()`); the others load as usual.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import get_args

from mmspec.spec.base import ComponentConfig
from mmspec.spec.model import SLOTS, make_spec_model
from mmspec.spec.suggest import suggestion_text

PROBE = "probe"
"""The node name an example's component gets in the spec its example becomes."""


@dataclass(frozen=True)
class Example:
    """A small complete use of a component: the modalities it reads, the other nodes it needs, its own config.

    `config` is the component's entry without `type` (it becomes node `probe` in its slot); `nodes` holds the
    other entries by slot (`{"encoders": {"enc": {...}}}`); `outputs` the exported outputs (default: `probe`
    when it is exportable and not a head, else every head). Keep sizes tiny: every example is built, captured,
    exported and verified in the default test suite.
    """

    modalities: dict[str, dict]
    config: dict
    nodes: dict[str, dict[str, dict]] = field(default_factory=dict)
    outputs: list[str] | None = None
    name: str = "default"

    def spec(self, component: Component) -> dict:
        """The example as a spec tree (what a YAML file would hold)."""
        tree: dict = {"mmspec": 1, "name": f"{component.name}_{self.name}", "modalities": dict(self.modalities)}
        for slot in SLOTS:
            nodes = dict(self.nodes.get(slot, {}))
            if slot == component.slot:
                nodes[PROBE] = {"type": component.name, **self.config}
            if nodes:
                tree[slot] = nodes
        if self.outputs is not None:
            tree["outputs"] = list(self.outputs)
        elif component.exportable and component.slot != "heads":
            tree["outputs"] = [PROBE]
        return tree


@dataclass(frozen=True)
class Component:
    """A registry entry: where it may appear, its config class, what export can do with it, and its examples."""

    slot: str
    name: str
    config: type[ComponentConfig]
    exportable: bool
    """Its module can be part of an exported graph (false for objectives and training-only parts)."""
    training_only: bool
    notes: str
    examples: tuple[Example, ...] = ()
    origin: str = "mmspec"
    """Where it came from: "mmspec", or a plugin's "DISTRIBUTION VERSION (entry point NAME)"."""

    @property
    def summary(self) -> str:
        return (self.config.__doc__ or "").strip().splitlines()[0] if self.config.__doc__ else ""


_REGISTRY: dict[str, dict[str, Component]] = {slot: {} for slot in SLOTS}
_VERSION = 0
PLUGIN_GROUP = "mmspec.components"


@dataclass(frozen=True)
class PluginError:
    """A plugin whose entry point could not be loaded: its name, distribution and the error in one line."""

    entry_point: str
    distribution: str
    error: str


_PLUGINS: dict = {"loaded": False, "origin": "mmspec", "errors": []}


def version() -> int:
    """Changes whenever a component is registered or unregistered (so schemas built from the registry can be
    cached)."""
    _populate()
    return _VERSION


def register(
    slot: str,
    *,
    examples: Sequence[Example] = (),
    exportable: bool | None = None,
    training_only: bool = False,
    notes: str = "",
) -> Callable[[type[ComponentConfig]], type[ComponentConfig]]:
    """Register a component config under the name of its `type` literal in `slot`.

    `exportable` defaults to true except for objectives and training-only components, which never are;
    `examples` are required in practice: the registry tests fail for a component without one."""
    if slot not in SLOTS:
        raise ValueError(f"unknown slot {slot!r}; expected one of {SLOTS}")

    def decorate(config: type[ComponentConfig]) -> type[ComponentConfig]:
        (name,) = get_args(config.model_fields["type"].annotation)
        if name in _REGISTRY[slot]:
            raise ValueError(f"component {slot}/{name} is registered twice")
        config.slot = slot
        can_export = slot != "objectives" and not training_only
        if exportable and not can_export:
            raise ValueError(f"component {slot}/{name}: objectives and training-only components are never exportable")
        entry = Component(slot, name, config, can_export if exportable is None else exportable, training_only, notes,
                          tuple(examples), _PLUGINS["origin"])
        _REGISTRY[slot][name] = entry
        global _VERSION
        _VERSION += 1
        return config

    return decorate


def unregister(slot: str, name: str) -> None:
    """Remove a registered component (tests that register a throw-away component clean up with it)."""
    del _REGISTRY[slot][name]
    global _VERSION
    _VERSION += 1


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


def spec_model():
    """The root pydantic spec model for the components registered now (user components included); cached per
    registry version."""
    return _spec_model(version())


@cache
def _spec_model(registry_version: int):
    return make_spec_model({s: {n: c.config for n, c in components(s).items()} for s in SLOTS})


def plugin_errors() -> list[PluginError]:
    """The plugins of group `mmspec.components` that failed to load (loading them first if nothing has)."""
    _populate()
    return list(_PLUGINS["errors"])


def _populate() -> None:
    import mmspec.components  # noqa: F401  (registers every family; torch-free)

    if not _PLUGINS["loaded"]:
        _PLUGINS["loaded"] = True
        _load_plugins()


def _load_plugins() -> None:
    """Import every entry point of `PLUGIN_GROUP`; one that raises is recorded and skipped, and what it had
    registered before failing is taken out again, so a broken plugin never leaves half of itself behind."""
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an unknown distribution"
        before = {slot: set(names) for slot, names in _REGISTRY.items()}
        _PLUGINS["origin"] = f"{dist} (entry point {ep.name})"
        try:
            ep.load()
        except Exception as e:  # noqa: BLE001  (any failure of third-party code is reported, not raised)
            for slot, names in _REGISTRY.items():
                for name in set(names) - before[slot]:
                    unregister(slot, name)
            _PLUGINS["errors"].append(PluginError(ep.name, dist, f"{type(e).__name__}: {e}".splitlines()[0]))
        finally:
            _PLUGINS["origin"] = "mmspec"
