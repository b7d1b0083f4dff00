"""A second pass through another node's network: the same module, the same parameters, other inputs. Training-only:
extra training passes such as GAN-INT's generator on interpolated captions (Reed et al. 2016) and the
discriminator's score of those images, never an export."""

from __future__ import annotations

from typing import Any, Literal

from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, Name, Ref
from mmspec.spec.model import MODEL_SLOTS, select
from mmspec.spec.suggest import suggestion_text
from mmspec.spec.tensors import Bundle, CheckError

_GAN = {"noise": {"type": "vector", "dim": 4}, "caption": {"type": "vector", "dim": 3},
        "data": {"type": "vector", "dim": 3}}
_GEN = {"type": "mlp", "input": "noised.fused", "hidden": [8], "dim": 3}
RERUN_EXAMPLES = (
    Example(  # a network on another input: a generator on interpolated captions
        _GAN, {"node": "gen", "inputs": {"input": "mix.fused"}},
        {"fusion": {"noised": {"type": "concat", "inputs": ["noise", "caption"]},
                    "mix": {"type": "concat", "inputs": ["noise", "blend.mixed"]},
                    "blend": {"type": "interpolate", "input": "caption"}},
         "heads": {"gen": _GEN}},
        name="generator"),
    Example(  # a training-only network with several ports, one of them replaced: a discriminator's second score
        _GAN, {"node": "critic", "inputs": {"real": "data", "fake": "data", "condition": "caption"}},
        {"fusion": {"noised": {"type": "concat", "inputs": ["noise", "caption"]}},
         "heads": {"gen": _GEN, "critic": {"type": "discriminator", "hidden": [8],
                                           "inputs": {"real": "data", "fake": "gen.embedding",
                                                      "condition": "caption"}}}},
        name="discriminator"),
)


@register("heads", training_only=True, examples=RERUN_EXAMPLES)
class RerunConfig(ComponentConfig):
    """Node `node`'s network run once more on `inputs` (each of its ports -> what this pass reads there), with its
    parameters: no parameters of its own, and the gradients of objectives on this pass reach `node`. Emits the
    bundle `node` emits for these inputs. Each port must read what `node` reads there in fields, dtypes and fixed
    sizes (named axes may differ; a single field may have another name). Training-only (GAN-INT: the generator on
    interpolated captions, and the discriminator's score of those images)."""

    type: Literal["rerun"]
    node: Name
    """The encoder, fusion or head whose network runs again."""
    inputs: dict[str, Ref]
    """Every port of `node` (`input`, `condition`; a discriminator's `real`, `fake`, `condition`; "0", "1", ... for
    a list of inputs) -> what this pass reads there."""
    training_only: bool = True
    """Always true: an extra pass for objectives, never exported."""

    def planned_after(self) -> tuple[str, ...]:
        return (self.node,)

    def _target(self, ctx) -> ComponentConfig:
        """`node`'s config, after the checks that do not depend on the inputs."""
        if not self.training_only:
            raise CheckError("training_only", "a rerun is an extra training pass; it is always training-only "
                                              "(remove `training_only: false`)")
        if not self.trainable:
            raise CheckError("trainable", f"a rerun has no parameters of its own; freeze {self.node!r} instead")
        nodes = {n: getattr(ctx.spec, s)[n] for s in MODEL_SLOTS for n in getattr(ctx.spec, s)}
        for kind, names in (("a modality", ctx.spec.modalities), ("an objective", ctx.spec.objectives)):
            if self.node in names:
                raise CheckError("node", f"{self.node!r} is {kind}; a rerun runs an encoder, fusion or head again")
        if self.node not in nodes:
            raise CheckError("node", f"{self.node!r} is not an encoder, fusion or head"
                                     f"{suggestion_text(self.node, nodes)}")
        if self.node not in ctx.bundles:
            raise CheckError("node", f"{self.node!r} did not plan; fix it first")
        target = nodes[self.node]
        ports = target.references()
        roots = {r.split(".")[0] for r in ports.values()} & set(ctx.spec.modalities)
        if self.node in ctx.spec.encoders and not getattr(target, "reads_items", False) and any(
                ctx.spec.modalities[root].items is not None for root in roots):
            raise CheckError("node", f"{self.node!r} encodes items folded into the batch (a modality with `count`), "
                                     f"which a rerun does not fold")
        for port in self.inputs:
            if port not in ports:
                raise CheckError(("inputs", port), f"{self.node!r} has no port {port!r}; its ports are "
                                                   f"{sorted(ports)}{suggestion_text(port, ports)}")
        missing = [p for p in ports if p not in self.inputs]
        if missing:
            listed = ", ".join(f"{p} (it reads {ports[p]!r})" for p in missing)
            raise CheckError("inputs", f"say what this pass reads at every port of {self.node!r}; missing {listed}")
        return target

    def _renamed(self, inputs: dict[str, Bundle], target: ComponentConfig, ctx) -> tuple[dict, dict]:
        """(the inputs under the field names `node` reads, port -> {this pass's field: node's field})."""
        renamed: dict[str, Bundle] = {}
        fields: dict[str, dict[str, str]] = {}
        for port, ref in target.references().items():
            root, _, fld = ref.partition(".")
            theirs, ours = select(ctx.bundles[root], fld or None), inputs[port]
            where = ("inputs", port)
            if len(ours) != len(theirs) or (len(ours) > 1 and set(ours) != set(theirs)):
                raise CheckError(where, f"{self.inputs[port]!r} emits {sorted(ours)} but {self.node!r} reads "
                                        f"{sorted(theirs)} there ({ref!r})")
            names = dict(zip(ours, theirs, strict=True)) if len(ours) == 1 else {k: k for k in ours}
            for mine, their in names.items():
                a, b = ours[mine], theirs[their]
                same = a.dtype == b.dtype and a.rank == b.rank and all(
                    not isinstance(d, int) or d == e for d, e in zip(b.shape, a.shape, strict=True))
                if not same:
                    raise CheckError(where, f"{self.inputs[port]!r} is {a.dtype} {list(a.shape)} but {self.node!r} "
                                            f"was built for {b.dtype} {list(b.shape)} ({ref!r}); fixed sizes and "
                                            f"dtypes must agree")
            renamed[port] = {names[k]: t for k, t in ours.items()}
            fields[port] = names
        return renamed, fields

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        target = self._target(ctx)
        renamed, _ = self._renamed(inputs, target, ctx)
        try:
            return target.infer(renamed, ctx)
        except CheckError as e:
            port = _port(e.field, self.inputs)
            raise CheckError(("inputs", port) if port else "node", f"{self.node!r} refuses this pass's inputs: "
                                                                 f"{e}") from None

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        return 0

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.heads.rerun.module import Rerun

        _, fields = self._renamed(inputs, self._target(ctx), ctx)
        return Rerun(ctx.modules[self.node], fields)


def _port(field: tuple[Any, ...], ports: dict[str, str]) -> str | None:
    """The port a target's diagnostic path designates (`condition`, `inputs.fake`, `inputs.0`), if any."""
    if field and str(field[0]) in ports:
        return str(field[0])
    if len(field) > 1 and field[0] == "inputs" and str(field[1]) in ports:
        return str(field[1])
    return None
