"""MultiMAE encoder (Bachmann et al. 2022): per-modality patch projections of RGB, depth and a semantic map onto one
patch grid, a small random subset of all their tokens (split across modalities by a Dirichlet draw) plus global
tokens through one shared pre-norm ViT stack, while training; every token at inference."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmspec.components.common import StackConfig
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, Name, PositiveFloat, PositiveInt, Probability, Ref
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_STACK = {"width": 8, "layers": 1, "heads": 2, "ffn": 16}
_RGB = {"type": "image", "channels": 3, "height": 8, "width": 8}
MULTIMAE_EXAMPLES = (
    Example(  # RGB + depth + a 16 x 16 semantic map (8 classes), 4 x 4 grid: 6 of 48 tokens kept while training
        {"rgb": _RGB, "depth": {**_RGB, "channels": 1},
         "semseg": {"type": "tokens", "vocab_size": 8, "length": 256, "max_length": 256}},
        {"inputs": {"rgb": "rgb", "depth": "depth", "semseg": "semseg"}, "patch_size": 2, "class_dim": 4,
         "visible": 6, **_STACK},
        name="rgb_depth_semseg",
    ),
    Example(  # one modality, two global tokens
        {"rgb": _RGB},
        {"inputs": {"rgb": "rgb"}, "patch_size": 4, "visible": 2, "global_tokens": 2, **_STACK},
        name="rgb",
    ),
)


class Domain:
    """One input of the encoder: its port, kind ('image' or 'classes'), channels, patch side and patch grid."""

    def __init__(self, name: str, kind: str, channels: int, patch: int, grid: tuple[int, int]):
        self.name, self.kind, self.channels, self.patch, self.grid = name, kind, channels, patch, grid
        self.tokens = grid[0] * grid[1]


@register("encoders", examples=MULTIMAE_EXAMPLES)
class MultiMAEEncoder(StackConfig, ComponentConfig):
    """Each input becomes patch tokens on one common grid: an image [batch, C, H, W] through a conv patch
    projection (`patch_size`), a semantic map (a tokens modality of class ids, the map flattened row by row,
    side = grid * its own patch) through a class embedding of `class_dim` then a conv patch projection; each adds
    its learned positions. While training, `visible` tokens of all inputs together are kept (the share of each
    input drawn per example from Dirichlet(alpha)); `global_tokens` learned tokens follow; then `layers` pre-norm
    blocks, no final norm. At inference every token is kept.

    Emits `sequence` [batch, kept + global_tokens, width] (all N tokens at inference), `restore` [batch, N] (the
    position of each token in the kept-then-dropped order) and `dropped` [batch, N] (1 = not seen), N the tokens
    of all inputs in input order."""

    type: Literal["multimae"]
    inputs: dict[Name, Ref]
    """Input name -> an image or tokens (semantic map) modality; the order is the token order."""
    patch_size: PositiveInt = 16
    """Patch side on the images; it sets the common grid."""
    class_dim: PositiveInt = 64
    """Width of the class embedding of a semantic-map input."""
    visible: PositiveInt = 98
    """Tokens the encoder sees while training (of all inputs together)."""
    alpha: PositiveFloat = 1.0
    """Dirichlet concentration of the per-example split of `visible` over the inputs."""
    global_tokens: Annotated[int, Field(ge=0)] = 1
    """Learned tokens appended after the visible tokens (the official global tokens)."""
    width: PositiveInt = 768
    """Width of the tokens and of the encoder's transformer layers."""
    norm: Literal["pre"] = "pre"
    """Layer placement: `pre` (x + f(LN(x)))."""
    eps: PositiveFloat = 1e-6
    dropout: Probability = 0.0
    attention_dropout: Probability = 0.0

    def domains(self, inputs: dict[str, Bundle]) -> list[Domain]:
        """The inputs in token order with their kind, channels, patch side and token count."""
        grid = None
        for name in self.inputs:
            pixels = inputs[name].get("pixels")
            if pixels is not None:
                _, _, h, w = pixels.shape
                p = self.patch_size
                if h % p or w % p:
                    raise CheckError("patch_size", f"patch_size {p} does not divide the image {h}x{w} of {name!r}")
                if grid not in (None, (h // p, w // p)):
                    raise CheckError("inputs", f"the images must share one patch grid; {name!r} gives "
                                               f"{(h // p, w // p)}, another {grid}")
                grid = (h // p, w // p)
        if grid is None:
            raise CheckError("inputs", "at least one input must be an image (its patches set the grid)")
        out = []
        for name in self.inputs:
            b = inputs[name]
            if "pixels" in b:
                out.append(Domain(name, "image", b["pixels"].shape[1], self.patch_size, grid))
                continue
            ids = b.get("ids")
            length = ids.shape[1] if ids is not None and ids.rank == 2 else None
            side = round((length / (grid[0] * grid[1])) ** 0.5) if isinstance(length, int) else 0
            if not side or side * side * grid[0] * grid[1] != length:
                raise CheckError(("inputs", name), f"{name!r} must be an image or a tokens modality of fixed length "
                                                   f"(grid * p)^2 (a semantic map on the {grid} grid); it has "
                                                   f"{ {k: list(v.shape) for k, v in b.items()} }")
            out.append(Domain(name, "classes", 0, side, grid))
        return out

    def spec_domains(self, spec) -> list[Domain]:
        """`domains` from the modalities this encoder reads (what its decoders see)."""
        return self.domains({n: spec.modalities[r].bundle(r) for n, r in self.inputs.items()})

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        self.check_heads()
        for name, ref in self.inputs.items():
            if ref not in ctx.spec.modalities:
                raise CheckError(("inputs", name), f"{ref!r} must be a modality (an image, or the tokens of a "
                                                   f"semantic map), not another node or a field")
        domains = self.domains(inputs)
        tokens = sum(d.tokens for d in domains)
        if self.visible > tokens:
            raise CheckError("visible", f"visible {self.visible} exceeds the {tokens} tokens of all inputs")
        batch = next(iter(inputs[next(iter(self.inputs))].values())).shape[0]
        index = TensorInfo((batch, tokens), "int64")
        return {"sequence": TensorInfo((batch, tokens + self.global_tokens, self.width)), "restore": index,
                "dropped": index}

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        from mmspec.components import params as P

        w, total = self.width, self.global_tokens * self.width
        for d in self.domains(inputs):
            if d.kind == "image":
                total += d.channels * d.patch**2 * w + w
            else:
                vocab = ctx.spec.modalities[self.inputs[d.name].split(".")[0]].vocab_size
                total += vocab * self.class_dim + self.class_dim * d.patch**2 * w + w
            total += d.tokens * w
        return total + P.stack(self)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.multimae.module import MultiMAEModule

        vocab = {n: ctx.spec.modalities[r.split(".")[0]].vocab_size for n, r in self.inputs.items()
                 if "ids" in inputs[n]}
        return MultiMAEModule(self, self.domains(inputs), vocab)
