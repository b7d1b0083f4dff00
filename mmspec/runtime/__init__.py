"""Generation on ONNX Runtime: the drivers that run a compiled spec's graphs step by step.

Imports numpy and onnxruntime only (never torch), so a server needs neither torch nor mmspec's compiler. The
drivers work on `Graph`s, callables from {input name: array} to {output name: array}: `OnnxGraph` runs an ONNX
file; `mmspec.api.eager_graph` runs the eager model the same way, so tests drive both with one loop.
"""

from mmspec.runtime.constraints import ConstrainedDecoder, TokenRange, Trie
from mmspec.runtime.diffusion import (
    Denoiser,
    Stage,
    alphas_cumprod,
    betas,
    cascade,
    classifier_guidance,
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    ddpm_sample,
    ddpm_step,
    dynamic_threshold,
    from_x0,
    upsample_nearest,
)
from mmspec.runtime.graphs import Graph, OnnxGraph
from mmspec.runtime.images import GeneratedImage, decode_tokens, generate_image
from mmspec.runtime.search import Decoder, beam_search, greedy, sample

__all__ = [
    "Graph", "OnnxGraph",
    "ConstrainedDecoder", "TokenRange", "Trie",
    "Denoiser", "Stage", "alphas_cumprod", "betas", "cascade", "classifier_guidance",
    "ddim_sample", "ddim_step", "ddim_timesteps",
    "ddpm_sample", "ddpm_step", "dynamic_threshold", "from_x0", "upsample_nearest",
    "Decoder", "beam_search", "greedy", "sample",
    "GeneratedImage", "decode_tokens", "generate_image",
]
