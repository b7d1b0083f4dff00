"""Reference rebuild of ISL-14 (Shahmohammadi, Lensch, Baayen 2021; specs/shahmohammadi.yaml) in plain torch, from
the model's description (the authors released no training code): frozen word vectors, one mapping matrix M used
both ways, an image MLP starting a forward and a backward GRU, word prediction in the textual space and a binary
image-caption matcher. tests/coverage/test_shahmohammadi.py compares its parameter count and outputs with the
spec's."""

from __future__ import annotations

import torch
from torch import nn


class GroundedMultiTask(nn.Module):
    """ids [B, S], image [B, I] -> (grounded vectors [B, S, G], next-word logits [B, S, V], previous-word logits
    [B, S, V], match logits [B, 2]). The backward GRU reads the flipped caption; its states are flipped back."""

    def __init__(self, vocab: int = 10000, words: int = 300, grounded: int = 300, image: int = 2048,
                 hidden: int = 300):
        super().__init__()
        self.glove = nn.Embedding(vocab, words).requires_grad_(False)
        self.M = nn.Linear(words, grounded, bias=False)  # weight [G, words]: textual -> grounded
        self.start = nn.Sequential(nn.Linear(image, hidden), nn.Tanh(), nn.Linear(hidden, grounded))
        self.forward_gru = nn.GRU(grounded, grounded, batch_first=True)
        self.backward_gru = nn.GRU(grounded, grounded, batch_first=True)
        self.next_word = nn.Linear(words, vocab)
        self.previous_word = nn.Linear(words, vocab)
        self.match = nn.Linear(2 * grounded, 2)

    def forward(self, ids: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        g = self.M(self.glove(ids))  # B,S,G
        h0 = self.start(image)[None]  # 1,B,G
        fw, h_fw = self.forward_gru(g, h0)  # B,S,G; 1,B,G
        bw, h_bw = self.backward_gru(g.flip(1), h0)  # B,S,G right to left
        bw = bw.flip(1)  # B,S,G in caption order
        nxt = self.next_word(fw @ self.M.weight)  # M^T back to the textual space: B,S,V
        prev = self.previous_word(bw @ self.M.weight)  # B,S,V
        match = self.match(torch.cat([h_fw[0], h_bw[0]], -1))  # B,2
        return g, nxt, prev, match


SPEC_NAMES = {  # mmspec parameter -> reference parameter
    "components.glove.table.weight": "glove.weight",
    "components.grounded.mlp.0.weight": "M.weight",
    "components.start.mlp.0.weight": "start.0.weight",
    "components.start.mlp.0.bias": "start.0.bias",
    "components.start.mlp.2.weight": "start.2.weight",
    "components.start.mlp.2.bias": "start.2.bias",
    **{f"components.{d}_gru.rnn.{p}_l0": f"{d}_gru.{p}_l0" for d in ("forward", "backward")
       for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")},
    **{f"components.{w}.{p}": f"{w}.{p}" for w in ("next_word", "previous_word") for p in ("weight", "bias")},
    "components.match.mlp.0.weight": "match.weight",
    "components.match.mlp.0.bias": "match.bias",
}
"""Every parameter of the spec's model (M once: forward_text and backward_text use grounded's weight)."""
