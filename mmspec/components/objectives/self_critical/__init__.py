"""Self-critical sequence training with a CIDEr-D reward (Rennie et al. 2017; M² Transformer's second stage)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from mmspec.components.examples import REGIONS, TEXT
from mmspec.components.objectives.base import (
    LOSS,
    Objective,
    Target,
    field_of,
    input_names,
    pick_modality,
    require_rank,
    tensor,
    upstream_modalities,
)
from mmspec.registry import Example, register
from mmspec.spec.base import Name, PositiveInt, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_CAPTION = {**TEXT, "mask": False}
_GPT = {"type": "transformer", "input": "text", "embed": {"type": "tokens", "positions": 12},
        "width": 8, "layers": 1, "heads": 2, "ffn": 16, "causal": True}
_M2 = {
    "encoders": {
        "enc": {"type": "memory_encoder", "input": "regions", "width": 8, "layers": 1, "heads": 2, "ffn": 16,
                "memory": 2},
        "dec": {"type": "meshed_decoder", "input": "text", "encoder": "enc", "width": 8, "layers": 1, "heads": 2,
                "ffn": 16, "positions": 12},
    }
}
SELF_CRITICAL_EXAMPLES = (
    Example(  # M²: 5 beams, their mean reward as baseline, the row's own caption as the reference
        {"regions": REGIONS, "text": _CAPTION},
        {"input": "dec.logits", "tokens": "text", "samples": 3, "max_length": 6},
        _M2,
        outputs=["dec"],
        name="beam",
    ),
    Example(  # Rennie et al.: sampled captions against the greedy caption, several references per row
        {"text": TEXT},
        {"input": "lm", "tokens": "text", "samples": 2, "sampling": "multinomial", "baseline": "greedy",
         "num_references": 3, "pad": 0},
        {"encoders": {"gpt": _GPT},
         "heads": {"lm": {"type": "token_classifier", "input": "gpt.sequence", "tie_to": "gpt"}}},
        name="greedy",
    ),
)

TokenId = Annotated[int, Field(ge=0)]


@register("objectives", training_only=True, examples=SELF_CRITICAL_EXAMPLES)
class SelfCritical(Objective):
    """SCST: for each row, `samples` captions are decoded from the model (beam search, or sampled), each is
    rewarded with its CIDEr-D against the row's references, and the loss is
    -1/k sum_i (r_i - b) log p(w_i), with log p(w_i) the sum of the caption's token log-probabilities up to and
    including its `eos`, recomputed with gradients by a teacher-forced pass; b is the mean reward of the row's
    samples (`mean`, M²) or the reward of its greedy caption (`greedy`, Rennie et al.). Captions start with `bos`.
    The model must be causal over `tokens` (logits at t see tokens up to t), as `autoregressive_lm` assumes;
    decoding re-runs the prefix each step (no KV cache). References: batch target `references`
    [batch, N, max_length - 1] when `num_references: N` (a reference ends at its first `eos` or `pad`; empty ones are
    absent), else the row's own caption after its `bos` (up to `eos`, `pad` or its mask)."""

    type: Literal["self_critical"]
    input: Ref
    """Per-token logits [batch, S, V] of the causal model that reads `tokens`."""
    tokens: Name
    """The tokens modality the model reads: the captions decoded into it start with `bos`."""
    samples: PositiveInt = 5
    """Captions decoded per row (M²: 5 beams)."""
    sampling: Literal["beam", "multinomial"] = "beam"
    """`beam`: the `samples` best beams (finished beams stay in the beam, as M²'s beam search); `multinomial`:
    independent draws from the softmax."""
    baseline: Literal["mean", "greedy"] = "mean"
    """`mean`: the mean reward of the row's samples (M²); `greedy`: the reward of the row's greedy caption."""
    max_length: Annotated[int, Field(ge=2)] | None = None
    """Decoded length with `bos` (M²: 20); default the modality's maximum length."""
    reward: Literal["cider_d"] = "cider_d"
    """CIDEr-D (coco-caption's CIDEr), document frequencies over this batch's references unless a corpus is
    installed with `set_corpus` (M² uses its training captions)."""
    num_references: PositiveInt | None = None
    """N: batch target `references` [batch, N, max_length - 1] holds each row's reference captions (without `bos`);
    null: the row's own caption is its one reference."""
    bos: TokenId = 0
    """Id that starts every caption."""
    eos: TokenId = 1
    """Id that ends a caption (included in its log-probability)."""
    pad: TokenId | None = None
    """Id that also ends a reference caption (padding); null: only `eos` does."""
    ref_fields = ("input", "tokens")

    def _length(self, spec: Any) -> tuple[int, bool]:
        """(decoded length, whether the modality's length is fixed)."""
        modality = spec.modalities[self.tokens]
        fixed = isinstance(modality.length, int)
        most = modality.length if fixed else modality.max_length
        return (self.max_length if self.max_length is not None else most), fixed

    def check(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        logits = require_rank(tensor(inputs, "input", self.input, "logits"), 3, "input", "per-token logits", self.input)
        pick_modality(ctx.spec, self.tokens, self.input, ("tokens",), "tokens", "decode")
        modality = ctx.spec.modalities[self.tokens]
        if self.tokens not in upstream_modalities(ctx.spec, self.input):
            raise CheckError("tokens", f"{self.input!r} does not read {self.tokens!r}: the decoded captions must "
                                       "feed the logits")
        if logits.shape[:2] != inputs["tokens"]["ids"].shape:
            raise CheckError("input", f"logits {list(logits.shape)} of {self.input!r} do not cover the tokens "
                                      f"{list(inputs['tokens']['ids'].shape)} of {self.tokens!r}")
        if modality.segments:
            raise CheckError("tokens", f"{self.tokens!r} has segments, which decoded captions do not have")
        classes = logits.shape[2]
        if not isinstance(classes, int) or classes > modality.vocab_size:
            raise CheckError("input", f"{self.input!r} scores {classes} classes, more than the vocab_size "
                                      f"{modality.vocab_size} of {self.tokens!r} that the decoded ids feed")
        for fld in ("bos", "eos", "pad"):
            value = getattr(self, fld)
            if value is not None and value >= classes:
                raise CheckError(fld, f"{fld} {value} is not an id among the {classes} classes of {self.input!r}")
        length, fixed = self._length(ctx.spec)
        most = modality.length if fixed else modality.max_length
        if length > most or (fixed and length != most):
            need = f"equal {most}, its fixed length" if fixed else f"be at most {most}, its max_length"
            raise CheckError("max_length" if self.max_length is not None else "tokens",
                             f"the decoded length {length} must {need} ({self.tokens!r})")
        if self.sampling == "beam" and self.samples > classes:
            raise CheckError("samples", f"{self.samples} beams need at least as many classes; {self.input!r} "
                                        f"scores {classes}")
        if self.baseline == "mean" and self.samples < 2:
            raise CheckError("samples", "baseline: mean needs samples >= 2 (one sample is its own baseline, so "
                                        "the loss would be 0); use baseline: greedy")
        return LOSS

    def targets(self, inputs: dict[str, Bundle], spec: Any) -> dict[str, Target]:
        if self.num_references is None:
            return {}
        batch = inputs["tokens"]["ids"].shape[0]
        info = TensorInfo((batch, self.num_references, self._length(spec)[0] - 1), "int64")
        return {"references": Target(info, "classes", spec.modalities[self.tokens].vocab_size)}

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.objectives.self_critical.loss import SelfCritical as Module

        names = input_names(ctx.spec, self.tokens)
        length, fixed = self._length(ctx.spec)
        return Module(self.input.split(".")[0], field_of(inputs, "input", "logits"), names["ids"], names.get("mask"),
                      self.samples, self.sampling, self.baseline, length, fixed, self.bos, self.eos, self.pad,
                      self.num_references is not None)
