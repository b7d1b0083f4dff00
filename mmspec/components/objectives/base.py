"""What every objective shares (torch-free): weight, alternating-update groups, named reference fields,
the data targets a batch must carry, and helpers that find the modality an objective corrupts.

An objective is a training-only node. Its config declares
- `ref_fields`: the fields holding references (`input`, `target`, `student`, ...); each is one port;
- `check(inputs, ctx) -> Bundle`: shape rules; a loss emits `{"loss": []}`, a teacher emits tensors;
- `targets(inputs, spec) -> {name: Target}`: tensors the batch must supply (labels, survival times), which
  `mmspec fit` draws at random for synthetic batches or reads from a batch file as `<objective>.<name>`.
Its `build` returns an `mmspec.components.objectives.runtime.ObjectiveModule` (the loss, masking, teacher update).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from mmspec.spec.base import ComponentConfig, Name, PositiveFloat
from mmspec.spec.model import SLOTS
from mmspec.spec.suggest import suggestion_text
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

LOSS: Bundle = {"loss": TensorInfo(())}
"""The bundle of every loss objective: one scalar."""


@dataclass(frozen=True)
class Target:
    """A tensor the training batch supplies for one objective (not computed from the inputs).

    kind: `classes` int64 in [0, high); `binary` int64 0/1; `normal` float N(0, 1); `positive` float in
    (0.1, 10); `simplex` float probabilities that sum to 1 over the last axis.
    """

    info: TensorInfo
    kind: Literal["classes", "binary", "normal", "positive", "simplex"]
    high: int | None = None


class Objective(ComponentConfig):
    """Base of every objective: a weighted term of the training loss (or a training-time part such as a teacher)."""

    weight: PositiveFloat = 1.0
    """Factor of this loss in the weighted sum that is minimised."""
    updates: list[Name] | None = None
    """Nodes whose parameters this objective's gradient updates (GAN: the discriminator's loss updates the
    discriminator). Objectives with different `updates` take turns, one optimizer step each, in file order;
    null: every trainable parameter."""
    ref_fields: ClassVar[tuple[str, ...]] = ("input",)
    """Fields that hold references; each becomes one input port of the objective."""

    def references(self) -> dict[str, str]:
        return {f: getattr(self, f) for f in self.ref_fields if getattr(self, f) is not None}

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        nodes = [n for s in SLOTS for n in getattr(ctx.spec, s)]
        for i, name in enumerate(self.updates or ()):
            if name not in nodes:
                raise CheckError(
                    ("updates", i),
                    f"updates names {name!r}, which is not a component{suggestion_text(name, nodes)}",
                    "unknown-reference",
                )
        return self.check(inputs, ctx)

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        return LOSS

    def targets(self, inputs: dict[str, Bundle], spec: Any) -> dict[str, Target]:
        """Data targets the batch must carry for this objective (none by default)."""
        return {}


def tensor(inputs: dict[str, Bundle], port: str, ref: str, fld: str | None = None, field: str | None = None):
    """The single tensor behind `port` (or its field `fld` when the reference names a whole bundle)."""
    bundle = inputs[port]
    if fld is not None and fld in bundle:
        return bundle[fld]
    if len(bundle) == 1:
        return next(iter(bundle.values()))
    want = f"'{ref}.{fld}'" if fld else f"one of {sorted(bundle)}"
    raise CheckError(field or port, f"{ref!r} emits {sorted(bundle)}; reference {want}")


def field_of(inputs: dict[str, Bundle], port: str, fld: str) -> str:
    """The key of `port`'s bundle a module should read: `fld` when present, else the only field."""
    bundle = inputs[port]
    return fld if fld in bundle else next(iter(bundle))


def require_rank(info: TensorInfo, rank: int | tuple[int, ...], field: str, what: str, ref: str) -> TensorInfo:
    ranks = (rank,) if isinstance(rank, int) else rank
    if info.rank not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise CheckError(field, f"needs {what} (rank {want}) from {ref!r}, which has shape {list(info.shape)}")
    return info


def same_shape(a: TensorInfo, b: TensorInfo, field: str, a_ref: str, b_ref: str) -> None:
    if a.shape != b.shape:
        raise CheckError(
            field, f"{b_ref!r} has shape {list(b.shape)} but {a_ref!r} has {list(a.shape)}; they must match"
        )


def upstream_modalities(spec: Any, ref: str) -> list[str]:
    """Modalities that the node of `ref` reads, directly or through other nodes, sorted."""
    found: set[str] = set()
    stack, seen = [ref.split(".")[0]], set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in spec.modalities:
            found.add(name)
            continue
        for section in SLOTS:
            cfg = getattr(spec, section).get(name)
            if cfg is not None:
                stack.extend(r.split(".")[0] for r in cfg.references().values())
    return sorted(found)


def pick_modality(spec: Any, given: str | None, ref: str, kinds: tuple[str, ...], field: str, verb: str) -> str:
    """The modality an objective `verb`s: `given`, checked, or else the one modality of `kinds` under `ref`."""
    kinds_text = " or ".join(kinds)
    if given is not None:
        modality = spec.modalities.get(given)
        if modality is None or modality.type not in kinds:
            names = [n for n, m in spec.modalities.items() if m.type in kinds]
            raise CheckError(
                field, f"{field} {given!r} must name a {kinds_text} modality{suggestion_text(given, names)}"
            )
        return given
    found = [m for m in upstream_modalities(spec, ref) if spec.modalities[m].type in kinds]
    if len(found) != 1:
        which = f"reads {found}" if found else f"reads no {kinds_text} modality"
        raise CheckError(field, f"cannot tell which modality to {verb}: {ref!r} {which}; set `{field}:`")
    return found[0]


def input_names(spec: Any, modality: str) -> dict[str, str]:
    """Bundle field -> graph input name of a modality (`ids` -> `text`, `mask` -> `text_mask`)."""
    return {gi.field: gi.name for gi in spec.modalities[modality].graph_inputs(modality)}
