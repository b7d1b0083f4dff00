"""DeepDream (Mordvintsev et al. 2015) on the tiny specs/deepdream.yaml: gradient ascent on the pixels.

    python examples/deepdream.py

The spec is the frozen GoogLeNet; its graph emits the Inception blocks' outputs. This script is the procedure
around it: each step shifts the image by a random jitter, takes the gradient of the mean squared activation of
the chosen block (the first output) with respect to the pixels, normalises it by its mean absolute value and
ascends; octaves run the same steps from a downscaled image up to the full size, adding back the detail lost by
downscaling.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch.nn import functional as F

import mmspec

SPEC = Path(__file__).resolve().parents[1] / "specs" / "deepdream.yaml"


def activation(model, image: torch.Tensor) -> torch.Tensor:
    """The objective: mean squared activation of the spec's first output (the dreamed block)."""
    return (model({"image": image})[0] ** 2).mean()


def dream(variant: str = "tiny", steps: int = 10, octaves: int = 2, scale: float = 1.4, lr: float = 0.1,
          jitter: int = 2, seed: int = 0):
    """Returns the objective before and after, and the dreamed image (from a random start image)."""
    loaded = mmspec.load_spec(SPEC, variant=variant)
    model = mmspec.build(loaded).eval()
    size = (loaded.spec.modalities["image"].height, loaded.spec.modalities["image"].width)
    generator = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, *size, generator=generator)
    with torch.no_grad():
        before = activation(model, base).item()
    # the graph's input size is fixed, so each octave is resized to it for the forward and back
    shapes = [tuple(int(s / scale**k) for s in size) for k in reversed(range(octaves))]
    detail, image = torch.zeros(1, 3, *shapes[0]), base
    for shape in shapes:
        scaled = F.interpolate(base, size=shape, mode="bilinear", align_corners=False)
        image = scaled + F.interpolate(detail, size=shape, mode="bilinear", align_corners=False)
        for _ in range(steps):
            dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=generator))
            shifted = torch.roll(image, (dy, dx), (2, 3)).requires_grad_(True)
            objective = activation(model, F.interpolate(shifted, size=size, mode="bilinear", align_corners=False))
            (grad,) = torch.autograd.grad(objective, shifted)
            image = torch.roll(shifted.detach() + lr * grad / (grad.abs().mean() + 1e-8), (-dy, -dx), (2, 3))
        detail = image - scaled  # what the ascent added, carried to the next octave
    with torch.no_grad():
        after = activation(model, image).item()
    return before, after, image


def main() -> None:
    with tempfile.TemporaryDirectory() as out:
        report = mmspec.compile(SPEC, out_dir=out, variant="tiny")
        print(f"verified: {report['verification']['passed']}")
    before, after, image = dream()
    print(f"mean squared activation {before:.4g} -> {after:.4g}, image {list(image.shape)}")
    assert after > before


if __name__ == "__main__":
    main()
