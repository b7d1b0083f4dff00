"""AttnGAN's multi-stage generator (Xu et al. 2018) and DM-GAN's dynamic-memory refinement (Zhu et al. 2019):
GLU up-blocks and residual blocks, word-level attention from image sub-regions to words, and the memory writing
gate / key-value addressing / response gate that replaces it in DM-GAN.

Feature maps are [B, C, h, w]; words are [B, S, E] (a text encoder's sequence, batch first)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def glu(x: torch.Tensor) -> torch.Tensor:
    """First half of the channels gated by the sigmoid of the second half."""
    a, b = x.chunk(2, dim=1)
    return a * torch.sigmoid(b)


class GLUConv(nn.Module):
    """(nearest x2 when `up`) 3x3 conv (no bias) to 2 * cout, BatchNorm, GLU."""

    def __init__(self, cin: int, cout: int, up: bool):
        super().__init__()
        self.up = up
        self.conv = nn.Conv2d(cin, 2 * cout, 3, 1, 1, bias=False)
        self.norm = nn.BatchNorm2d(2 * cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # B,cin,2h,2w
        return glu(self.norm(self.conv(x)))  # B,cout,h',w'


class GLUResBlock(nn.Module):
    """x + [3x3 conv to 2c, BN, GLU, 3x3 conv, BN] (no biases)."""

    def __init__(self, width: int):
        super().__init__()
        self.inner = GLUConv(width, width, up=False)
        self.conv = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.norm = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm(self.conv(self.inner(x)))  # B,W,h,w


class InitStage(nn.Module):
    """[condition code, noise] -> Linear (no bias) to 2 * 16 * widths[0], BatchNorm, GLU -> widths[0] x 4 x 4; a
    GLU up-block per further width -> features [B, widths[-1], S, S]."""

    def __init__(self, nz: int, cond: int, widths: list[int]):
        super().__init__()
        self.fc = nn.Linear(nz + cond, widths[0] * 32, bias=False)
        self.norm = nn.BatchNorm1d(widths[0] * 32)
        self.ups = nn.Sequential(*(GLUConv(a, b, up=True) for a, b in zip(widths, widths[1:], strict=False)))

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = glu(self.norm(self.fc(torch.cat([c, z], 1)))).unflatten(1, (-1, 4, 4))  # B,W0,4,4
        return self.ups(h)  # B,W,S,S


class WordAttention(nn.Module):
    """AttnGAN's attention: words [B, S, E] projected by a 1x1 conv (no bias) to the image width; each sub-region
    of h [B, C, h, w] takes softmax(h_j . e_i) over the words -> word-context map [B, C, h, w] and the weights
    [B, S, h, w]; padded words (mask 0) get no weight."""

    def __init__(self, width: int, words: int):
        super().__init__()
        self.proj = nn.Linear(words, width, bias=False)

    def forward(self, h: torch.Tensor, words: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        keys = self.proj(words)  # B,S,C
        return attend(h, keys, keys, mask)


def attend(h: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
           mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pixel softmax over the words of h_j . k_i -> (sum_i weight * v_i [B, C, h, w], weights [B, S, h, w]);
    words where `mask` [B, S] is 0 are left out of the softmax."""
    b, c, hh, ww = h.shape
    scores = torch.einsum("bcq,bsc->bsq", h.flatten(2), keys)  # B,S,hw
    if mask is not None:
        scores = scores.masked_fill(mask[:, :, None] == 0, -1e30)  # B,S,hw: exp gives 0, an empty row stays finite
    weights = torch.softmax(scores, dim=1)  # B,S,hw
    context = torch.einsum("bsq,bsc->bcq", weights, values)  # B,C,hw
    return context.unflatten(2, (hh, ww)), weights.unflatten(2, (hh, ww))


class DynamicMemory(nn.Module):
    """DM-GAN's refinement input: the memory writing gate g_i = sigmoid(A w_i + B mean(h)) mixes each word's
    M_w(w_i) with the (detached) mean image feature's M_r; keys and values (1x1 + ReLU) are read per pixel by
    softmax(h_j . k_i) over the unpadded words; the response gate sigmoid(conv1x1[h, o]) blends h and the read-out
    o."""

    def __init__(self, width: int, words: int):
        super().__init__()
        self.word_gate = nn.Linear(words, 1, bias=False)
        self.image_gate = nn.Linear(width, 1, bias=False)
        self.write_image = nn.Linear(width, 2 * width)
        self.write_word = nn.Linear(words, 2 * width)
        self.key = nn.Linear(2 * width, width)
        self.value = nn.Linear(2 * width, width)
        self.response = nn.Conv2d(2 * width, 1, 1)

    def forward(self, h: torch.Tensor, words: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mean = h.detach().mean(dim=(2, 3))  # B,C
        gate = torch.sigmoid(self.word_gate(words) + self.image_gate(mean)[:, None])  # B,S,1
        memory = F.relu(self.write_word(words)) * gate + F.relu(self.write_image(mean))[:, None] * (1 - gate)  # B,S,2C
        out, weights = attend(h, F.relu(self.key(memory)), F.relu(self.value(memory)), mask)  # B,C,h,w; B,S,h,w
        r = torch.sigmoid(self.response(torch.cat([h, out], 1)))  # B,1,h,w
        return h * (1 - r) + r * out, weights  # B,C,h,w


class NextStage(nn.Module):
    """A refinement stage: word attention (AttnGAN: [h, context] concatenated) or the dynamic memory (DM-GAN: the
    gated response duplicated) -> 2C channels, `blocks` GLU residual blocks, a GLU up-block back to C."""

    def __init__(self, width: int, words: int, blocks: int, memory: bool):
        super().__init__()
        self.memory = memory
        self.refine = DynamicMemory(width, words) if memory else WordAttention(width, words)
        self.residual = nn.Sequential(*(GLUResBlock(2 * width) for _ in range(blocks)))
        self.up = GLUConv(2 * width, width, up=True)

    def forward(self, h: torch.Tensor, words: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out, weights = self.refine(h, words, mask)  # B,C,h,w; B,S,h,w
        joint = torch.cat([out, out] if self.memory else [h, out], 1)  # B,2C,h,w
        return self.up(self.residual(joint)), weights  # B,C,2h,2w


class ToImage(nn.Module):
    """3x3 conv (no bias) to `channels`, tanh."""

    def __init__(self, width: int, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(width, channels, 3, 1, 1, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(h))  # B,channels,h,w
