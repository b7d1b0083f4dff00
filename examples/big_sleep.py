"""The Big Sleep (Murdock 2021) on the tiny specs/big_sleep.yaml: BigGAN's noise and class vector optimised so
that CLIP matches the generated image to a prompt.

    python examples/big_sleep.py

The spec holds the two frozen networks, the generator (noise, classes -> image) and CLIP (image, prompt ->
logits). This script is the loop around them: each step generates the image, cuts random squares out of it,
resizes them to CLIP's input size, and descends on minus the mean CLIP logit of the cut-outs against the prompt,
plus a small penalty keeping z's moments near N(0, I) and the class vector sparse (sigmoid of free logits),
updating only z and the class logits with Adam.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch.nn import functional as F

import mmspec

SPEC = Path(__file__).resolve().parents[1] / "specs" / "big_sleep.yaml"


def cutouts(image: torch.Tensor, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """`n` random squares of `image` [1, C, S, S] (half to all of its side), each resized to `size`."""
    side = image.shape[-1]
    crops = []
    for _ in range(n):
        k = int(torch.randint(side // 2, side + 1, (), generator=generator))
        y, x = (int(v) for v in torch.randint(0, side - k + 1, (2,), generator=generator))
        crops.append(F.interpolate(image[:, :, y : y + k, x : x + k], size=(size, size), mode="bilinear",
                                   align_corners=False))
    return torch.cat(crops)  # n,C,size,size


class Critic:
    """CLIP's logit between each cut-out of G(z, sigmoid(class logits)) and the prompt."""

    def __init__(self, variant: str, prompt: torch.Tensor, cuts: int, seed: int):
        loaded = mmspec.load_spec(SPEC, variant=variant)
        self.model = mmspec.build(loaded).eval()
        self.size = loaded.spec.modalities["image"].height
        self.prompt, self.cuts = prompt, cuts
        self.generator = torch.Generator().manual_seed(seed)
        self.index = self.model.output_names.index("clip_logits_per_image")

    def image(self, z: torch.Tensor, class_logits: torch.Tensor) -> torch.Tensor:
        gen = self.model.components["generator"]
        return gen({"input": {"values": z}, "condition": {"values": torch.sigmoid(class_logits)}})["image"]

    def score(self, z: torch.Tensor, class_logits: torch.Tensor) -> torch.Tensor:
        """Mean CLIP logit of the cut-outs against the prompt (a fresh draw of cut-outs per call)."""
        crops = cutouts(self.image(z, class_logits), self.cuts, self.size, self.generator)
        n = crops.shape[0]
        inputs = {"noise": z.detach().expand(n, -1), "classes": torch.sigmoid(class_logits).detach().expand(n, -1),
                  "image": crops, "text": self.prompt.expand(n, -1)}
        return self.model(inputs)[self.index][:, 0].mean()  # the logit of each cut-out against the prompt


def dream(variant: str = "tiny", steps: int = 20, lr: float = 0.05, cuts: int = 8, seed: int = 0):
    """Returns CLIP's mean logit before and after (on one fixed set of cut-outs) and the final image."""
    torch.manual_seed(seed)
    loaded = mmspec.load_spec(SPEC, variant=variant)
    text = loaded.spec.modalities["text"]
    prompt = torch.randint(1, text.vocab_size, (1, 8))  # a tokenised prompt (the tokenizer runs outside the graph)
    critic = Critic(variant, prompt, cuts, seed)
    nz, k = loaded.spec.modalities["noise"].dim, loaded.spec.modalities["classes"].dim
    z = torch.randn(1, nz).requires_grad_(True)
    class_logits = torch.full((1, k), -3.0).requires_grad_(True)
    optimizer = torch.optim.Adam([z, class_logits], lr=lr)

    def fixed_score() -> float:
        critic.generator.manual_seed(seed + 1)
        with torch.no_grad():
            return critic.score(z, class_logits).item()

    before = fixed_score()
    for _ in range(steps):
        similarity = critic.score(z, class_logits)
        latent = z.mean() ** 2 + (z.std() - 1) ** 2  # keep z's moments near N(0, I)
        sparsity = torch.sigmoid(class_logits).mean()  # few classes
        loss = -similarity + 0.1 * latent + 0.1 * sparsity
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = fixed_score()
    with torch.no_grad():
        return before, after, critic.image(z, class_logits)


def main() -> None:
    with tempfile.TemporaryDirectory() as out:
        report = mmspec.compile(SPEC, out_dir=out, variant="tiny")
        for name, graph in report["graphs"].items():
            print(f"{name}: verified: {graph['verification']['passed']}")
    before, after, image = dream()
    print(f"CLIP logit of the prompt {before:.4g} -> {after:.4g}, image {list(image.shape)}")
    assert after > before


if __name__ == "__main__":
    main()
