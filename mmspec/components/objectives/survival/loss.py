"""Losses of the survival objectives: Cox partial likelihood, discrete-time hazards."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmspec.components.objectives.runtime import ObjectiveModule, one


class CoxPartialLikelihood(ObjectiveModule):
    """Negative Cox partial log-likelihood of risk scores eta [B] (or [B, 1]), divided by the number of events.
    Breslow: sum over events i of -(eta_i - log sum_{j: t_j >= t_i} exp eta_j). Efron, for d events tied at one
    time with tied set D and risk set R: -(sum_D eta - sum_{l<d} log(sum_R exp eta - l/d sum_D exp eta)).
    The risk set is the rows of this process."""

    def __init__(self, ties: str):
        super().__init__()
        self.ties = ties

    def forward(self, args, targets):
        eta = one(args["input"]).reshape(-1)  # B
        time, event = targets["time"].reshape(-1), targets["event"].reshape(-1).bool()  # B
        at_risk = time[None, :] >= time[:, None]  # B,B: row i's risk set
        if self.ties == "breslow":
            log_risk = torch.logsumexp(eta[None, :].masked_fill(~at_risk, float("-inf")), dim=1)  # B
            return -((eta - log_risk) * event).sum() / event.sum().clamp_min(1)
        total = eta.new_zeros(())
        for t in torch.unique(time[event]):
            tied = event & (time == t)  # D
            d = int(tied.sum())
            risk_sum = eta.exp()[time >= t].sum()
            tied_sum = eta.exp()[tied].sum()
            fractions = torch.arange(d, dtype=eta.dtype, device=eta.device) / d
            total = total - eta[tied].sum() + torch.log(risk_sum - fractions * tied_sum).sum()
        return total / event.sum().clamp_min(1)


class DiscreteTimeSurvival(ObjectiveModule):
    """Logistic-hazard NLL (pycox nll_logistic_hazard): hazards h_k = sigmoid(logits[:, k]) over K intervals;
    an example with interval j and event e contributes sum_{k<j} -log(1 - h_k) - e log h_j - (1 - e) log(1 - h_j).
    Mean over examples."""

    def forward(self, args, targets):
        logits = one(args["input"])  # B,K
        j, e = targets["interval"].reshape(-1), targets["event"].reshape(-1).to(logits.dtype)  # B
        y = F.one_hot(j, logits.shape[1]).to(logits.dtype) * e[:, None]  # B,K
        bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")  # B,K
        upto = torch.arange(logits.shape[1], device=logits.device)[None, :] <= j[:, None]  # B,K
        return (bce * upto).sum(1).mean()
