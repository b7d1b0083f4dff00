"""Losses of the self-supervised view objectives: NT-Xent (SimCLR), BYOL, data2vec."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmspec.blocks.distributed import gather_rows, global_mean
from mmspec.blocks.masking import augment_image, augment_noise, block_mask, pair_views, span_mask, uniform_mask
from mmspec.components.objectives.runtime import Batch, ObjectiveModule, one


class Views(ObjectiveModule):
    """Objectives that compare two augmented views of each example: `views` doubles the batch (rows 2i and
    2i+1 are example i's views, so pairs stay on one process) and augments the inputs of one modality."""

    def __init__(self, names: list[str], image: bool, flip: bool, crop: float, brightness: float, noise: float):
        super().__init__()
        self.names, self.image, self.aug = names, image, (flip, crop, brightness, noise)

    def views(self, batch: Batch, g: torch.Generator) -> Batch:
        batch = batch.map(pair_views)
        for name in self.names:
            x = batch.inputs[name]
            if x.is_floating_point():
                batch.inputs[name] = augment_image(x, g, *self.aug) if self.image else augment_noise(x, g, self.aug[3])
        return batch


def partner(n: int, device=None) -> torch.Tensor:
    """Index of each row's other view: 1, 0, 3, 2, ..."""
    return torch.arange(n, device=device) ^ 1


class NTXent(Views):
    """SimCLR's NT-Xent: z = norm(embedding); each row's positive is its other view, every other row of every
    process a negative: mean_i -log(exp(z_i.z_p(i)/t) / sum_{j != i} exp(z_i.z_j/t))."""

    def __init__(self, temperature: float, **views):
        super().__init__(**views)
        self.temperature = temperature
        self.negatives = 0

    def forward(self, args, targets):
        z = F.normalize(one(args["input"]), dim=-1)  # N,D
        all_z, offset = gather_rows(z)  # K*N,D
        sim = z @ all_z.t() / self.temperature  # N,K*N
        rows = torch.arange(z.shape[0], device=z.device)
        sim = sim.index_put((rows, rows + offset), torch.tensor(float("-inf"), device=sim.device))  # no self-similarity
        self.negatives = sim.shape[1] - 2
        return F.cross_entropy(sim, partner(z.shape[0], z.device) + offset)


class BYOL(Views):
    """BYOL: 2 - 2 cos(prediction of one view, teacher projection of the other view), averaged over rows;
    `symmetric` adds the loss with the views swapped (the paper's L + L~), else only even rows predict."""

    def __init__(self, symmetric: bool, **views):
        super().__init__(**views)
        self.symmetric = symmetric

    def forward(self, args, targets):
        p = F.normalize(one(args["input"]), dim=-1)  # N,D
        t = F.normalize(one(args["target"]).detach(), dim=-1)[partner(p.shape[0], p.device)]  # N,D
        loss = 2 - 2 * (p * t).sum(-1)  # N
        return 2 * loss.mean() if self.symmetric else loss[0::2].mean()


class Data2Vec(ObjectiveModule):
    """data2vec: the student sees masked input (`corrupt`: span or uniform masking; token ids -> mask_token,
    float features -> 0); at the masked positions it regresses the mean of the teacher's top-k layer outputs
    [B, L, S, D], each normalised first (`layer`: parameter-free LayerNorm over D; `instance`: over positions).
    Loss: smooth L1 (beta) or squared error, averaged over masked positions and channels. When the predictions
    are shorter than the masked input (raw audio samples -> frames), a prediction counts as masked when most of
    its proportional share of the input is."""

    def __init__(
        self,
        name: str,
        mask_name: str | None,
        mask_token: int | None,
        kind: str,
        prob: float,
        length: int,
        top_k: int,
        target_norm: str,
        loss: str,
        beta: float,
        grid: tuple[int, int, int] | None = None,
    ):
        super().__init__()
        self.grid = grid
        """(patch side, rows, columns) of an image input: patches are masked (`length`: the smallest block)."""
        self.name, self.mask_name, self.mask_token, self.kind, self.prob, self.length = (
            name,
            mask_name,
            mask_token,
            kind,
            prob,
            length,
        )
        self.top_k, self.target_norm, self.loss, self.beta = top_k, target_norm, loss, beta

    def corrupt(self, batch: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        if self.grid is not None:
            return self._mask_patches(batch, g)
        x = batch.inputs[self.name]  # B,S(,F)
        shape = tuple(x.shape[:2])
        masked = (
            span_mask(shape, self.prob, self.length, g) if self.kind == "span" else uniform_mask(shape, self.prob, g)
        )
        if self.mask_name:
            masked &= batch.inputs[self.mask_name].bool()
        if x.is_floating_point():
            batch.inputs[self.name] = x.masked_fill(masked[..., None], 0.0)
        else:
            batch.inputs[self.name] = x.masked_fill(masked, self.mask_token)
        return {"masked": masked}  # B,S

    def _mask_patches(self, batch: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Zero the pixels of masked patches of the image [B, C, H, W]; masked: [B, rows * cols]."""
        x = batch.inputs[self.name]  # B,C,H,W
        p, rows, cols = self.grid
        count = round(self.prob * rows * cols)
        if self.kind == "block":
            masked = block_mask(x.shape[0], rows, cols, count, g, self.length)  # B,N
        else:
            masked = uniform_mask((x.shape[0], rows * cols), self.prob, g)  # B,N
        pixels = masked.view(-1, 1, rows, 1, cols, 1).expand(-1, 1, rows, p, cols, p).reshape(-1, 1, rows * p,
                                                                                          cols * p)  # B,1,H,W
        batch.inputs[self.name] = x.masked_fill(pixels.to(x.device), 0.0)
        return {"masked": masked}  # B,N

    def forward(self, args, targets):
        pred = one(args["input"])  # B,S,D
        layers = one(args["target"], "layers")[:, -self.top_k :].detach()  # B,k,S,D
        if self.target_norm == "layer":
            layers = F.layer_norm(layers, layers.shape[-1:])
        elif self.target_norm == "instance":  # per channel over positions
            layers = (layers - layers.mean(2, keepdim=True)) / (
                layers.var(2, unbiased=False, keepdim=True) + 1e-5
            ).sqrt()
        y = layers.mean(1)  # B,S,D
        if self.loss == "l2":
            err = (pred - y) ** 2
        else:
            err = F.smooth_l1_loss(pred, y, reduction="none", beta=self.beta)  # B,S,D
        masked = targets["masked"]  # B,S of the masked input
        if self.grid is not None:  # image patches after the class token(s)
            masked = F.pad(masked, (pred.shape[1] - masked.shape[1], 0))  # B,S
        elif masked.shape[1] != pred.shape[1]:  # a strided front end (audio samples -> frames)
            masked = F.adaptive_avg_pool1d(masked[:, None].float(), pred.shape[1])[:, 0] > 0.5  # B,S'
        return global_mean((err * masked[..., None]).sum(), masked.sum() * pred.shape[-1])
