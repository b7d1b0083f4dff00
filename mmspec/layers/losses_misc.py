"""Survival, mixture-of-experts and reconstruction objectives, and modality dropout (a training-time part
without a loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmspec.layers.distributed import global_mean, global_sum
from mmspec.layers.masking import bernoulli, uniform_mask
from mmspec.layers.objective import Batch, ObjectiveModule, one


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


class MoELoadBalancing(ObjectiveModule):
    """Auxiliary loss on router logits [..., E] over all tokens. `switch` (Switch Transformer, top-k as in
    Mixtral): E * sum_e f_e P_e with f_e the fraction of tokens whose top-k experts include e and P_e the mean
    router probability of e. `importance` (Shazeer et al. 2017): squared coefficient of variation of the
    summed router probabilities, var / mean^2."""

    def __init__(self, kind: str, top_k: int):
        super().__init__()
        self.kind, self.top_k = kind, top_k

    def forward(self, args, targets):
        probs = F.softmax(one(args["input"]).flatten(0, -2), dim=-1)  # N,E
        n, e = probs.shape
        if self.kind == "importance":
            importance = probs.sum(0)  # E
            return importance.var(unbiased=False) / importance.mean() ** 2
        routed = F.one_hot(probs.topk(self.top_k, dim=-1).indices, e).sum(1).to(probs.dtype)  # N,E
        tokens = torch.tensor(float(n), device=probs.device)
        f = global_sum(routed.sum(0)) / global_sum(tokens)  # E, the same on every process
        return e * global_mean((f * probs.sum(0)).sum(), tokens)


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, (H/p)(W/p), p*p*C] in row-major patch order (MAE's layout)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)  # B,h,w,p,p,C
    return x.reshape(b, (h // p) * (w // p), p * p * c)


class Reconstruction(ObjectiveModule):
    """Reconstruction of a target (`mse` or `l1`), averaged over elements. With masking (MAE / SimMIM), a
    `ratio` of the image's p x p patches is zeroed in the student's input and only those patches count; the
    prediction is the image [B, C, H, W] or per-patch pixels [B, N, p*p*C]; `normalize`: each target patch
    is standardised first (MAE norm_pix_loss)."""

    def __init__(self, loss: str, image: str | None, ratio: float, patch: int, normalize: bool):
        super().__init__()
        self.loss, self.image, self.ratio, self.patch, self.normalize = loss, image, ratio, patch, normalize

    def corrupt(self, batch: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        if self.image is None:
            return {}
        x = batch.inputs[self.image]  # B,C,H,W
        b, _, h, w = x.shape
        p = self.patch
        masked = uniform_mask((b, (h // p) * (w // p)), self.ratio, g)  # B,N
        pixels = masked.view(b, 1, h // p, 1, w // p, 1).expand(b, 1, h // p, p, w // p, p).reshape(b, 1, h, w)
        batch.inputs[self.image] = x.masked_fill(pixels, 0.0)
        return {"masked": masked}

    def forward(self, args, targets):
        pred, target = one(args["input"]), one(args["target"])
        if self.image is None:
            err = (pred - target).abs() if self.loss == "l1" else (pred - target) ** 2
            return err.mean()
        target = patchify(target, self.patch)  # B,N,P
        if self.normalize:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        if pred.dim() == 4:
            pred = patchify(pred, self.patch)
        err = (pred - target).abs() if self.loss == "l1" else (pred - target) ** 2  # B,N,P
        masked = targets["masked"]
        return global_mean((err * masked[..., None]).sum(), masked.sum() * err.shape[-1])


class ModalityDropout(ObjectiveModule):
    """Multimodal dropout (Cheerla & Gevaert): each listed modality of each example is dropped with `prob`
    (its inputs set to the fill values: 0 features, 0 mask, the pad id); an example never loses all of them."""

    def __init__(self, modalities: list[dict[str, float]], prob: float):
        super().__init__()
        self.modalities, self.prob = modalities, prob

    def corrupt(self, batch: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        b, m = batch.size, len(self.modalities)
        drop = bernoulli((b, m), self.prob, g)  # B,M
        everything = drop.all(1)
        keep = torch.randint(0, m, (b,), generator=g)
        drop[everything, keep[everything]] = False
        for k, fills in enumerate(self.modalities):
            for name, fill in fills.items():
                x = batch.inputs[name]
                rows = drop[:, k].view(b, *[1] * (x.dim() - 1))
                batch.inputs[name] = torch.where(rows, torch.full_like(x, fill), x)
        return {"dropped": drop}

    def run(self, ctx):
        return {}
