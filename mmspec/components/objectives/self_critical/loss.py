"""Self-critical sequence training: decode captions from the model, reward them with CIDEr-D, and weigh their
log-probabilities by reward minus baseline. Decoding runs through `StepContext.forward` without gradients and
without a KV cache (each step re-runs the model on the whole prefix); the log-probabilities are one
teacher-forced pass with gradients."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mmspec.blocks.distributed import global_mean
from mmspec.components.objectives.runtime import ObjectiveModule, StepContext
from mmspec.components.objectives.self_critical.cider import Caption, CiderD

Inputs = dict[str, torch.Tensor]


class SelfCritical(ObjectiveModule):
    """loss = -1/(B k) sum_{b,i} (r_bi - base_b) log p(w_bi) over this step's B rows and k samples each (a mean
    over the global batch with several processes); rewards are constants, gradients flow through log p only."""

    def __init__(self, node: str, field: str, ids: str, mask: str | None, samples: int, sampling: str,
                 baseline: str, length: int, fixed: bool, bos: int, eos: int, pad: int | None,
                 from_target: bool):
        super().__init__()
        self.node, self.field, self.ids, self.mask = node, field, ids, mask
        self.samples, self.sampling, self.baseline = samples, sampling, baseline
        self.length, self.fixed = length, fixed
        self.bos, self.eos, self.pad, self.from_target = bos, eos, pad, from_target
        self.corpus: CiderD | None = None

    def set_corpus(self, references: Sequence[Sequence[Caption]]) -> None:
        """Take CIDEr-D's document frequencies from a corpus (one list of reference captions per image, as token
        ids) instead of each batch's references: M² uses its training captions."""
        self.corpus = CiderD(references)

    def logits(self, forward: Callable, inputs: Inputs, tokens: torch.Tensor) -> torch.Tensor:
        """The model's logits [N, T, V] for `tokens` [N, T] with the other graph inputs `inputs` (N rows)."""
        fed = {**inputs, self.ids: tokens}
        if self.mask is not None:
            fed[self.mask] = torch.ones_like(tokens)
        return forward(fed)[self.node][self.field]

    def decode(self, forward: Callable, inputs: Inputs, n: int, device: torch.device, how: str) -> torch.Tensor:
        """Captions [N, length] (`bos` first, `eos` after the end), one per row of the N rows of `inputs`:
        `greedy` or `multinomial`."""
        seqs = torch.full((n, self.length), self.eos, dtype=torch.long, device=device)  # N,L
        seqs[:, 0] = self.bos
        done = torch.zeros(n, dtype=torch.bool, device=device)  # N
        for t in range(1, self.length):
            logits = self.logits(forward, inputs, seqs if self.fixed else seqs[:, :t])[:, t - 1].float()  # N,V
            token = logits.argmax(-1) if how == "greedy" else torch.multinomial(logits.softmax(-1), 1)[:, 0]  # N
            seqs[:, t] = torch.where(done, self.eos, token)
            done |= token == self.eos
            if done.all():
                break
        return seqs

    def beam(self, forward: Callable, inputs: Inputs, b: int, device: torch.device) -> torch.Tensor:
        """The `samples` best captions [B*k, length] of each of the B rows of `inputs` by summed log-probability,
        best first. A finished beam (it emitted `eos`) stays in the beam with its score and is continued by `eos`
        only."""
        k = self.samples
        inputs = {name: x.repeat_interleave(k, 0) for name, x in inputs.items()}
        seqs = torch.full((b * k, self.length), self.eos, dtype=torch.long, device=device)  # B*k,L
        seqs[:, 0] = self.bos
        scores = torch.full((b, k), -torch.inf, device=device)  # B,k
        scores[:, 0] = 0.0  # the first step expands one beam, so the beams differ
        done = torch.zeros(b, k, dtype=torch.bool, device=device)  # B,k
        for t in range(1, self.length):
            logp = self.logits(forward, inputs, seqs if self.fixed else seqs[:, :t])[:, t - 1].float()  # B*k,V
            logp = logp.log_softmax(-1).view(b, k, -1)  # B,k,V
            v = logp.shape[-1]
            only_eos = torch.full((v,), -torch.inf, device=device)  # V
            only_eos[self.eos] = 0.0
            logp = torch.where(done[..., None], only_eos, logp)  # B,k,V
            scores, top = (scores[..., None] + logp).view(b, k * v).topk(k, dim=1)  # B,k
            parent, token = top // v, top % v  # B,k
            seqs = seqs[(torch.arange(b, device=device)[:, None] * k + parent).flatten()]  # B*k,L
            seqs[:, t] = token.flatten()
            done = done.gather(1, parent) | (token == self.eos)  # B,k
            if done.all():
                break
        return seqs

    def log_probs(self, forward: Callable, inputs: Inputs, seqs: torch.Tensor) -> torch.Tensor:
        """Summed log-probabilities [N] of the captions `seqs` [N, L] after `bos`, up to and including the first
        `eos`, from one teacher-forced pass with gradients."""
        logp = self.logits(forward, inputs, seqs)[:, :-1].float().log_softmax(-1)  # N,L-1,V
        picked = logp.gather(-1, seqs[:, 1:, None])[..., 0]  # N,L-1
        is_eos = (seqs[:, 1:] == self.eos).long()  # N,L-1
        before_end = (is_eos.cumsum(1) - is_eos) == 0  # N,L-1  positions up to the first eos
        return (picked * before_end).sum(1)

    def words(self, seq: Sequence[int], stops: tuple[int | None, ...]) -> tuple[int, ...]:
        """The ids of `seq` before the first id in `stops`."""
        out = []
        for w in seq:
            if w in stops:
                break
            out.append(w)
        return tuple(out)

    def references(self, ctx: StepContext) -> list[list[tuple[int, ...]]]:
        """Each row's reference captions (as id tuples; empty ones dropped)."""
        stops = (self.eos, self.pad)
        if self.from_target:
            rows = ctx.targets["references"].tolist()  # B,N,L-1
            return [[c for c in (self.words(r, stops) for r in refs) if c] for refs in rows]
        ids = ctx.clean[self.ids][:, 1:].tolist()  # B,T-1
        if self.mask is not None:
            keep = ctx.clean[self.mask][:, 1:].sum(1).tolist()  # B
            ids = [row[:n] for row, n in zip(ids, keep, strict=True)]
        return [[c] if (c := self.words(row, stops)) else [] for row in ids]

    def run(self, ctx: StepContext) -> torch.Tensor:
        if ctx.forward is None:
            raise RuntimeError("self_critical decodes with the model: its StepContext needs `forward`")
        refs = self.references(ctx)
        inputs = {k: v for k, v in ctx.student.items() if k not in (self.ids, self.mask)}
        b, k, device = len(refs), self.samples, ctx.clean[self.ids].device
        repeated = {n: x.repeat_interleave(k, 0) for n, x in inputs.items()}
        with torch.no_grad():
            if self.sampling == "beam":
                seqs = self.beam(ctx.forward, inputs, b, device)  # B*k,L
            else:
                seqs = self.decode(ctx.forward, repeated, b * k, device, "multinomial")  # B*k,L
            greedy = self.decode(ctx.forward, inputs, b, device, "greedy") if self.baseline == "greedy" else None
        scorer = self.corpus or CiderD(refs)
        caption = lambda s: self.words(s[1:], (self.eos,))  # noqa: E731
        rewards = torch.tensor([scorer.score(caption(s), refs[i // k]) for i, s in enumerate(seqs.tolist())],
                               dtype=torch.float32).view(b, k)  # B,k
        if greedy is None:
            base = rewards.mean(1, keepdim=True)  # B,1
        else:
            base = torch.tensor([scorer.score(caption(s), r) for s, r in zip(greedy.tolist(), refs, strict=True)],
                                dtype=torch.float32)[:, None]  # B,1
        logp = self.log_probs(ctx.forward, repeated, seqs)  # B*k
        advantage = (rewards - base).to(logp.device).flatten()  # B*k
        return -global_mean((advantage * logp).sum(), torch.tensor(float(b * k)))
