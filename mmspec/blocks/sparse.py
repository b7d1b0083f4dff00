"""DALL-E's sparse attention masks over one stream [text prefix, image grid in raster order] (Ramesh et al. 2021,
Appendix B.1): text tokens attend causally, image tokens attend to every text token and, among image tokens, to
a `row`, `column` or `convolutional` neighbourhood of earlier (or the same) positions; `dense` is plain causal.
NÜWA's 3-D nearby attention (`nearby`, Wu et al. 2021) is the causal part of a frames x rows x columns window
around each token of a video grid (frames of rows x columns tokens in raster order).

The masks are additive biases (`MASKED` where blocked) computed from absolute positions, so the same function
serves a whole sequence and a cached decoding step (queries P..P+T-1 over keys 0..P+T-1); everything is integer
arithmetic on aranges, torch.fx traceable and exported as ONNX Div/Mod (on non-negative values only)."""

from __future__ import annotations

import torch

from mmspec.blocks.attention import MASKED

KINDS = ("dense", "row", "column", "convolutional", "nearby")


def grid_sparse_bias(kind: str, like: torch.Tensor, past, prefix: int, columns: int, kernel: int,
                     extent: tuple[int, int, int] = (1, 1, 1), rows: int = 1) -> torch.Tensor:
    """Additive bias [T, P + T] for T new positions `like` [B, T, D] after `past` (P, an int or a tensor size)
    cached ones, in a stream of `prefix` text tokens followed by an image grid `columns` wide.

    Image query n (= position - prefix) at (n // columns, n % columns) sees image key m <= n when
    - row: n - m <= columns (the band of the previous grid row, the Sparse Transformer's local window);
    - column: (n - m) % columns == 0 (earlier rows of its own column);
    - convolutional: |row(n) - row(m)| and |col(n) - col(m)| both <= kernel // 2 (a causal kernel x kernel window);
    - nearby: |frame(n) - frame(m)|, |row(n) - row(m)|, |col(n) - col(m)| within half the (frames, rows, columns)
      `extent`, frames being `rows` x `columns` tokens (NÜWA's 3DNA);
    - dense: every earlier image key."""
    if kind not in KINDS:
        raise ValueError(f"unknown sparse attention kind {kind!r}; one of {KINDS}")
    t = like.shape[1]
    q = (torch.arange(t, device=like.device) + past)[:, None]  # T,1 absolute query positions
    k = torch.arange(past + t, device=like.device)[None, :]  # 1,P+T absolute key positions
    allowed = k <= q  # T,P+T causal
    if kind != "dense":
        n = (q - prefix).clamp(min=0)  # T,1 image index of the query (0 for text queries)
        m = (k - prefix).clamp(min=0)  # 1,P+T image index of the key
        if kind == "row":
            local = n - m <= columns  # T,P+T
        elif kind == "column":
            local = (n - m).clamp(min=0) % columns == 0  # T,P+T
        elif kind == "nearby":
            frame = rows * columns
            frames_apart = (n // frame - m // frame).abs() <= extent[0] // 2  # T,P+T
            rows_apart = ((n % frame) // columns - (m % frame) // columns).abs() <= extent[1] // 2  # T,P+T
            cols_apart = (n % columns - m % columns).abs() <= extent[2] // 2  # T,P+T
            local = frames_apart & rows_apart & cols_apart  # T,P+T
        else:
            half = kernel // 2
            rows_apart = (n // columns - m // columns).abs() <= half  # T,P+T
            cols_apart = (n % columns - m % columns).abs() <= half  # T,P+T
            local = rows_apart & cols_apart  # T,P+T
        allowed = allowed & ((k < prefix) | local)  # T,P+T text keys stay visible to every later query
    return (~allowed).type_as(like) * MASKED  # T,P+T
