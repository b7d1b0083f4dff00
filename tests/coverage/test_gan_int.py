"""GAN-INT (T2I-02, Reed et al. 2016): besides GAN-CLS, the generator is trained on interpolated caption embeddings,
-log D(G(z, t_int), t_int) with t_int = beta t_i + (1 - beta) t_(i-1). The `interpolate` fusion forms t_int, two
`rerun` heads pass it through the generator's and the discriminator's own networks, and the `g_int` objective joins
the generator's step: it changes the generator's gradients, never the discriminator's, adds no parameter and stays
out of the export."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from mmspec import api
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPEC = Path(__file__).resolve().parents[2] / "specs" / "gan_int_cls.yaml"


def _generator_step(trainer: Trainer, batch) -> tuple[int, dict[str, torch.Tensor]]:
    """The generator group's index and its losses on `batch`, in training mode."""
    index = next(i for i, g in enumerate(trainer.groups) if "g_loss" in g.losses)
    trainer.step_module.train()
    clean, student = trainer.prepare(batch, seed=0)
    return index, trainer.step_module(student.inputs, clean.inputs, student.targets, index)


def test_the_int_pass_interpolates_pairs_through_the_same_two_networks():
    loaded = api.load_spec(SPEC, "tiny")
    model = api.build(loaded).eval()
    inputs = synthetic_batch(loaded, 4, 0).inputs
    with torch.no_grad():
        values = model.node_values(inputs)
        t, z = inputs["text"], inputs["noise"]  # B,T / B,nz
        mixed = values["text_int"]["mixed"]  # B,T
        for i in range(4):  # example i with example i - 1, beta = 0.5
            torch.testing.assert_close(mixed[i], 0.5 * t[i] + 0.5 * t[i - 1], atol=1e-7, rtol=0)
        assert not torch.allclose(mixed, t)
        gen, disc = model.components["generator"], model.components["discriminator"]
        image = gen({"input": {"values": z}, "condition": {"values": mixed}})["image"]  # B,3,16,16
        assert torch.equal(values["generator_int"]["image"], image)
        assert not torch.allclose(image, values["generator"]["image"])
        scores = disc({"real": {"pixels": inputs["image"]}, "fake": {"image": image}, "condition": {"values": mixed}})
        assert torch.equal(values["discriminator_int"]["fake"], scores["fake"])


def test_the_int_term_adds_no_parameter_and_stays_out_of_the_export():
    loaded = api.load_spec(SPEC, "tiny")
    model = api.build(loaded)
    counts = api.param_counts(model)["by_component"]
    assert [counts[n] for n in ("text_int", "generator_int", "discriminator_int")] == [0, 0, 0]
    assert not [k for k in model.state_dict() if k.split(".")[1] in ("text_int", "generator_int", "discriminator_int")]
    (graph,) = loaded.plan.graphs
    assert [n.name for n in graph.nodes] == ["generator"]


def test_the_int_term_is_part_of_the_generator_step_and_moves_only_the_generator():
    loaded = api.load_spec(SPEC, "tiny")
    torch.manual_seed(0)
    trainer = Trainer(loaded, lr=3e-3)
    index, losses = _generator_step(trainer, synthetic_batch(loaded, 4, 0))
    group = trainer.groups[index]
    gen, disc = trainer.model.components["generator"], trainer.model.components["discriminator"]
    assert group.losses == ["g_loss", "g_int"] and trainer.weights["g_int"] == 0.5
    assert {id(p) for p in group.params} == {id(p) for p in gen.parameters()}
    params = list(gen.parameters())
    g_int = torch.autograd.grad(losses["g_int"], params, retain_graph=True, allow_unused=True)
    g_plain = torch.autograd.grad(losses["g_loss"], params, retain_graph=True, allow_unused=True)
    assert all(g is not None for g in g_int) and sum(g.abs().sum() for g in g_int) > 0
    assert any(not torch.allclose(a, b) for a, b in zip(g_int, g_plain, strict=True))
    # the term is the non-saturating generator loss on the discriminator's score of G(z, t_int) with t_int
    with torch.no_grad():
        values = trainer.model.node_values(trainer.prepare(synthetic_batch(loaded, 4, 0), seed=0)[1].inputs)
        expected = F.softplus(-values["discriminator_int"]["fake"]).mean()
    torch.testing.assert_close(losses["g_int"].detach(), expected, atol=1e-6, rtol=1e-5)
    d_grads = torch.autograd.grad(losses["g_int"], list(disc.parameters()), allow_unused=True)
    assert any(g is not None for g in d_grads)  # it flows through D, but D's step never takes it
    assert all("g_int" not in g.losses for i, g in enumerate(trainer.groups) if i != index)


def test_fit_trains_the_int_term():
    loaded = api.load_spec(SPEC, "tiny")
    torch.manual_seed(0)
    history = Trainer(loaded, lr=3e-3).fit(synthetic_batch(loaded, 4, 0), 4, seed=0)
    assert set(history.objectives) == {"d_loss", "g_loss", "g_int"}
    g_int = history.objectives["g_int"]
    assert all(torch.isfinite(torch.tensor(g_int))) and g_int[-1] != g_int[0]
    for k in range(4):  # the total is d_loss + g_loss + 0.5 g_int
        total = sum(history.objectives[n][k] * w for n, w in (("d_loss", 1), ("g_loss", 1), ("g_int", 0.5)))
        assert abs(history.losses[k] - total) < 1e-5
