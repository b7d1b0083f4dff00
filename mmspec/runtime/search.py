"""Token decoding loops (greedy, sampling, beam search) over any `Decoder`; numpy only.

The loops never see how logits are made: a `Decoder` turns a prompt into next-token logits plus an opaque state,
extends the state by one token per row, and (for beam search) selects rows of the state. Every function returns
int64 [B, T + n]: the prompt followed by n <= max_new_tokens generated tokens, rows that finished early (emitted
`eos_id`) right-padded with `pad_id` (default `eos_id`). Each takes `progress`, called once per decoding step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

State = Any
"""Whatever a decoder carries between steps (a KV cache, the token history, ...); opaque to the loops."""

Progress = Callable[[int], None]
"""Called after each decoding step with the number of new tokens so far (1, 2, ...)."""


class Decoder(Protocol):
    """Next-token logits for a batch of rows, advanced one token at a time."""

    def start(self, prompt: np.ndarray) -> tuple[np.ndarray, State]:
        """prompt int64 [B, T] (T >= 1) -> logits of the last prompt position, float32 [B, V], and the state."""
        ...

    def step(self, tokens: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """tokens int64 [B] appended -> logits float32 [B, V] for the next position, and the new state."""
        ...

    def reorder(self, state: State, index: np.ndarray) -> State:
        """The state of rows `index` (int64 [B']) of the batch, in that order (beam search)."""
        ...


def greedy(decoder: Decoder, prompt: np.ndarray, max_new_tokens: int, *, eos_id: int | None = None,
           pad_id: int | None = None, progress: Progress | None = None) -> np.ndarray:
    """Append the most likely token (ties -> lowest id) until max_new_tokens or every row has emitted eos_id.

    A finished row is still stepped (fed eos_id, its logits ignored) until every row has finished.
    """
    return _extend(decoder, prompt, max_new_tokens, lambda logits: logits.argmax(axis=1), eos_id, pad_id, progress)


def sample(decoder: Decoder, prompt: np.ndarray, max_new_tokens: int, *, top_k: int = 0, top_p: float = 1.0,
           temperature: float = 1.0, seed: int = 0, eos_id: int | None = None, pad_id: int | None = None,
           progress: Progress | None = None) -> np.ndarray:
    """Draw each token from the filtered softmax, in this order (as transformers' logits warpers):

    1. temperature: logits / temperature (> 0; use `greedy` for the limit 0);
    2. top-k: keep the top_k most likely tokens (0: all), ties at the cut broken towards the lowest id;
    3. top-p: renormalize what is left and keep the smallest set of most likely tokens whose probability is
       >= top_p (always at least one token; 1.0: all);
    then draw from the kept tokens, renormalized, with `np.random.default_rng(seed)` (one uniform per row per
    step): the same seed and inputs give the same tokens. top_k=1 or a tiny top_p give `greedy`'s tokens.
    """
    if not isinstance(top_k, int | np.integer) or top_k < 0:
        raise ValueError(f"top_k must be an int >= 0 (0 keeps every token), got {top_k!r}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] (1.0 keeps every token), got {top_p!r}")
    if not temperature > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}; use greedy() for temperature 0")
    rng = np.random.default_rng(seed)

    def pick(logits: np.ndarray) -> np.ndarray:
        z = logits.astype(np.float64) / temperature  # B,V
        order = np.argsort(-z, axis=1, kind="stable")  # B,V  most likely first, ties -> lowest id
        z = np.take_along_axis(z, order, axis=1)  # B,V  sorted
        keep = min(top_k, z.shape[1]) if top_k else z.shape[1]
        p = np.exp(z[:, :keep] - z[:, :1])  # B,k  after top-k
        p /= p.sum(axis=1, keepdims=True)
        before = np.cumsum(p, axis=1) - p  # B,k  probability of the more likely tokens
        kept = (before < top_p).sum(axis=1) if top_p < 1.0 else np.full(len(z), keep)  # B  >= 1: before[:, 0] = 0
        p = np.where(np.arange(keep) < kept[:, None], p, 0.0)  # B,k  after top-p
        cdf = np.cumsum(p, axis=1)  # B,k
        u = rng.random(len(z)) * cdf[:, -1]  # B
        i = np.minimum((cdf <= u[:, None]).sum(axis=1), kept - 1)  # B  position in the sorted order
        return order[np.arange(len(z)), i]

    return _extend(decoder, prompt, max_new_tokens, pick, eos_id, pad_id, progress)


def beam_search(decoder: Decoder, prompt: np.ndarray, max_new_tokens: int, *, beams: int, eos_id: int | None = None,
                length_penalty: float = 1.0, pad_id: int | None = None,
                progress: Progress | None = None) -> np.ndarray:
    """The best of `beams` hypotheses per example, by summed log-softmax, as transformers' beam search.

    The decoder is started once on each example's prompt repeated `beams` times (rows b*beams .. b*beams+beams-1)
    and follows the surviving beams through `reorder`. At the first step only the first beam's candidates count,
    so the beams are distinct. Each step ranks the 2*beams best continuations of an example's open beams:

    - an eos_id continuation ranked among the first `beams` is finished;
    - the first `beams` continuations that are not eos_id stay open;
    - at max_new_tokens the first `beams` continuations are all finished.

    A finished hypothesis scores sum_logprobs / L ** length_penalty, where L counts the generated tokens
    including the eos_id (not the prompt), like transformers; > 0 favours longer hypotheses, < 0 shorter ones.
    An example stops when no open beam can still beat its best finished hypothesis: log-probabilities are <= 0,
    so an open beam with sum s at length t can at best score s / max_new_tokens ** length_penalty if
    length_penalty > 0, else s / (t + 1) ** length_penalty (transformers' early_stopping="never" bound, held
    against the best finished hypothesis rather than the worst of `beams`, as only the best is returned). The
    loop stops when every example has stopped; the result is exactly that of running to max_new_tokens.
    """
    if not isinstance(beams, int | np.integer) or beams < 1:
        raise ValueError(f"beams must be an int >= 1, got {beams!r}")
    prompt = _prompt(prompt)
    _check_common(max_new_tokens, eos_id, pad_id)
    n, k = max_new_tokens, beams
    b, t0 = prompt.shape
    logits, state = decoder.start(np.repeat(prompt, k, axis=0))  # B*k,V
    v = _check_logits(logits, b * k, "start", eos_id)
    width = min(2 * k, k * v)  # candidates ranked per example
    scores = np.full((b, k), -np.inf)  # B,k  summed log-probabilities of the open beams
    scores[:, 0] = 0.0
    generated = np.zeros((b * k, 0), dtype=np.int64)  # B*k,t  tokens of the open beams
    best = np.full(b, -np.inf)  # B  score of the best finished hypothesis
    best_tokens = np.zeros((b, n), dtype=np.int64)  # B,n
    best_len = np.zeros(b, dtype=np.int64)  # B
    for t in range(1, n + 1):
        cand = (scores[:, :, None] + _log_softmax(logits).reshape(b, k, v)).reshape(b, k * v)  # B,k*V
        top = np.argsort(-cand, axis=1, kind="stable")[:, :width]  # B,w
        top_scores = np.take_along_axis(cand, top, axis=1)  # B,w
        parent, token = top // v, top % v  # B,w
        eos = token == eos_id if eos_id is not None else np.zeros_like(token, dtype=bool)  # B,w
        finished = (np.arange(width) < k) & (eos | (t == n))  # B,w
        final = np.where(finished, top_scores / float(t) ** length_penalty, -np.inf)  # B,w
        j = final.argmax(axis=1)  # B
        better = final[np.arange(b), j] > best  # B
        if better.any():
            rows = (np.arange(b) * k + parent[np.arange(b), j])[better]
            best[better] = final[better, j[better]]
            best_tokens[better, : t - 1] = generated[rows]
            best_tokens[better, t - 1] = token[better, j[better]]
            best_len[better] = t
        if progress is not None:
            progress(t)
        if t == n:
            break
        open_ = np.argsort(eos, axis=1, kind="stable")[:, :k]  # B,k  the first k non-eos, in rank order
        scores = np.where(np.take_along_axis(eos, open_, axis=1), -np.inf,
                          np.take_along_axis(top_scores, open_, axis=1))  # B,k
        bound = scores.max(axis=1) / float(n if length_penalty > 0 else t + 1) ** length_penalty  # B
        if np.all(bound <= best):
            break
        index = (np.arange(b)[:, None] * k + np.take_along_axis(parent, open_, axis=1)).reshape(-1)  # B*k
        tokens = np.take_along_axis(token, open_, axis=1).reshape(-1)  # B*k
        generated = np.concatenate([generated[index], tokens[:, None]], axis=1)  # B*k,t
        logits, state = decoder.step(tokens, decoder.reorder(state, index))
        _check_logits(logits, b * k, "step", eos_id)
    # without eos_id every hypothesis has max_new_tokens tokens and nothing is padded
    fill = pad_id if pad_id is not None else eos_id if eos_id is not None else 0
    longest = int(best_len.max())
    generated = np.where(np.arange(longest) < best_len[:, None], best_tokens[:, :longest], fill)  # B,n
    return np.concatenate([prompt, generated], axis=1)


def _extend(decoder: Decoder, prompt: np.ndarray, max_new_tokens: int, pick: Callable[[np.ndarray], np.ndarray],
            eos_id: int | None, pad_id: int | None, progress: Progress | None) -> np.ndarray:
    """One token per row per step, chosen by `pick(logits [B, V]) -> [B]`; finished rows get pad tokens."""
    prompt = _prompt(prompt)
    _check_common(max_new_tokens, eos_id, pad_id)
    logits, state = decoder.start(prompt)  # B,V
    _check_logits(logits, len(prompt), "start", eos_id)
    done = np.zeros(len(prompt), dtype=bool)  # B
    new: list[np.ndarray] = []
    for t in range(1, max_new_tokens + 1):
        tokens = pick(logits).astype(np.int64)  # B
        if eos_id is not None:
            tokens = np.where(done, eos_id, tokens)  # finished rows are fed eos_id, their logits ignored
            done |= tokens == eos_id
        new.append(tokens)
        if progress is not None:
            progress(t)
        if t == max_new_tokens or done.all():
            break
        logits, state = decoder.step(tokens, state)
        _check_logits(logits, len(prompt), "step", eos_id)
    generated = np.stack(new, axis=1)  # B,n
    if eos_id is not None and pad_id is not None:
        eos = generated == eos_id  # B,n
        generated[np.cumsum(eos, axis=1) - eos > 0] = pad_id  # after the first eos_id
    return np.concatenate([prompt, generated], axis=1)


def _prompt(prompt: Any) -> np.ndarray:
    prompt = np.asarray(prompt)
    if prompt.ndim != 2 or prompt.dtype.kind not in "iu" or 0 in prompt.shape:
        raise ValueError(f"prompt must be a non-empty 2-D integer array [batch, tokens] with at least one token, got "
                         f"dtype {prompt.dtype} shape {prompt.shape}; wrap a single sequence as prompt[None]")
    return prompt.astype(np.int64)


def _check_common(max_new_tokens: int, eos_id: int | None, pad_id: int | None) -> None:
    if not isinstance(max_new_tokens, int | np.integer) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    if eos_id is not None and (not isinstance(eos_id, int | np.integer) or eos_id < 0):
        raise ValueError(f"eos_id must be a token id (an int >= 0) or None, got {eos_id!r}")
    if pad_id is not None and not isinstance(pad_id, int | np.integer):
        raise ValueError(f"pad_id must be an int or None (None pads with eos_id), got {pad_id!r}")


def _check_logits(logits: np.ndarray, rows: int, call: str, eos_id: int | None) -> int:
    """The vocabulary size V of logits [rows, V] from decoder.<call>, which must hold eos_id."""
    if logits.ndim != 2 or logits.shape[0] != rows:
        raise ValueError(f"decoder.{call} returned logits of shape {logits.shape}; the decoder must return "
                         f"[{rows}, vocab] for {rows} rows")
    if eos_id is not None and eos_id >= logits.shape[1]:
        raise ValueError(f"eos_id {eos_id} is not in the decoder's vocabulary of {logits.shape[1]} tokens")
    return logits.shape[1]


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)  # R,V
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
