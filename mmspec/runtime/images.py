"""Image tokens (VQ-VAE, dVAE, DALL-E): sample a grid of codes with a token prior and decode it to pixels; numpy
only.

DALL-E's prior reads one stream: the text tokens, then the image tokens, where image code c is stream id
`offset + c`. `generate_image` samples the image part after a text prompt with `mmspec.runtime.search`, only ever
allowing ids in [offset, offset + codebook), and `decode_tokens` runs a `vq_decoder` graph on the codes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from mmspec.runtime.graphs import Graph
from mmspec.runtime.search import Decoder, State, greedy, sample

STRATEGIES = {"greedy": greedy, "sample": sample}


class GeneratedImage(NamedTuple):
    """What `generate_image` returns: the codes int64 [B, h*w] (stream ids minus the offset) and the pixels."""

    codes: np.ndarray
    pixels: np.ndarray


def decode_tokens(graph: Graph, tokens: np.ndarray, input_name: str | None = None, output_name: str | None = None,
                  *, entry: dict | None = None) -> np.ndarray:
    """Code ids int [B, h*w] -> pixels float32 [B, C, H, W] through a `vq_decoder` graph.

    `input_name` / `output_name` default to the graph's only input / output. The length must equal the graph's
    fixed input length, read from `entry` (the graph's manifest entry, `Pipeline.manifest["graphs"][name]`) or,
    without it, from the ONNX session of an `OnnxGraph`; a graph that states neither is a ValueError."""
    name = input_name or _only(graph.input_names, "input", "input_name")
    output = output_name or _only(graph.output_names, "output", "output_name")
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.dtype.kind not in "iu":
        raise ValueError(f"tokens must be a 2-D integer array [batch, h*w], got dtype {tokens.dtype} shape "
                         f"{tokens.shape}")
    length = _length(graph, name, entry)
    if tokens.shape[1] != length:
        raise ValueError(f"the graph's input {name!r} takes {length} codes per image, got {tokens.shape[1]}")
    return graph({name: tokens.astype(np.int64)})[output]


def generate_image(decoder: Decoder, vq_graph: Graph, prompt: np.ndarray, image_tokens: int, *, offset: int = 0,
                   codebook: int | None = None, entry: dict | None = None, strategy: str = "greedy",
                   **search_kwargs: Any) -> GeneratedImage:
    """Sample `image_tokens` codes after `prompt` (int64 [B, T]) and decode them with `vq_graph`.

    The prior's logits are masked to the image ids [offset, offset + codebook) at every generated position, so
    each code is in [0, codebook); `codebook` defaults to the prior's vocabulary minus `offset` (the image ids are
    the tail of the vocabulary). `strategy` is "greedy" or "sample"; `search_kwargs` go to that loop (top_k,
    top_p, temperature, seed, progress). No eos: every row gets exactly `image_tokens` codes. `entry`: the
    vq graph's manifest entry, as for `decode_tokens` (the length is checked before sampling)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    stopping = sorted({"eos_id", "pad_id"} & search_kwargs.keys())
    if stopping:
        raise ValueError(f"{', '.join(stopping)} cannot be set: an image has a fixed number of codes")
    if not isinstance(offset, int | np.integer) or offset < 0:
        raise ValueError(f"offset must be an int >= 0, got {offset!r}")
    if codebook is not None and (not isinstance(codebook, int | np.integer) or codebook < 1):
        raise ValueError(f"codebook must be an int >= 1 or None, got {codebook!r}")
    name = _only(vq_graph.input_names, "input", "input_name")
    length = _length(vq_graph, name, entry)
    if image_tokens != length:
        raise ValueError(f"image_tokens is {image_tokens!r}, but the VQ graph's input {name!r} takes {length} codes")
    stream = STRATEGIES[strategy](_ImageIds(decoder, offset, codebook), prompt, image_tokens, **search_kwargs)
    codes = stream[:, np.asarray(prompt).shape[1]:] - offset  # B,h*w
    return GeneratedImage(codes, decode_tokens(vq_graph, codes, name, entry=entry))


class _ImageIds:
    """A Decoder whose logits are -inf outside the image ids [offset, offset + codebook)."""

    def __init__(self, decoder: Decoder, offset: int, codebook: int | None):
        self.decoder, self.offset, self.codebook = decoder, offset, codebook

    def start(self, prompt: np.ndarray) -> tuple[np.ndarray, State]:
        logits, state = self.decoder.start(prompt)
        return self._mask(logits), state

    def step(self, tokens: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        logits, state = self.decoder.step(tokens, state)
        return self._mask(logits), state

    def reorder(self, state: State, index: np.ndarray) -> State:
        return self.decoder.reorder(state, index)

    def _mask(self, logits: np.ndarray) -> np.ndarray:
        vocab = logits.shape[-1]
        high = vocab if self.codebook is None else self.offset + self.codebook
        if not self.offset < high <= vocab:
            raise ValueError(f"the image ids [{self.offset}, {high}) (offset {self.offset}, codebook "
                             f"{self.codebook}) are not within the prior's vocabulary of {vocab} tokens")
        ids = np.arange(vocab)
        return np.where((ids >= self.offset) & (ids < high), logits, -np.inf).astype(np.float32)  # B,V


def _length(graph: Graph, name: str, entry: dict | None) -> int:
    """The fixed length (axis 1) of input `name`: from the manifest entry, else from an ONNX session."""
    if entry is not None:
        shapes = {i["name"]: i["shape"] for i in entry["inputs"]}
    elif hasattr(graph, "session"):
        shapes = {i.name: i.shape for i in graph.session.get_inputs()}
    else:
        raise ValueError("cannot tell how many codes the graph takes: pass entry= (its manifest entry, "
                         "Pipeline.manifest['graphs'][name]) or an OnnxGraph")
    if name not in shapes:
        raise ValueError(f"the graph has no input {name!r}; it has {sorted(shapes)}")
    shape = shapes[name]
    if len(shape) != 2 or not isinstance(shape[1], int):
        raise ValueError(f"input {name!r} has shape {shape}; a VQ decoder takes [batch, h*w] with a fixed h*w")
    return shape[1]


def _only(names: list[str], what: str, flag: str) -> str:
    if len(names) != 1:
        raise ValueError(f"cannot tell the graph's {what}: candidates {names}; name it with {flag}=")
    return names[0]
