"""Reference models of the survival specs SU-01 ... SU-03, with plain torch.nn / lifelines and no mmspec code.

The official DeepSurv and DeepConvSurv are Theano/Lasagne programs that cannot be installed, so their networks
are rebuilt here layer by layer from the authors' code (Lasagne DenseLayer/Conv2DLayer keep a bias unless told
otherwise; unpadded convolutions; 2x2 max-pools that drop a trailing odd row). tests/references.py registers them.
"""

from __future__ import annotations

import torch
from torch import nn

ROSSI_DURATION, ROSSI_EVENT = "week", "arrest"


def rossi_cox():
    """lifelines.CoxPHFitter (no penalty, Efron ties) fitted on the Rossi recidivism data it ships."""
    from lifelines import CoxPHFitter
    from lifelines.datasets import load_rossi

    return CoxPHFitter(penalizer=0.0).fit(load_rossi(), ROSSI_DURATION, ROSSI_EVENT)


def deepsurv_official(covariates: int, hidden: list[int]) -> nn.Sequential:
    """deepsurv.DeepSurv without batch norm: DenseLayer(n, nonlinearity) per hidden size (dropout has no
    parameters), then DenseLayer(1, linear), which keeps Lasagne's default bias."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(covariates, width), nn.ReLU()]
        covariates = width
    return nn.Sequential(*layers, nn.Linear(covariates, 1))


def deepconvsurv_official(channels: int, height: int, width: int, filters: int = 32, dense: int = 32) -> nn.Sequential:
    """WSISA's DeepConvSurv: conv 7x7/3, max-pool 2, conv 5x5/2, conv 3x3/2, max-pool 2 (all ReLU, `filters`
    maps), dense `dense` + ReLU, dense 1 (linear, with bias)."""
    body = nn.Sequential(
        nn.Conv2d(channels, filters, 7, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(filters, filters, 5, 2), nn.ReLU(),
        nn.Conv2d(filters, filters, 3, 2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
    )
    flat = body(torch.empty(1, channels, height, width, device="meta")).shape[1]
    return nn.Sequential(*body, nn.Linear(flat, dense), nn.ReLU(), nn.Linear(dense, 1))


def tong_autoencoders(x_dims: list[int], hidden: int = 128, code: int = 100, fusion: str = "concat") -> nn.ModuleList:
    """ConcatAE / CrossAE of Tong et al. 2020 as the authors' code builds them (src/networks): per modality an
    encoder x -> N -> N -> z and a decoder z -> N -> N -> x (Q_net, P_net), then one survival network
    z_fused -> N -> N -> 1 (C_net) on the concatenated codes ("concat") or their mean ("mean"). Dropout has no
    parameters and is left out."""

    def three(a: int, b: int) -> list[nn.Module]:  # a -> N -> N -> b, every layer with a bias
        return [nn.Linear(a, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, b)]

    encoders = [nn.Sequential(*three(x, code)) for x in x_dims]
    decoders = [nn.Sequential(*three(code, x)) for x in x_dims]
    fused = code * len(x_dims) if fusion == "concat" else code
    return nn.ModuleList([*encoders, *decoders, nn.Sequential(*three(fused, 1))])
