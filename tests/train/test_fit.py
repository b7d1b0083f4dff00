"""`mmspec fit`: overfitting one batch, frozen parts, EMA teachers, alternating GAN updates, checkpoints,
batch files, usage errors."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from mmspec.api import build, load_spec
from mmspec.blocks.schedules import momentum
from mmspec.cli import run
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
SPECS = Path(__file__).parent / "specs"
BERT = str(ROOT / "specs" / "bert.yaml")


@pytest.mark.parametrize("name", ["bert", "clip", "vilbert"])
def test_fifty_steps_halve_the_loss_of_the_tiny_reference_specs(name, tmp_path):
    out = tmp_path / "fit.json"
    code = run(
        ["fit", str(ROOT / "specs" / f"{name}.yaml"), "--variant", "tiny", "--steps", "50", "--json", str(out), "-q"]
    )
    assert code == 0
    history = json.loads(out.read_text())
    assert list(history) == ["steps", "losses", "objectives"] and history["steps"] == 50
    spec = load_spec(ROOT / "specs" / f"{name}.yaml", "tiny").spec
    assert sorted(history["objectives"]) == sorted(spec.objectives)
    for k in (0, 49):  # the total is the weighted sum of the objectives
        total = sum(spec.objectives[n].weight * v[k] for n, v in history["objectives"].items())
        assert history["losses"][k] == pytest.approx(total, rel=1e-6)
    assert history["losses"][-1] < 0.5 * history["losses"][0], history["losses"][::10]


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_frozen_parts_stay_and_the_ema_teacher_follows_its_schedule():
    loaded = load_spec(SPECS / "byol.yaml")
    trainer = Trainer(loaded, lr=1e-2)
    model, teacher = trainer.model, trainer.model.objectives["teacher"]
    frozen = _params(model.components["text_tower"])
    optimized = {id(p) for opt in trainer.optimizers for group in opt.param_groups for p in group["params"]}
    assert not any(id(p) in optimized for p in model.components["text_tower"].parameters())
    assert not any(id(p) in optimized for p in teacher.parameters())
    students = {name: model.components[name] for name in ("online", "projector")}
    assert sorted(teacher.copies) == sorted(students)
    expected = {(n, k): v.detach().clone() for n, m in students.items() for k, v in m.named_parameters()}
    steps = 4

    def follow(k: int, values: dict) -> None:  # t <- tau_k t + (1 - tau_k) s, with s after step k
        tau = momentum(0.9, 1.0, "cosine", k, steps)
        assert teacher.tau == pytest.approx(tau)
        for (n, pname), t in expected.items():
            expected[(n, pname)] = tau * t + (1 - tau) * dict(students[n].named_parameters())[pname].detach()
        assert not model.components["text_tower"].training  # frozen parts run in eval mode

    history = trainer.fit(synthetic_batch(loaded, 4, 0), steps, seed=0, on_step=follow)
    assert all(math.isfinite(v) for v in history.losses)
    after = _params(model.components["text_tower"])
    assert all(torch.equal(frozen[k], after[k]) for k in frozen)
    for (n, pname), value in expected.items():
        got = dict(teacher.copies[n].named_parameters())[pname]
        torch.testing.assert_close(got, value, atol=1e-6, rtol=1e-5)
        assert not got.requires_grad
    moved = dict(teacher.copies["projector"].named_parameters())["mlp.0.weight"]
    assert not torch.equal(moved, dict(students["projector"].named_parameters())["mlp.0.weight"])
    for n, m in students.items():  # BatchNorm statistics are copied, not averaged
        for bname, buf in m.named_buffers():
            assert torch.equal(dict(teacher.copies[n].named_buffers())[bname], buf)


def test_data2vec_teacher_averages_the_layers_and_shares_the_embeddings():
    loaded = load_spec(SPECS / "data2vec.yaml")
    trainer = Trainer(loaded, lr=1e-2)
    student, teacher = trainer.model.components["student"], trainer.model.objectives["teacher"]
    expected = {k: v.detach().clone() for k, v in student.named_parameters() if k.startswith("layers.")}

    def follow(k: int, values: dict) -> None:
        tau = momentum(0.99, 0.999, "linear", k, 10)
        for name in expected:
            expected[name] = tau * expected[name] + (1 - tau) * dict(student.named_parameters())[name].detach()

    history = trainer.fit(synthetic_batch(loaded, 4, 0), 3, seed=0, on_step=follow)
    assert history.losses[-1] < history.losses[0]
    copy_params = dict(teacher.copies["student"].named_parameters())
    for name, p in student.named_parameters():
        if name.startswith("layers."):
            torch.testing.assert_close(copy_params[name], expected[name], atol=1e-6, rtol=1e-5)
        else:
            assert torch.equal(copy_params[name], p.detach()), name


def test_gan_objectives_alternate_discriminator_then_generator():
    loaded = load_spec(SPECS / "gan.yaml")
    lr = 0.05
    trainer = Trainer(loaded, lr=lr)
    assert [g.losses for g in trainer.groups] == [["d_loss", "r1"], ["g_loss"]]
    model = trainer.model
    assert {id(p) for p in trainer.groups[0].params} == {id(p) for p in model.components["critic"].parameters()}
    assert {id(p) for p in trainer.groups[1].params} == {id(p) for p in model.components["generator"].parameters()}
    batch = synthetic_batch(loaded, 6, 0)
    ref = copy.deepcopy(model)
    clean, student = trainer.prepare(batch, seed=0)
    trainer.fit(batch, 1, seed=0)

    # by hand: a discriminator step (adversarial loss + R1), then a generator step against the updated critic
    from mmspec.components.objectives.runtime import StepContext

    def args(values, *pairs):
        return {port: {fld: values[node][fld]} for port, node, fld in pairs}

    opt_d = torch.optim.AdamW(ref.components["critic"].parameters(), lr=lr)
    v = ref.node_values(student.inputs)
    d = ref.objectives["d_loss"](
        args(v, ("real", "critic", "real"), ("fake", "critic", "fake"), ("mismatched", "critic", "mismatched")), {}
    )
    r1 = ref.objectives["r1"].run(StepContext(args(v, ("input", "critic", "real")), {}, clean.inputs, student.inputs))
    (d + r1).backward()
    opt_d.step()
    for p, q in zip(ref.components["critic"].parameters(), model.components["critic"].parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
    opt_g = torch.optim.AdamW(ref.components["generator"].parameters(), lr=lr)
    ref.zero_grad()
    v = ref.node_values(student.inputs)
    ref.objectives["g_loss"](args(v, ("fake", "critic", "fake")), {}).backward()
    opt_g.step()
    for p, q in zip(ref.components["generator"].parameters(), model.components["generator"].parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("spec", ["zoo", "simclr"])
def test_every_objective_trains(spec):
    loaded = load_spec(SPECS / f"{spec}.yaml")
    history = Trainer(loaded, lr=3e-3).fit(synthetic_batch(loaded, 4, 0), 12, seed=0)
    assert sorted(history.objectives) == sorted(n for n in loaded.spec.objectives if n != "drop")
    assert all(math.isfinite(v) for values in history.objectives.values() for v in values)
    assert history.losses[-1] < history.losses[0]


def test_resample_draws_new_masks_every_step(tmp_path):
    fixed, fresh = tmp_path / "fixed.json", tmp_path / "fresh.json"
    common = ["fit", BERT, "-v", "tiny", "--steps", "2", "--lr", "0", "-q"]
    assert run([*common, "--json", str(fixed)]) == 0 and run([*common, "--resample", "--json", str(fresh)]) == 0
    fixed_mlm = json.loads(fixed.read_text())["objectives"]["mlm_loss"]
    fresh_mlm = json.loads(fresh.read_text())["objectives"]["mlm_loss"]
    assert fixed_mlm[0] == fresh_mlm[0]
    assert fixed_mlm[1] != fresh_mlm[1]  # lr 0: only the masks can change the loss (dropout is seeded alike)


def test_checkpoint_and_resolved_spec_load_back(tmp_path):
    assert (
        run(
            ["fit", BERT, "-v", "tiny", "--set", "encoders.bert.layers=1", "--steps", "2", "--out", str(tmp_path), "-q"]
        )
        == 0
    )
    from safetensors import safe_open
    from safetensors.torch import load_file

    weights, spec = tmp_path / "bert-tiny.safetensors", tmp_path / "bert-tiny.spec.yaml"
    with safe_open(str(weights), "pt") as f:
        meta = f.metadata()
    aliases = json.loads(meta["aliases"])
    assert aliases == {"components.mlm.weight": "components.bert.embed.word.weight"}  # tied: stored once
    reloaded = load_spec(spec)
    assert reloaded.sha256 == load_spec(BERT, "tiny", ["encoders.bert.layers=1"]).sha256 == meta["spec_sha256"]
    state = load_file(str(weights))
    assert any(k.startswith("optimizer.0.components.bert.") for k in state)  # AdamW state, for fit --resume
    state = {k: v for k, v in state.items() if not k.startswith("optimizer.")}
    state.update({alias: state[source] for alias, source in aliases.items()})
    model = build(reloaded)
    fresh = _params(model)
    model.load_state_dict(state)  # strict: every name and shape of the resolved spec
    assert not torch.equal(fresh["components.nsp.mlp.0.weight"], model.state_dict()["components.nsp.mlp.0.weight"])


def test_batch_file_is_the_same_batch(tmp_path, capsys):
    from safetensors.torch import save_file

    batch = synthetic_batch(load_spec(BERT, "tiny"), 4, seed=3)
    tensors = {**batch.inputs, **{f"{o}.{k}": v for o, t in batch.targets.items() for k, v in t.items()}}
    save_file(tensors, str(tmp_path / "batch.safetensors"))
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    common = ["fit", BERT, "-v", "tiny", "--steps", "3", "--seed", "3", "-q"]
    assert run([*common, "--batch", "4", "--json", str(a)]) == 0
    assert run([*common, "--batch-file", str(tmp_path / "batch.safetensors"), "--json", str(b)]) == 0
    assert json.loads(a.read_text()) == json.loads(b.read_text())
    del tensors["nsp_loss.labels"]
    save_file(tensors, str(tmp_path / "bad.safetensors"))
    capsys.readouterr()
    assert run([*common, "--batch-file", str(tmp_path / "bad.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "missing nsp_loss.labels" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--nproc", "2", "--batch", "3"], "does not split evenly"),
        (["--fsdp"], "--fsdp shards over several processes"),
        (["--variant", "tiyn"], "unknown variant"),
    ],
)
def test_usage_errors_exit_2(extra, needle, capsys):
    assert run(["fit", BERT, "--steps", "1", "-q", *extra]) == 2
    assert needle in capsys.readouterr().err


def test_a_spec_without_losses_is_a_usage_error(tmp_path, capsys):
    spec = tmp_path / "plain.yaml"
    spec.write_text(
        "mmspec: 1\nname: plain\nmodalities:\n  x: {type: vector, dim: 3}\n"
        "heads:\n  out: {type: classifier, input: x, num_classes: 2}\n"
    )
    assert run(["fit", str(spec), "--steps", "1"]) == 2
    assert "declares no loss objective" in capsys.readouterr().err
