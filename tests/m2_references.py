"""The M² Meshed-Memory Transformer's modules with the official code's sizes and names
(aimagelab/meshed-memory-transformer, models/transformer), rebuilt from torch.nn for parameter counts; the
repository is not installable (it pins old torch and spaCy)."""

from __future__ import annotations

import torch
from torch import nn


def _attention(d: int) -> nn.ModuleDict:
    """MultiHeadAttention: ScaledDotProductAttention's fc_q/k/v/o and the wrapper's LayerNorm."""
    return nn.ModuleDict({"fc_q": nn.Linear(d, d), "fc_k": nn.Linear(d, d), "fc_v": nn.Linear(d, d),
                          "fc_o": nn.Linear(d, d), "layer_norm": nn.LayerNorm(d)})


def _pwff(d: int, ff: int) -> nn.ModuleDict:
    return nn.ModuleDict({"fc1": nn.Linear(d, ff), "fc2": nn.Linear(ff, d), "layer_norm": nn.LayerNorm(d)})


def m2(vocab: int = 10_201, memory: int = 40, meshed: bool = True, layers: int = 3, d: int = 512, ff: int = 2048,
       max_len: int = 54, d_in: int = 2048) -> nn.ModuleDict:
    """MemoryAugmentedEncoder(layers, 0, ScaledDotProductAttentionMemory m=memory) + MeshedDecoder(vocab, max_len,
    layers): the encoder's fc + LayerNorm, its layers (memory m_k, m_v [1, m, d]), the word table, the frozen
    (max_len + 1)-row sinusoid table, the decoder layers with fc_alpha1..3 (absent in the 1-to-1 ablation), fc."""
    encoder = nn.ModuleList()
    for _ in range(layers):
        mhatt = _attention(d)
        if memory:
            mhatt.m_k = nn.Parameter(torch.zeros(1, memory, d))
            mhatt.m_v = nn.Parameter(torch.zeros(1, memory, d))
        encoder.append(nn.ModuleDict({"mhatt": mhatt, "pwff": _pwff(d, ff)}))
    decoder = nn.ModuleList()
    for _ in range(layers):
        layer = {"self_att": _attention(d), "enc_att": _attention(d), "pwff": _pwff(d, ff)}
        if meshed:
            layer.update({f"fc_alpha{i + 1}": nn.Linear(2 * d, d) for i in range(layers)})
        decoder.append(nn.ModuleDict(layer))
    return nn.ModuleDict({"fc": nn.Linear(d_in, d), "layer_norm": nn.LayerNorm(d), "encoder": encoder,
                          "word_emb": nn.Embedding(vocab, d), "pos_emb": nn.Embedding(max_len + 1, d),
                          "decoder": decoder, "out": nn.Linear(d, vocab, bias=False)})
