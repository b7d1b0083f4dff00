"""Neural style transfer (Gatys et al. 2016) on the tiny specs/style_transfer.yaml: the pixels are optimised.

    python examples/style_transfer.py

The spec is the frozen VGG feature network; its graph emits the tapped activations. This script is the
procedure the paper runs around it: the content target is the content image's features at the content layer,
the style targets are the style image's Gram matrices at the style layers, and gradient steps on the image
lower alpha * content loss + beta * style loss. The canonical spec's taps are conv1_1, conv2_1, conv3_1,
conv4_1, conv5_1 (style) and conv4_2 (content); the tiny variant taps the same layers at 2 channels.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

import mmspec

SPEC = Path(__file__).resolve().parents[1] / "specs" / "style_transfer.yaml"


def gram(features: torch.Tensor) -> torch.Tensor:
    """G[i, j] = sum over positions of F_i F_j: [batch, C, h, w] -> [batch, C, C]."""
    flat = features.flatten(2)  # B,C,h*w
    return flat @ flat.transpose(1, 2)  # B,C,C


def style_loss(outputs: dict[str, torch.Tensor], grams: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over the style layers of 1 / (4 N^2 M^2) ||G - A||^2, equal weights w_l = 1 / layers (eq. 4-5)."""
    total = torch.zeros(())
    for name, target in grams.items():
        _, n, h, w = outputs[name].shape
        total = total + ((gram(outputs[name]) - target) ** 2).sum() / (4 * n**2 * (h * w) ** 2) / len(grams)
    return total


def content_loss(outputs: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> torch.Tensor:
    """1/2 ||F - P||^2 at the content layer (eq. 1)."""
    return sum(0.5 * ((outputs[name] - value) ** 2).sum() for name, value in target.items())


def transfer(variant: str = "tiny", steps: int = 60, alpha: float = 1e-3, beta: float = 1.0, seed: int = 0):
    """Optimise an image (started from the content image) against a random content and style image; returns the
    losses per step and the image. The weights are the spec's seeded ones (--weights would load VGG-19's)."""
    loaded = mmspec.load_spec(SPEC, variant=variant)
    model = mmspec.build(loaded).eval()
    names = model.output_names
    content_layer, style_layers = names[-1], names[:-1]
    modality = loaded.spec.modalities["image"]
    generator = torch.Generator().manual_seed(seed)
    content, style = torch.rand(2, 1, 3, modality.height, modality.width, generator=generator)

    def features(image: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(names, model({"image": image}), strict=True))

    with torch.no_grad():
        target = {content_layer: features(content)[content_layer]}
        grams = {name: gram(value) for name, value in features(style).items() if name in style_layers}
    image = content.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=0.02)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        outputs = features(image)
        loss = alpha * content_loss(outputs, target) + beta * style_loss(outputs, grams)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, image.detach()


def main() -> None:
    with tempfile.TemporaryDirectory() as out:
        report = mmspec.compile(SPEC, out_dir=out, variant="tiny")
        print(f"verified: {report['verification']['passed']}")
    losses, image = transfer()
    print(f"style transfer loss {losses[0]:.4g} -> {losses[-1]:.4g} in {len(losses)} steps, image {list(image.shape)}")
    assert losses[-1] < 0.5 * losses[0]


if __name__ == "__main__":
    main()
