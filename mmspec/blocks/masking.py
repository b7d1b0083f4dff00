"""Masking generators, negative samplers and view augmentations (training-time only; never exported).

All randomness comes from an explicit `torch.Generator`, so a step's masks are the same on every process.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def bernoulli(shape, p: float, g: torch.Generator) -> torch.Tensor:
    """Bool tensor, True with probability p."""
    return torch.rand(shape, generator=g) < p


def bert_mask(
    ids: torch.Tensor,
    valid: torch.Tensor,
    prob: float,
    mask_token: int,
    vocab: int,
    g: torch.Generator,
    random_prob: float = 0.1,
    keep_prob: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: choose each valid position with `prob`; of the chosen, (1 - random - keep) become
    `mask_token`, `random_prob` a random id, `keep_prob` stay. Returns (corrupted ids, labels: the original id
    at chosen positions, -100 elsewhere). ids, valid: [B, S]."""
    chosen = bernoulli(ids.shape, prob, g) & valid.bool()  # B,S
    u = torch.rand(ids.shape, generator=g)  # B,S
    random_ids = torch.randint(0, vocab, ids.shape, generator=g)  # B,S
    out = torch.where(chosen & (u < 1 - random_prob - keep_prob), torch.full_like(ids, mask_token), ids)
    out = torch.where(chosen & (u >= 1 - random_prob - keep_prob) & (u < 1 - keep_prob), random_ids, out)
    return out, torch.where(chosen, ids, torch.full_like(ids, -100))


def span_mask(shape: tuple[int, int], prob: float, length: int, g: torch.Generator) -> torch.Tensor:
    """wav2vec 2.0 / data2vec span masking [B, S]: round(prob * S / length) start positions per row, drawn
    without replacement from [0, S - length], each masking `length` positions (spans may overlap)."""
    b, s = shape
    length = min(length, s)
    starts = max(1, round(prob * s / length)) if prob > 0 else 0
    mask = torch.zeros(shape, dtype=torch.bool)
    for row in range(b):
        for start in torch.randperm(s - length + 1, generator=g)[: min(starts, s - length + 1)].tolist():
            mask[row, start : start + length] = True
    return mask


def uniform_mask(shape: tuple[int, int], ratio: float, g: torch.Generator) -> torch.Tensor:
    """Exactly round(ratio * N) masked positions per row, uniformly without replacement (MAE). [B, N] bool."""
    b, n = shape
    k = min(n, round(ratio * n))
    ranks = torch.rand(shape, generator=g).argsort(dim=1).argsort(dim=1)  # B,N: a random permutation per row
    return ranks < k


def t5_noise_mask(length: int, density: float, mean_span: float, g: torch.Generator) -> torch.Tensor:
    """T5's random_spans_noise_mask: round(length * density) noise tokens in round(noise / mean_span) spans,
    alternating with non-noise spans and starting with non-noise. [length] bool."""
    noise = min(max(round(length * density), 1), length - 1)
    spans = max(round(noise / mean_span), 1)
    spans = min(spans, noise, length - noise)

    def segments(items: int) -> list[int]:  # a uniformly random composition of `items` into `spans` parts
        cuts = sorted((torch.randperm(items - 1, generator=g)[: spans - 1] + 1).tolist())
        edges = [0, *cuts, items]
        return [edges[i + 1] - edges[i] for i in range(spans)]

    mask: list[bool] = []
    for keep, drop in zip(segments(length - noise), segments(noise), strict=True):
        mask += [False] * keep + [True] * drop
    return torch.tensor(mask)


def t5_sentinels(ids: torch.Tensor, noise: torch.Tensor, first_sentinel: int) -> torch.Tensor:
    """Replace every run of `noise` positions in a 1-D sequence by one sentinel id (first_sentinel, then one
    less for each later run) and drop the rest of the run (T5 noise_span_to_unique_sentinel)."""
    prev = torch.cat([torch.zeros(1, dtype=torch.bool), noise[:-1]])
    first = noise & ~prev
    sentinel = first_sentinel + 1 - torch.cumsum(first.long(), 0)
    return torch.where(first, sentinel, ids)[~(noise & prev)]


def t5_corrupt(ids: torch.Tensor, noise: torch.Tensor, first_sentinel: int) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 span corruption of one sequence: (encoder input with noise spans -> sentinels,
    target = the noise spans, each after its sentinel, then a final sentinel for the rest)."""
    return t5_sentinels(ids, noise, first_sentinel), t5_sentinels(ids, ~noise, first_sentinel)


def pair_views(x: torch.Tensor) -> torch.Tensor:
    """Two copies of every row, interleaved: rows 2i and 2i+1 are the views of example i (pairs stay on one
    process when the batch is split)."""
    return x.repeat_interleave(2, dim=0)


def augment_image(
    x: torch.Tensor, g: torch.Generator, flip: bool, crop: float, brightness: float, noise: float
) -> torch.Tensor:
    """SimCLR/BYOL-style view of images [B, C, H, W]: random resized crop (area fraction in [crop, 1]),
    horizontal flip (p = 0.5), brightness factor in [1 - b, 1 + b], additive Gaussian noise."""
    b, _, h, w = x.shape
    if crop < 1.0:
        rows = []
        for i in range(b):
            area = crop + (1 - crop) * torch.rand((), generator=g).item()
            ch, cw = max(1, round(h * math.sqrt(area))), max(1, round(w * math.sqrt(area)))
            top = int(torch.randint(0, h - ch + 1, (), generator=g))
            left = int(torch.randint(0, w - cw + 1, (), generator=g))
            patch = x[i : i + 1, :, top : top + ch, left : left + cw]
            rows.append(F.interpolate(patch, size=(h, w), mode="bilinear", align_corners=False))
        x = torch.cat(rows)
    if flip:
        flipped = bernoulli((b, 1, 1, 1), 0.5, g)
        x = torch.where(flipped, x.flip(-1), x)
    if brightness > 0:
        x = x * (1 + brightness * (2 * torch.rand((b, 1, 1, 1), generator=g) - 1))
    return augment_noise(x, g, noise)


def augment_noise(x: torch.Tensor, g: torch.Generator, noise: float) -> torch.Tensor:
    return x + noise * torch.randn(x.shape, generator=g) if noise > 0 else x


def block_mask(batch: int, height: int, width: int, count: int, g: torch.Generator, min_patches: int = 16,
               min_aspect: float = 0.3) -> torch.Tensor:
    """BEiT's block-wise masking of a height x width patch grid, per row of the batch: rectangles of a random
    area between min_patches and the patches still to mask, aspect ratio log-uniform in [min_aspect,
    1/min_aspect], at random places, until `count` patches are masked or 10 draws in a row fit none (a block adds
    at most the patches still to mask). Returns [batch, height * width] bool, row-major."""
    out = torch.zeros(batch, height, width, dtype=torch.bool)

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * torch.rand((), generator=g).item()

    for mask in out:
        done = 0
        while done < count:
            budget, added = count - done, 0
            for _ in range(10):
                area = uniform(min_patches, budget)
                aspect = math.exp(uniform(math.log(min_aspect), -math.log(min_aspect)))
                h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
                if h >= height or w >= width:
                    continue
                top = int(torch.randint(0, height - h + 1, (), generator=g))
                left = int(torch.randint(0, width - w + 1, (), generator=g))
                new = h * w - int(mask[top : top + h, left : left + w].sum())
                if 0 < new <= budget:
                    mask[top : top + h, left : left + w] = True
                    added = new
                    break
            if not added:
                break
            done += added
    return out.flatten(1)
