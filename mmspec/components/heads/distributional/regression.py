"""Host-side statistical stages of the remote-sensing pipelines (Jean et al. 2016, Gebru et al. 2017): per-region
aggregation of per-image network outputs and closed-form ridge regression, whose solution is then written into a
`distributional` head's linear term so the exported graph predicts with it. numpy only."""

from __future__ import annotations

import numpy as np


def aggregate(values, groups) -> tuple[np.ndarray, np.ndarray]:
    """Mean of `values` [N, D] per group id `groups` [N] -> (sorted group ids [G], means [G, D])."""
    values, groups = np.asarray(values, float), np.asarray(groups)
    ids, index = np.unique(groups, return_inverse=True)
    sums = np.zeros((len(ids), values.shape[1]))
    np.add.at(sums, index, values)
    return ids, sums / np.bincount(index)[:, None]


def fit_ridge(x, y, strength: float) -> tuple[np.ndarray, float]:
    """argmin_{w, b} |y - x w - b|^2 + strength |w|^2 (the intercept unpenalised) -> (w [D], b)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    mx, my = x.mean(0), y.mean()
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + strength * np.eye(x.shape[1]), xc.T @ (y - my))
    return w, float(my - mx @ w)


def set_linear_term(head, parameter: str, index: int, w, b: float) -> None:
    """Write coefficients `w` and intercept `b` into term `index` of `parameter` of a built `distributional` head
    (the head's other terms of that parameter keep theirs)."""
    import torch

    with torch.no_grad():
        head.coef[f"{parameter}_{index}"].weight.copy_(torch.as_tensor(w, dtype=torch.float32)[None])
        head.intercept[parameter].fill_(b)
