"""Config pieces shared by several components, and their shape rules (torch-free)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.spec.base import PositiveFloat, PositiveInt, Probability, StrictModel
from mmspec.spec.tensors import Bundle, CheckError, Dim, TensorInfo, dim_axes, dim_value

Activation = Literal["gelu", "gelu_tanh", "quick_gelu", "relu", "sq_relu", "tanh", "silu", "identity"]


class PoolConfig(StrictModel):
    """Sequence -> vector: pick the first token (`cls`), the highest-id token (`eos`, CLIP) or the masked mean,
    then optionally LayerNorm, a dense layer to `dense` units, and an activation."""

    type: Literal["cls", "eos", "mean"]
    eos_id: Annotated[int, Field(ge=0)] | None = None
    """`eos` only: pool at the first occurrence of this token id (position 0 when absent), as transformers' CLIP
    does when its config's eos_token_id is not 2. null: the highest id (original CLIP)."""
    norm: bool = False
    dense: PositiveInt | None = None
    activation: Activation = "identity"
    skip: Annotated[int, Field(ge=0)] = 0
    """`mean` only: leave this many leading tokens (the class token: 1, BEiT / data2vec vision) out of the mean;
    the input then has no padding mask."""


class StackConfig(StrictModel):
    """A stack of transformer layers (self-attention + feed-forward)."""

    width: PositiveInt
    """Width of the tokens and of every layer (the model dimension)."""
    layers: Annotated[int, Field(ge=0)] = 12
    """Transformer layers in the stack (0: the embedding alone)."""
    heads: PositiveInt = 12
    ffn: PositiveInt = 3072
    """Hidden width of each layer's feed-forward block."""
    activation: Activation = "gelu"
    """Activation of the feed-forward blocks."""
    norm: Literal["post", "pre"] = "post"
    """post = LN(x + f(x)) (BERT); pre = x + f(LN(x)) (ViT, CLIP)."""
    eps: PositiveFloat = 1e-12
    dropout: Probability = 0.1
    attention_dropout: Probability = 0.1

    def check_heads(self, prefix: tuple[str, ...] = ()) -> None:
        if self.width % self.heads:
            raise CheckError(
                (*prefix, "heads"),
                f"width {self.width} is not divisible by heads {self.heads}; choose heads that divide width "
                f"(e.g. {_divisor_near(self.width, self.heads)})",
            )


class FreezableStack(StackConfig):
    """A layer stack that a component owns and that can be frozen on its own (a pretrained stream)."""

    trainable: bool = True
    """false: the stack's layers get no gradients and no optimizer state and run in eval mode while training;
    the component's other parts still train."""


def _divisor_near(n: int, k: int, window: int = 4096) -> int:
    """The divisor of `n` closest to `k` (the smaller on a tie), searched within `window` of `k` so that a
    huge width stays instant; 1 when none is that close."""
    for dist in range(window + 1):
        for d in (k - dist, k + dist):
            if 1 <= d <= n and n % d == 0:
                return d
    return 1


def require(info: TensorInfo | None, port: str, rank: int, what: str) -> TensorInfo:
    """The input tensor `port`, which must exist and have `rank` dims; else a CheckError naming both."""
    if info is None:
        raise CheckError("input", f"needs a {what} input ({port!r}), but the referenced node does not provide it")
    if info.rank != rank:
        raise CheckError("input", f"needs a {what} (rank {rank}) as {port!r}, got shape {list(info.shape)}")
    return info


def layer_shapes(config, inputs: dict[str, Bundle], ctx) -> list[tuple]:
    """`internal_shapes` of a transformer stack (a config with `heads`, `ffn` and an optional `cross`): the largest
    intermediates of one layer, attention scores [B, heads, T, T], the feed-forward hidden layer [B, T, ffn] and,
    with cross-attention, its scores [B, heads, T, S]."""
    batch, length, _ = config.infer(inputs, ctx)["sequence"].shape
    shapes = [(batch, config.heads, length, length), (batch, length, config.ffn)]
    if config.cross:
        _, context = sequence_of(inputs["cross"], config.cross.input, "cross")
        shapes.append((batch, config.heads, length, context.shape[1]))
    return shapes


def require_float(info: TensorInfo, ref: str, field: str | tuple = "input") -> TensorInfo:
    """`info`, which a learned layer consumes, must hold features (float), not ids or a mask; else a CheckError."""
    if not info.dtype.startswith(("float", "bfloat")):
        raise CheckError(field, f"{ref!r} holds {info.dtype} values (ids or a mask); a learned layer needs float "
                                f"features: embed the ids first (e.g. a transformer encoder)")
    return info


