"""Reference networks of the multimodal survival and tabular specs (SU-06 ... SU-09), rebuilt with plain torch.nn
from the official configurations (their code is not installable: scripts over TCGA data that need torchvision,
or a package outside the dev extra), so that tests/references.py can compare the specs' parameter counts."""

from __future__ import annotations

import torch
from torch import nn

_WIDTHS = [128, 256, 512, 1024, 2048, 4096, 8192, 16384]


def _below(n: int) -> int:
    """MultiSurv's width rule: the largest of its power-of-two widths under n (the smallest one for small n)."""
    under = [w for w in _WIDTHS if w < n]
    return under[-1] if under else _WIDTHS[0]


def multisurv_fc(n_in: int, n_out: int, layers: int, scaling: int = 4) -> list[nn.Module]:
    """MultiSurv's FC block: Linear + ReLU (+ BatchNorm on every layer but the last). The first hidden width is
    max(rule(n_in), n_out) * scaling; each next one is max(rule(previous), n_out)."""
    if layers == 1:
        return [nn.Linear(n_in, n_out)]
    widths = [max(_below(n_in), n_out) * (scaling if layers > 2 else 1)]
    while len(widths) < layers - 1:
        widths.append(max(_below(widths[-1]), n_out))
    modules: list[nn.Module] = []
    for a, b in zip([n_in, *widths], widths, strict=False):
        modules += [nn.Linear(a, b), nn.BatchNorm1d(b)]
    return [*modules, nn.Linear(widths[-1], n_out)]


def multisurv(intervals: int = 30, features: int = 512) -> nn.Module:
    """MultiSurv (clinical, mRNA, miRNA, DNAm, CNV; fusion 'max'; no WSI) as in the official sub-models."""
    clinical_levels = [(33, 17), (2, 1), (8, 4), (3, 2), (3, 2), (3, 2), (3, 2), (3, 2), (20, 10)]
    clinical = [*(nn.Embedding(n, d) for n, d in clinical_levels), nn.BatchNorm1d(1),
                nn.Linear(sum(d for _, d in clinical_levels) + 1, 256), *multisurv_fc(256, features, 1)]
    cnv = [nn.Embedding(3 * 2000, 2), *multisurv_fc(2 * 2000, features, 5, scaling=1)]
    return nn.ModuleList([
        *clinical,
        *multisurv_fc(1000, features, 3),
        *multisurv_fc(1881, features, 3, scaling=2),
        *multisurv_fc(5000, features, 5, scaling=2),
        *cnv,
        *multisurv_fc(features, 512, 4),
        nn.Linear(512, intervals),
    ])


class _Highway(nn.Module):
    def __init__(self, size: int, layers: int):
        super().__init__()
        self.nonlinear = nn.ModuleList(nn.Linear(size, size) for _ in range(layers))
        self.linear = nn.ModuleList(nn.Linear(size, size) for _ in range(layers))
        self.gate = nn.ModuleList(nn.Linear(size, size) for _ in range(layers))


def cheerla() -> nn.Module:
    """The official Network of Cheerla & Gevaert's experiments/predict.py, without the SqueezeNet WSI branch."""
    return nn.ModuleList([nn.Linear(1881, 256), nn.Linear(7, 256), nn.Linear(60483, 256), nn.BatchNorm1d(256),
                          _Highway(256, 10), nn.BatchNorm1d(256), nn.Linear(256, 2), nn.Linear(256, 1)])


def wdl(levels: int = 10, embed: int = 4, dense: int = 1, hidden: tuple[int, ...] = (256, 128)) -> nn.Module:
    """deepctr-torch WDL with one sparse and `dense` dense features: linear part (one weight per level and per
    dense feature, no bias), the DNN over [embedding, dense], dnn_linear without bias, one output bias."""
    widths = [embed + dense, *hidden]
    return nn.ModuleList([
        nn.Embedding(levels, 1), nn.Linear(dense, 1, bias=False),
        nn.Embedding(levels, embed), *(nn.Linear(a, b) for a, b in zip(widths, widths[1:], strict=False)),
        nn.Linear(hidden[-1], 1, bias=False), nn.ParameterList([nn.Parameter(torch.zeros(1))]),
    ])
