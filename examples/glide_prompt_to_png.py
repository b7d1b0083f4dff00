"""A prompt to a PNG with the tiny GLIDE spec (specs/glide.yaml) on ONNX Runtime.

    python examples/glide_prompt_to_png.py --prompt "a red cube on a table" --out out.png

(without arguments: that prompt, into a temporary folder). It also samples the same noise with the eager model
and prints whether the two images agree (the ONNX Runtime sample within 1e-3 of the eager one).

The spec's `denoiser` graph (noisy image, timestep, caption tokens and mask -> predicted noise and variance) is
exported to ONNX; classifier-free guided DDIM (the paper's guidance scale 3, the empty caption as the
unconditional branch) runs around it in mmspec.runtime. The tiny model is untrained, so the picture is noise
shaped by the caption; with trained weights the same loop draws the caption. Words map to token ids by a
stable hash (the tiny vocabulary has 50 ids, GLIDE's is GPT-2's BPE).
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

from mmspec import api
from mmspec.runtime import Denoiser, OnnxGraph, alphas_cumprod, betas, ddim_sample

SPEC = Path(__file__).resolve().parents[1] / "specs" / "glide.yaml"


def tokenize(prompt: str, vocab: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Words -> ids 1..vocab-1 by hash, right-padded with 0 to `length`; ids and mask int64 [1, length]."""
    words = [int(hashlib.sha256(w.encode()).hexdigest(), 16) % (vocab - 1) + 1 for w in prompt.lower().split()]
    words = words[:length]
    ids = np.zeros((1, length), dtype=np.int64)
    mask = np.zeros((1, length), dtype=np.int64)
    ids[0, : len(words)], mask[0, : len(words)] = words, 1
    return ids, mask


def write_png(path: Path, image: np.ndarray) -> None:
    """uint8 [H, W, 3] -> an RGB PNG (no imaging library needed)."""
    h, w, _ = image.shape
    rows = b"".join(b"\x00" + image[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    path.write_bytes(png + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def generate(prompt: str, out: Path, *, steps: int = 10, guidance: float = 3.0, seed: int = 0,
             check: bool = False) -> np.ndarray:
    """Sample one image for `prompt` on ONNX Runtime and write it to `out`; returns it as uint8 [H, W, 3]. With
    `check`, also sample on the eager model and print `verified: True` when the two agree within 1e-3."""
    loaded = api.load_spec(SPEC, "tiny")
    torch.manual_seed(seed)
    model = api.build(loaded).eval()
    graph = {g.name: g for g in loaded.plan.graphs}["denoiser"]
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        gm, _ = api.optimize(api.capture(api.graph_views(model)["denoiser"]))
        api.export(gm, loaded, Path(tmp) / "denoiser.onnx", graph=graph)
        onnx = OnnxGraph(Path(tmp) / "denoiser.onnx")
    text, image = loaded.spec.modalities["text"], loaded.spec.modalities["x_t"]
    ids, mask = tokenize(prompt, text.vocab_size, text.length)
    (eps,) = [n for n in onnx.output_names if "eps" in n]
    noise = np.random.default_rng(seed).standard_normal((1, 3, image.height, image.width), dtype=np.float32)

    def sample(graph) -> np.ndarray:
        denoiser = Denoiser(graph, sample="x_t", timestep="timestep", eps=eps, cond={"text": ids, "text_mask": mask},
                            uncond={"text": np.zeros_like(ids), "text_mask": np.zeros_like(mask)})
        return ddim_sample(denoiser, noise, schedule=alphas_cumprod(betas("squaredcos_cap_v2")), steps=steps,
                           seed=seed, guidance_scale=guidance, clip_sample=True)  # 1,3,H,W in [-1, 1]

    x = sample(onnx)  # 1,3,H,W
    if check:
        diff = np.abs(x - sample(api.eager_graph(model, "denoiser"))).max()
        print(f"max diff {diff:.3g}; verified: {bool(diff <= 1e-3)}")
    pixels = ((np.clip(x[0], -1, 1) + 1) * 127.5).round().astype(np.uint8).transpose(1, 2, 0)  # H,W,3
    write_png(out, pixels)
    return pixels


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--prompt", default="a red cube on a table")
    parser.add_argument("--out", type=Path, help="the PNG to write (default: a temporary folder's)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    args, _ = parser.parse_known_args(argv)  # run by another program (tests), its own arguments stay unread
    out = args.out or Path(tempfile.mkdtemp()) / "glide.png"
    pixels = generate(args.prompt, out, steps=args.steps, guidance=args.guidance, seed=args.seed, check=True)
    print(f"wrote {out} ({pixels.shape[1]}x{pixels.shape[0]})")


if __name__ == "__main__":
    main(sys.argv[1:])
