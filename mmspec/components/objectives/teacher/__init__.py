"""EMA teacher: a training-time part that other objectives read (BYOL target network, data2vec teacher)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.objectives.base import Objective, upstream_modalities
from mmspec.registry import Example, register
from mmspec.spec.base import Name, PositiveInt, StrictModel
from mmspec.spec.model import MODEL_SLOTS
from mmspec.spec.suggest import suggestion_text
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class Momentum(StrictModel):
    """EMA momentum tau per update: `constant` start; `linear` start -> end over `steps`, then end (data2vec);
    `cosine` end - (end - start)(cos(pi k / steps) + 1) / 2 (BYOL)."""

    start: Unit = 0.996
    end: Unit = 1.0
    schedule: Literal["constant", "linear", "cosine"] = "cosine"
    steps: PositiveInt | None = None
    """Updates over which tau moves; default: the steps of the training run."""


def _config(spec, name: str):
    return next((getattr(spec, s)[name] for s in MODEL_SLOTS if name in getattr(spec, s)), None)


EMA_TEACHER_EXAMPLES = (
    Example(  # BYOL's target network: a momentum copy of encoder and projector, BatchNorm in train mode
        {"x": {"type": "vector", "dim": 6}},
        {"student": "projector", "mode": "train", "momentum": {"start": 0.9, "schedule": "cosine"}},
        {
            "heads": {
                "online": {"type": "mlp", "input": "x", "hidden": [8], "dim": 8},
                "projector": {"type": "mlp", "input": "online.embedding", "hidden": [8], "norm": "batch", "dim": 4,
                              "training_only": True},
                "predictor": {"type": "mlp", "input": "projector.embedding", "dim": 4, "training_only": True},
            },
            "objectives": {"byol": {"type": "byol_normalized_mse", "input": "predictor", "target": "probe.embedding",
                                    "augment": {"modality": "x", "noise": 0.1}}},
        },
        outputs=["online"],
        name="byol",
    ),
    Example(  # data2vec: only the transformer blocks follow the EMA, their outputs are emitted as `layers`
        {"text": {"type": "tokens", "vocab_size": 40, "length": "seq", "max_length": 12, "mask": True}},
        {"student": "enc", "scope": "layers", "emit": "layers",
         "momentum": {"start": 0.99, "end": 0.999, "schedule": "linear", "steps": 10}},
        {
            "encoders": {"enc": {"type": "transformer", "input": "text", "embed": {"type": "tokens", "positions": 12},
                                 "width": 8, "layers": 2, "heads": 2, "ffn": 16}},
            "heads": {"regress": {"type": "mlp", "input": "enc.sequence", "dim": 8, "training_only": True}},
            "objectives": {"d2v": {"type": "data2vec_regression", "input": "regress", "target": "probe.layers",
                                   "top_k": 2, "mask": {"mask_token": 3}}},
        },
        outputs=["enc.sequence"],
        name="data2vec",
    ),
)


@register("objectives", training_only=True, examples=EMA_TEACHER_EXAMPLES)
class EMATeacher(Objective):
    """A momentum copy of `student` and every component on its path from the inputs, run without gradients on
    the unaltered batch; emits the student's outputs (plus `layers` [batch, L, S, D], the outputs of its
    transformer blocks, with `emit: layers`). After each step teacher <- tau teacher + (1 - tau) student."""

    type: Literal["ema_teacher"]
    student: Name
    """The student node this teacher copies (with every component on its path from the inputs)."""
    momentum: Momentum = Momentum()
    """The EMA rate tau: its start, its end and how it moves between them over training."""
    scope: Literal["all", "layers"] = "all"
    """`layers`: only the student's transformer blocks follow the EMA; the rest is the student's (data2vec)."""
    emit: Literal["outputs", "layers"] = "outputs"
    """`outputs`: the student's outputs; `layers`: also each transformer block's output (for data2vec)."""
    mode: Literal["eval", "train"] = "eval"
    """Mode the copy runs in: `train` keeps batch statistics in BatchNorm (BYOL), `eval` disables dropout."""
    ref_fields = ("student",)

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        if {"weight", "updates"} & self.model_fields_set:
            raise CheckError(
                "weight" if "weight" in self.model_fields_set else "updates",
                "ema_teacher has no loss and no optimizer; remove `weight` and `updates`",
            )
        cfg = _config(ctx.spec, self.student)
        if cfg is None:
            names = [n for s in MODEL_SLOTS for n in getattr(ctx.spec, s)]
            raise CheckError(
                "student",
                f"student {self.student!r} must be an encoder, fusion or head{suggestion_text(self.student, names)}",
            )
        out = dict(inputs["student"])
        needs_layers = self.emit == "layers" or self.scope == "layers"
        if needs_layers and (getattr(cfg, "type", "") != "transformer" or cfg.layers < 1):
            raise CheckError(
                "emit" if self.emit == "layers" else "scope",
                f"`{'emit' if self.emit == 'layers' else 'scope'}: layers` needs a transformer encoder "
                f"with layers >= 1 as student; {self.student!r} is a {getattr(cfg, 'type', '?')}",
            )
        if self.emit == "layers":
            seq = out["sequence"]
            out["layers"] = TensorInfo((seq.shape[0], cfg.layers, *seq.shape[1:]), seq.dtype)
        return out

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.teacher.module import EMATeacher as Module

        needed = {self.student}
        for name in reversed(list(ctx.modules)):  # built in evaluation order
            if name in needed and (cfg := _config(ctx.spec, name)) is not None:
                needed.update(r.split(".")[0] for r in cfg.references().values())
        nodes = []
        for name, module in ctx.modules.items():
            cfg = _config(ctx.spec, name)
            if name in needed and cfg is not None:
                ports = {p: (r.split(".")[0], r.partition(".")[2] or None) for p, r in cfg.references().items()}
                nodes.append((name, module, ports))
        graph_inputs = [
            (gi.name, m, gi.field)
            for m in upstream_modalities(ctx.spec, self.student)
            for gi in ctx.spec.modalities[m].graph_inputs(m)
        ]
        mo = self.momentum
        return Module(
            nodes,
            graph_inputs,
            mo.start,
            mo.end,
            mo.schedule,
            mo.steps,
            self.scope,
            self.emit == "layers",
            self.mode == "train",
        )
