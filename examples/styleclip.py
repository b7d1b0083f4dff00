"""StyleCLIP's latent mapper (Patashnik et al. 2021) trained on the tiny specs/styleclip.yaml for one prompt.

    python examples/styleclip.py

The spec holds the trainable mapper and the frozen StyleGAN2 synthesis and CLIP. This script is the official
training loop around them: W+ codes w (here the mapping network's w of random z, repeated over the rows, where
the paper inverts real faces with e4e) are edited to w + 0.1 * mapper(w), synthesised, resized to CLIP's input
(7x upsampling and average pooling as the official CLIPLoss, bilinear where the sizes do not divide) and scored
against the prompt; the loss is 1 - CLIP logit / 100 plus 0.8 x the mean squared edit, and only the mapper's
parameters are optimised.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch.nn import functional as F

import mmspec

SPEC = Path(__file__).resolve().parents[1] / "specs" / "styleclip.yaml"


def clip_resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """The official CLIPLoss resize (upsample x7, average pool to `size`) where it divides, else bilinear."""
    side = image.shape[-1]
    if (7 * side) % size == 0:
        return F.avg_pool2d(F.interpolate(image, scale_factor=7.0, mode="nearest"), 7 * side // size)
    return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False)


def train(variant: str = "tiny", steps: int = 20, lr: float = 0.5, batch: int = 2, seed: int = 0):
    """Returns the losses per step, the model, and the mapper's parameters before training."""
    torch.manual_seed(seed)
    loaded = mmspec.load_spec(SPEC, variant=variant)
    model = mmspec.build(loaded)
    model.eval()  # fixed noise in the frozen generator; the mapper has no train-only behaviour
    mods = loaded.spec.modalities
    prompt = torch.randint(1, mods["text"].vocab_size, (1, 8))  # a tokenised prompt
    logit = model.output_names.index("clip_logits_per_image")
    mapper, synthesis = model.components["mapper"], model.components["synthesis"]
    with torch.no_grad():
        w = model.components["mapping"]({"input": {"values": torch.randn(batch, mods["noise"].dim)}})["w"]
        w = w[:, None].repeat(1, mods["wplus"].length, 1)  # B,L,D
    before = [p.detach().clone() for p in mapper.parameters()]
    optimizer = torch.optim.Adam(mapper.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        edited = mapper({"input": {"values": w}})["edited"]  # B,L,D
        image = synthesis({"input": {"edited": edited}})["image"]  # B,3,S,S
        inputs = {"noise": torch.zeros(batch, mods["noise"].dim), "wplus": w,
                  "image": clip_resize(image, mods["image"].height), "text": prompt.expand(batch, -1)}
        clip_loss = (1 - model(inputs)[logit][:, 0] / 100).mean()
        loss = clip_loss + 0.8 * F.mse_loss(edited, w)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, model, before


def main() -> None:
    with tempfile.TemporaryDirectory() as out:
        report = mmspec.compile(SPEC, out_dir=out, variant="tiny")
        for name, graph in report["graphs"].items():
            print(f"{name}: verified: {graph['verification']['passed']}")
    losses, _, _ = train()
    print(f"loss {losses[0]:.4g} -> {losses[-1]:.4g}")
    assert losses[-1] < losses[0]


if __name__ == "__main__":
    main()
