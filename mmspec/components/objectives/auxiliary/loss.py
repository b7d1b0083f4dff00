"""Losses of the auxiliary objectives: MoE load balancing, masked reconstruction, modality dropout."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmspec.blocks.distributed import global_mean, global_sum
from mmspec.blocks.masking import bernoulli, uniform_mask
from mmspec.components.objectives.runtime import Batch, ObjectiveModule, one


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
    """Reconstruction of a target (`mse` or `l1`), averaged over elements. With masking (SimMIM), a `ratio` of
    the image's p x p patches is zeroed in the student's input and only those patches count; the prediction is
    the image [B, C, H, W] or per-patch pixels [B, N, p*p*C]. With `skip` set (MAE), the model dropped patches
    itself: the `dropped` input [B, N] says which count, and the prediction's first `skip` positions (a class
    token) are left out. `normalize`: each target patch is standardised first (MAE norm_pix_loss)."""

    def __init__(
        self, loss: str, image: str | None, ratio: float, patch: int, normalize: bool, skip: int | None = None
    ):
        super().__init__()
        self.loss, self.image, self.ratio, self.patch, self.normalize = loss, image, ratio, patch, normalize
        self.skip = skip

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
        if self.image is None and self.skip is None:
            err = (pred - target).abs() if self.loss == "l1" else (pred - target) ** 2
            return err.mean()
        target = patchify(target, self.patch)  # B,N,P
        if self.normalize:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        if pred.dim() == 4:
            pred = patchify(pred, self.patch)
        if self.skip is not None:
            pred = pred[:, self.skip :]  # B,N,P
            masked = one(args["dropped"]).to(pred.dtype)  # B,N
        else:
            masked = targets["masked"]  # B,N
        err = (pred - target).abs() if self.loss == "l1" else (pred - target) ** 2  # B,N,P
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
