"""The set prediction loss: Hungarian matching, class CE, L1 and generalised-IoU box losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmspec.components.objectives.runtime import ObjectiveModule


def hungarian(cost: list[list[float]]) -> list[int]:
    """Minimum-cost assignment of the n rows of an n x m cost matrix (n <= m) to distinct columns (Kuhn-Munkres
    with potentials, O(n^2 m)); returns the column of each row."""
    n, m = len(cost), len(cost[0]) if cost else 0
    inf = float("inf")
    u, v = [0.0] * (n + 1), [0.0] * (m + 1)
    owner, way = [0] * (m + 1), [0] * (m + 1)  # owner[j]: row (1-based) holding column j; 0: free
    for i in range(1, n + 1):
        owner[0], j0 = i, 0
        best, used = [inf] * (m + 1), [False] * (m + 1)
        while owner[j0]:
            used[j0], i0, delta, j1 = True, owner[j0], inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    reduced = cost[i0 - 1][j - 1] - u[i0] - v[j]
                    if reduced < best[j]:
                        best[j], way[j] = reduced, j0
                    if best[j] < delta:
                        delta, j1 = best[j], j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    best[j] -= delta
            j0 = j1
        while j0:
            j1 = way[j0]
            owner[j0], j0 = owner[j1], j1
    rows = [0] * n
    for j in range(1, m + 1):
        if owner[j]:
            rows[owner[j] - 1] = j - 1
    return rows


def _corners(boxes: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) [..., 4] -> (x0, y0, x1, y1)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)  # ...,4


def generalized_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise GIoU of corner boxes a [N, 4] and b [M, 4]: [N, M]."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])  # N
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # M
    lo, hi = torch.max(a[:, None, :2], b[None, :, :2]), torch.min(a[:, None, 2:], b[None, :, 2:])  # N,M,2 each
    inter = (hi - lo).clamp(min=0).prod(-1)  # N,M
    union = area_a[:, None] + area_b[None, :] - inter  # N,M
    lo, hi = torch.min(a[:, None, :2], b[None, :, :2]), torch.max(a[:, None, 2:], b[None, :, 2:])  # N,M,2 each
    hull = (hi - lo).clamp(min=0).prod(-1)  # N,M
    return inter / union - (hull - union) / hull  # N,M


class SetPredictionLoss(ObjectiveModule):
    """DETR's SetCriterion for the labels and boxes losses (without the auxiliary per-layer terms)."""

    def __init__(self, eos_coef: float, class_weight: float, bbox_weight: float, giou_weight: float):
        super().__init__()
        self.eos_coef, self.weights = eos_coef, (class_weight, bbox_weight, giou_weight)

    def forward(self, args, targets) -> torch.Tensor:
        logits = args["classes"]["logits"]  # B,Q,C+1
        boxes = next(iter(args["boxes"].values())).sigmoid()  # B,Q,4
        labels, target_boxes = targets["labels"], targets["boxes"]  # B,T; B,T,4
        none = logits.shape[-1] - 1
        wc, wb, wg = self.weights
        classes = torch.full(logits.shape[:2], none, dtype=torch.long, device=logits.device)  # B,Q
        pred, gold = [], []
        for b in range(logits.shape[0]):
            real = labels[b] != none  # T
            if not bool(real.any()):
                continue
            tl, tb = labels[b][real], target_boxes[b][real]  # K; K,4
            with torch.no_grad():
                cost = (-wc * logits[b].softmax(-1)[:, tl] + wb * torch.cdist(boxes[b], tb, p=1)
                        - wg * generalized_iou(_corners(boxes[b]), _corners(tb)))  # Q,K
                queries = hungarian(cost.T.tolist())  # K
            queries = torch.tensor(queries, device=logits.device)  # K
            classes[b, queries] = tl
            pred.append(boxes[b, queries])  # K,4
            gold.append(tb)  # K,4
        weight = torch.ones(none + 1, device=logits.device)  # C+1
        weight[none] = self.eos_coef
        loss = wc * F.cross_entropy(logits.transpose(1, 2), classes, weight)
        if pred:
            p, g = torch.cat(pred), torch.cat(gold)  # N,4 each
            count = max(len(p), 1)
            loss = loss + wb * F.l1_loss(p, g, reduction="sum") / count
            loss = loss + wg * (1 - torch.diag(generalized_iou(_corners(p), _corners(g)))).sum() / count
        return loss