class PresentPorts:
    """Ports of a config with `inputs: list[Ref]` and, per input, an optional `present` flag reference: input i
    is port "i", its flag port "present<i>"; diagnostics are located at `inputs[i]` / `present[i]`."""

    def references(self) -> dict[str, str]:
        refs = {str(i): ref for i, ref in enumerate(self.inputs)}
        return refs | {f"present{i}": ref for i, ref in enumerate(self.present) if ref is not None}

    def port_path(self, port: str) -> tuple[str | int, ...]:
        """Where a port's reference sits in the config (for located diagnostics)."""
        if port.startswith("present"):
            return ("present", int(port.removeprefix("present")))
        return ("inputs", int(port))


def one_vector(bundle: dict[str, TensorInfo], ref: str, what: str) -> TensorInfo:
    """The single float vector [batch, D] (D fixed) that `ref` emits; `what` names it in the error ("a risk
    head needs a vector ...")."""
    if len(bundle) != 1:
        raise CheckError("input", f"{ref!r} emits {sorted(bundle)}; reference one, e.g. '{ref}.{sorted(bundle)[-1]}'")
    x = require_float(next(iter(bundle.values())), ref)
    if x.rank != 2 or not isinstance(x.width, int):
        raise CheckError("input", f"{what} needs a vector [batch, D], but {ref!r} has shape {list(x.shape)}")
    return x


def pooled_width(pool: PoolConfig, width: Dim) -> Dim:
    return pool.dense or width


def stream_outputs(out: dict, stream: str, bundle: dict, pool: PoolConfig | None, width: Dim, fusion: str) -> None:
    """Add one stream of a two-stream fusion (co-attention, cross-modality) to its output bundle `out`: the
    sequence as `<stream>`, the input's mask as `<stream>_mask` when it has one, and `<stream>_pooled` [batch,
    width'] when the stream pools (by 'cls' or 'mean'; CheckError for 'eos')."""
    seq = bundle["sequence"]
    out[stream] = seq
    if "mask" in bundle:
        out[f"{stream}_mask"] = bundle["mask"]
    if pool:
        if pool.type == "eos":
            raise CheckError((f"{stream}_pool", "type"), f"{fusion} streams pool by 'cls' or 'mean'")
        out[f"{stream}_pooled"] = TensorInfo((seq.shape[0], pooled_width(pool, width)))


def sequence_of(bundle: dict[str, TensorInfo], ref: str, field: str | tuple = "input") -> tuple[str, TensorInfo]:
    """(field name, info) of the sequence [batch, S, D] a bundle carries: its `sequence`, else its one rank-3 float
    tensor; a CheckError naming the bundle's fields otherwise."""
    if "sequence" in bundle:
        name = "sequence"
    else:
        found = [k for k, t in sorted(bundle.items()) if t.rank == 3 and t.dtype.startswith(("float", "bfloat"))]
        if len(found) != 1:
            fields = {k: list(t.shape) for k, t in sorted(bundle.items())}
            raise CheckError(field, f"{ref!r} has no `sequence` and {len(found)} rank-3 float tensors ({fields}); "
                                    f"reference one [batch, S, D] tensor, e.g. '{ref}.<field>'")
        (name,) = found
    info = bundle[name]
    if info.rank != 3 or not isinstance(info.width, int):
        raise CheckError(field, f"{ref!r}.{name} has shape {list(info.shape)}; a sequence [batch, S, D] with a fixed "
                                f"width D is needed")
    return name, info


def mask_of(bundle: dict[str, TensorInfo], ref: str, length, field: str = "context_mask") -> str:
    """The field of a padding mask [batch, length] (1 = token) a bundle carries: its `mask`, else its one tensor; a
    CheckError on `field` otherwise."""
    name = "mask" if "mask" in bundle else next(iter(bundle)) if len(bundle) == 1 else None
    mask = bundle.get(name)
    if mask is None or mask.rank != 2 or mask.shape[1] != length:
        raise CheckError(field, f"{ref!r} must give a mask [batch, {length}] (the context's length)")
    return name


def axis_max(spec, dim: Dim) -> int | None:
    """Largest size of an axis: itself when fixed; for a named or derived axis (`regions + text_len`), its value
    with every named axis at the smallest max_length / max_count of the modalities declaring it; None when a named
    axis it uses has no declared maximum."""
    caps: dict[str, int] = {}
    for m in spec.modalities.values():
        for axis, cap in (("length", "max_length"), ("count", "max_count")):
            name = getattr(m, axis, None)
            if isinstance(name, str):
                caps[name] = min(caps.get(name, getattr(m, cap)), getattr(m, cap))
    return dim_value(dim, caps) if dim_axes(dim) <= caps.keys() else None
