"""Corruption statistics of objectives built from specs (issue 19): masks, noise and negatives drawn by
`corrupt` on a large batch follow the spec's probabilities (within 5 binomial standard deviations), never
touch padded positions, and leave everything they did not choose unchanged.

Each objective comes from a real spec (or its registry example) with non-default probabilities set through
`--set` overrides, so a module wired with the wrong field (e.g. `random_prob` for `mask_prob`) is caught.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mmspec.api import build, load_spec
from mmspec.components.objectives.runtime import Batch
from mmspec.registry import components
from mmspec.spec.yaml_safe import dump_spec

SIGMAS = 5.0


def assert_rate(hits: torch.Tensor, trials: int, p: float) -> None:
    """hits / trials is within SIGMAS binomial standard deviations of p."""
    got = float(hits) / trials
    bound = SIGMAS * math.sqrt(p * (1 - p) / trials)
    assert abs(got - p) <= bound, f"rate {got:.4f} over {trials} trials, expected {p} +- {bound:.4f}"


def _objective(spec: str, name: str, sets: list[str]):
    loaded = load_spec(spec, "tiny", sets)
    return build(loaded).objectives[name]


def _padding(b: int, s: int, g: torch.Generator) -> torch.Tensor:
    """Masks [b, s] of random lengths 1..s (valid first, then padding)."""
    lengths = torch.randint(1, s + 1, (b, 1), generator=g)
    return (torch.arange(s) < lengths).long()


def test_masked_lm_rate_padding_and_80_10_10():
    mask_prob, random_prob, keep_prob, mask_token = 0.3, 0.2, 0.1, 7
    module = _objective("specs/bert.yaml", "mlm_loss", [f"objectives.mlm_loss.mask_prob={mask_prob}",
                        f"objectives.mlm_loss.random_prob={random_prob}", f"objectives.mlm_loss.keep_prob={keep_prob}",
                        f"objectives.mlm_loss.mask_token={mask_token}"])  # fmt: skip
    vocab = load_spec("specs/bert.yaml", "tiny").spec.modalities["text"].vocab_size
    g = torch.Generator().manual_seed(0)
    b, s = 512, 32
    ids = torch.randint(mask_token + 1, vocab, (b, s), generator=g)  # never the mask token itself
    valid = _padding(b, s, g)
    batch = Batch({"text": ids, "text_mask": valid}, {})
    labels = module.corrupt(batch, torch.Generator().manual_seed(1))["labels"]
    out, chosen = batch.inputs["text"], labels != -100
    assert not (chosen & ~valid.bool()).any(), "a padded position was chosen"
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(out[~chosen], ids[~chosen])
    assert_rate(chosen.sum(), int(valid.sum()), mask_prob)
    n = int(chosen.sum())
    to_mask, same = (out[chosen] == mask_token), (out[chosen] == ids[chosen])
    assert_rate(to_mask.sum(), n, 1 - random_prob - keep_prob + random_prob / vocab)
    assert_rate(same.sum(), n, keep_prob + random_prob / vocab)
    assert_rate((~to_mask & ~same).sum(), n, random_prob * (vocab - 2) / vocab)


def test_masked_region_kl_rate_padding_and_zeroing():
    mask_prob, zero_prob = 0.35, 0.6
    sets = [f"objectives.region_loss.mask_prob={mask_prob}", f"objectives.region_loss.zero_prob={zero_prob}"]
    module = _objective("specs/vilbert.yaml", "region_loss", sets)
    g = torch.Generator().manual_seed(0)
    b, r, f = 512, 16, 5
    x = torch.rand(b, r, f, generator=g) + 1  # never zero
    valid = _padding(b, r, g)
    batch = Batch({"image": x, "image_mask": valid}, {})
    masked = module.corrupt(batch, torch.Generator().manual_seed(1))["masked"]
    out = batch.inputs["image"]
    assert not (masked & ~valid.bool()).any(), "a padded region was masked"
    assert_rate(masked.sum(), int(valid.sum()), mask_prob)
    zeroed = (out == 0).all(-1)
    assert not (zeroed & ~masked).any()
    assert torch.equal(out[~zeroed], x[~zeroed])
    assert_rate(zeroed.sum(), int(masked.sum()), zero_prob)


def test_alignment_negatives():
    prob = 0.3
    module = _objective("specs/visualbert.yaml", "sentence_image_loss",
                        [f"objectives.sentence_image_loss.negative_prob={prob}"])  # fmt: skip
    b = 2000
    image = torch.arange(b, dtype=torch.float32).view(b, 1, 1).expand(b, 3, 4).clone()  # row i holds i
    mask = torch.arange(b).view(b, 1).expand(b, 3).clone()
    text = torch.zeros(b, 5, dtype=torch.int64)
    batch = Batch({"image": image, "image_mask": mask, "text": text}, {})
    labels = module.corrupt(batch, torch.Generator().manual_seed(1))["labels"]
    source = batch.inputs["image"][:, 0, 0].long()
    assert torch.equal(batch.inputs["image_mask"][:, 0], source), "features and mask of one modality move together"
    assert torch.equal(batch.inputs["text"], text)
    rows = torch.arange(b)
    assert torch.equal(source == rows, labels == 1), "label 1 exactly where the row kept its own image"
    assert_rate((labels == 0).sum(), b, prob)


def test_span_corruption_density_and_padding():
    density, mean_span, first, pad = 0.4, 2.0, 63, 0
    module = _objective("specs/t5.yaml", "span_corruption", [f"objectives.span_corruption.noise_density={density}",
                        f"objectives.span_corruption.mean_span={mean_span}"])  # fmt: skip
    g = torch.Generator().manual_seed(0)
    b, s = 300, 12
    ids = torch.randint(1, 40, (b, s), generator=g)  # ordinary tokens: below the sentinels, never pad
    valid = _padding(b, s, g)
    ids = ids.masked_fill(~valid.bool(), 50)  # padded content that must never be read
    batch = Batch({"source": ids, "source_mask": valid, "target": torch.zeros(b, 2 * s, dtype=torch.int64),
                   "target_mask": torch.ones(b, 2 * s, dtype=torch.int64)}, {})  # fmt: skip
    labels = module.corrupt(batch, torch.Generator().manual_seed(1))["labels"]
    enc, enc_mask = batch.inputs["source"], batch.inputs["source_mask"]
    noise_total = 0
    for row in range(b):
        n = int(valid[row].sum())
        tokens = ids[row, :n]
        source = enc[row][enc_mask[row].bool()]
        target = labels[row][labels[row] != -100]
        assert 50 not in source.tolist() and 50 not in target.tolist(), "padded content was read"
        if n < 2:
            assert torch.equal(source, tokens)
            continue
        kept, noise = source[source < 40], target[target < 40]
        for sentinels in (source[source >= 40], target[target >= 40]):  # first, first - 1, ... in order
            assert sentinels.tolist() == list(range(first, first - len(sentinels), -1))
        assert sorted(kept.tolist() + noise.tolist()) == sorted(tokens.tolist())
        assert len(noise) == min(max(round(n * density), 1), n - 1)
        noise_total += len(noise)
    assert (enc[~enc_mask.bool()] == pad).all()
    lengths = valid.sum(1)
    assert_rate(noise_total, int(lengths[lengths >= 2].sum()), density)


def test_diffusion_timesteps_and_noise():
    steps, beta_start, beta_end = 50, 0.001, 0.05
    module = _objective("specs/ddpm.yaml", "eps_mse", [f"objectives.eps_mse.schedule.steps={steps}",
                        f"objectives.eps_mse.schedule.beta_start={beta_start}",
                        f"objectives.eps_mse.schedule.beta_end={beta_end}"])  # fmt: skip
    b = 4000
    x0 = torch.rand(b, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    batch = Batch({"x_t": x0, "timestep": torch.zeros(b, dtype=torch.int64)}, {})
    derived = module.corrupt(batch, torch.Generator().manual_seed(1))
    t, eps = derived["timestep"], derived["noise"]
    assert torch.equal(batch.inputs["timestep"], t) and batch.inputs["timestep"].dtype == torch.int64
    assert int(t.min()) == 0 and int(t.max()) == steps - 1
    counts = torch.bincount(t, minlength=steps)
    for value in (0, steps // 2, steps - 1):
        assert_rate(counts[value], b, 1 / steps)
    assert_rate((t < steps // 2).sum(), b, (steps // 2) / steps)
    alpha_bar = np.cumprod(1 - np.linspace(beta_start, beta_end, steps))  # DDPM's linear schedule, float64
    ab = torch.from_numpy(alpha_bar[t.numpy()]).float().view(b, 1, 1, 1)
    torch.testing.assert_close(batch.inputs["x_t"], ab.sqrt() * x0 + (1 - ab).sqrt() * eps, atol=1e-6, rtol=1e-5)
    assert abs(float(eps.mean())) < SIGMAS / math.sqrt(eps.numel())
    assert abs(float(eps.std()) - 1) < 0.02


def test_modality_dropout_rate_and_fill(tmp_path):
    prob = 0.3
    component = components("objectives")["modality_dropout"]
    tree = component.examples[0].spec(component)
    tree["modalities"]["c"] = {"type": "tokens", "vocab_size": 9, "max_length": 4, "mask": True}
    tree["objectives"]["probe"].update(modalities=["a", "b", "c"], prob=prob, pad=2)
    path = tmp_path / "dropout.yaml"
    path.write_text(dump_spec(tree))
    module = build(load_spec(path)).objectives["probe"]
    g = torch.Generator().manual_seed(0)
    b = 4000
    inputs = {"a": torch.rand(b, 6, generator=g) + 1, "b": torch.rand(b, 5, generator=g) + 1,
              "c": torch.randint(3, 9, (b, 4), generator=g), "c_mask": torch.ones(b, 4, dtype=torch.int64)}  # fmt: skip
    batch = Batch(dict(inputs), {})
    dropped = module.corrupt(batch, torch.Generator().manual_seed(1))["dropped"]
    out = batch.inputs
    assert not dropped.all(1).any(), "an example lost every modality"
    for k, (names, fill) in enumerate([(["a"], 0), (["b"], 0), (["c"], 2), (["c_mask"], 0)]):
        column = dropped[:, min(k, 2)]
        for name in names:
            assert (out[name][column] == fill).all() and torch.equal(out[name][~column], inputs[name][~column])
    for k in range(3):  # all three drawn (p^3), then one of them, chosen uniformly, kept
        assert_rate(dropped[:, k].sum(), b, prob - prob**3 / 3)
