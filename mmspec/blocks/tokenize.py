"""Gato's tokenisation of values into one vocabulary with text (Reed et al. 2022, Section 2.1), a preprocessing
stage in front of a token-stream spec (specs/gato.yaml).

Contract: `continuous_tokens(x)` maps float values of any shape to int64 ids of the same shape in
[offset, offset + bins): mu-law companding F(x) = sgn(x) log(|x| mu + 1) / log(M mu + 1), clipped to [-1, 1],
cut into `bins` uniform bins. `discrete_tokens(n)` maps integers in [0, bins) to ids by the same offset.
`continuous_values(ids)` inverts `continuous_tokens` up to the bin width (bin centres, expanded back).
"""

from __future__ import annotations

import math

import torch

TEXT_VOCAB = 32000
"""SentencePiece ids [0, 32000) come first; value ids follow."""
BINS = 1024
MU, M = 100.0, 256.0


def mu_law(x: torch.Tensor, mu: float = MU, m: float = M) -> torch.Tensor:
    """sgn(x) log(|x| mu + 1) / log(M mu + 1), elementwise."""
    return torch.sign(x) * torch.log1p(x.abs() * mu) / math.log(m * mu + 1.0)


def inverse_mu_law(y: torch.Tensor, mu: float = MU, m: float = M) -> torch.Tensor:
    """The inverse of `mu_law` on [-1, 1]."""
    return torch.sign(y) * torch.expm1(y.abs() * math.log(m * mu + 1.0)) / mu


def continuous_tokens(x: torch.Tensor, offset: int = TEXT_VOCAB, bins: int = BINS) -> torch.Tensor:
    """Float values -> ids in [offset, offset + bins): mu-law, clip to [-1, 1], uniform bins."""
    y = mu_law(x.double()).clamp(-1.0, 1.0)
    index = ((y + 1.0) / 2.0 * bins).floor().clamp(max=bins - 1)
    return index.long() + offset


def continuous_values(ids: torch.Tensor, offset: int = TEXT_VOCAB, bins: int = BINS) -> torch.Tensor:
    """Ids of `continuous_tokens` -> the values at their bins' centres (actions de-tokenised)."""
    centre = ((ids - offset).double() + 0.5) / bins * 2.0 - 1.0
    return inverse_mu_law(centre)


def discrete_tokens(n: torch.Tensor, offset: int = TEXT_VOCAB, bins: int = BINS) -> torch.Tensor:
    """Integers in [0, bins) (discrete observations, Atari buttons) -> ids in [offset, offset + bins)."""
    if bool(((n < 0) | (n >= bins)).any()):
        raise ValueError(f"discrete values must lie in [0, {bins})")
    return n.long() + offset
