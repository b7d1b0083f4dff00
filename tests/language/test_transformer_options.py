"""Transformer options of issue 8: `embed: sequence`, cross-attention (plain and gated), MAE token dropping and
mask tokens, frozen stacks inside a component, ViLBERT's repeated co-attention ids. Each tiny spec compiles and
verifies; the numerical claims behind each option are checked on small modules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmspec import api
from mmspec.blocks.embeddings import SequenceEmbedding, drop_tokens
from mmspec.blocks.transformer import is_frozen
from mmspec.errors import SpecError
from mmspec.graph.capture import example_call
from mmspec.graph.inputs import make_inputs, trace_sizes
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPECS = Path(__file__).parent / "specs"
OWN = ["embed_sequence", "cross_attention", "gated_frozen_lm", "mae", "frozen_stream"]


@pytest.mark.parametrize("name", OWN)
def test_spec_compiles_and_verifies(name, tmp_path):
    report = api.compile(SPECS / f"{name}.yaml", out_dir=tmp_path)
    assert report["verification"]["passed"]
    assert (tmp_path / f"{name}.onnx").exists()


def _model(name: str):
    loaded = api.load_spec(SPECS / f"{name}.yaml")
    return loaded, api.build(loaded)


# --- MAE token dropping and mask tokens ---------------------------------------------------------------------


def test_drop_tokens_training_keeps_a_random_subset_and_restore_inverts_it():
    x = torch.arange(2 * 9 * 3, dtype=torch.float32).view(2, 9, 3)  # class token + 8 patches
    torch.manual_seed(5)
    kept, restore, dropped = drop_tokens(x, 1, 8, 2, training=True)
    assert kept.shape == (2, 3, 3)
    assert torch.equal(kept[:, 0], x[:, 0])  # class token always kept
    assert restore.dtype == dropped.dtype == torch.int64
    assert torch.equal(dropped.sum(1), torch.tensor([6, 6]))
    for b in range(2):
        assert sorted(restore[b].tolist()) == list(range(8))  # a permutation
        for j in range(8):  # token j sits at restore[b, j] of the kept-then-dropped order
            if restore[b, j] < 2:
                assert torch.equal(kept[b, 1 + restore[b, j]], x[b, 1 + j])
                assert dropped[b, j] == 0
            else:
                assert dropped[b, j] == 1
    torch.manual_seed(5)
    again = drop_tokens(x, 1, 8, 2, training=True)
    assert all(torch.equal(a, b) for a, b in zip(again, (kept, restore, dropped), strict=True))
    torch.manual_seed(6)
    assert not torch.equal(drop_tokens(x, 1, 8, 2, training=True)[1], restore)


def test_drop_tokens_eval_is_the_identity():
    x = torch.randn(3, 9, 4)
    out, restore, dropped = drop_tokens(x, 1, 8, 2, training=False)
    assert out is x
    assert torch.equal(restore, torch.arange(8).expand(3, 8))
    assert not dropped.any()


def test_mask_tokens_fill_dropped_positions_in_original_order():
    torch.manual_seed(0)
    emb = SequenceEmbedding(4, 4, 0, False, 1e-6, 0.0, mask_token=True, prefix=1).eval()
    x = torch.randn(2, 9, 4)
    torch.manual_seed(1)
    kept, restore, dropped = drop_tokens(x, 1, 8, 3, training=True)
    y = emb(kept, restore)  # B,9,4
    assert y.shape == (2, 9, 4)
    torch.testing.assert_close(y[:, 0], x[:, 0], atol=0, rtol=0)
    for b in range(2):
        for j in range(8):
            want = emb.mask_token if dropped[b, j] else x[b, 1 + j]
            torch.testing.assert_close(y[b, 1 + j], want, atol=0, rtol=0)


def test_mae_training_path_drops_tokens_is_seeded_and_fx_capturable():
    loaded, model = _model("mae")
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=0)
    model.train()
    torch.manual_seed(3)
    values = model.node_values(inputs)
    enc = values["encoder"]
    assert enc["sequence"].shape[1] == 1 + 4  # class token + 25 % of 16 patches
    assert torch.equal(enc["dropped"].sum(1), torch.full((enc["dropped"].shape[0],), 12))
    assert values["decoder"]["sequence"].shape[1] == 17
    values["pixels"]["embedding"].square().mean().backward()
    assert model.components["decoder"].embed.mask_token.grad.abs().sum() > 0
    gm = api.capture(model)  # the training graph traces too, random draw included
    assert any(n.target is torch.rand_like for n in gm.graph.nodes)
    with torch.no_grad():
        torch.manual_seed(3)
        eager = model(inputs)
        torch.manual_seed(3)
        traced = example_call(gm, inputs)
        torch.manual_seed(4)
        other = model(inputs)
    assert all(torch.equal(a, b) for a, b in zip(eager, traced, strict=True))
    assert not torch.equal(eager[1], other[1])  # encoder.dropped differs under another seed


def test_mae_eval_keeps_every_token():
    loaded, model = _model("mae")
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=0)
    with torch.no_grad():
        enc = model.node_values(inputs)["encoder"]
    assert enc["sequence"].shape[1] == 17
    assert torch.equal(enc["restore"], torch.arange(16).expand_as(enc["restore"]))
    assert not enc["dropped"].any()


# --- cross-attention ----------------------------------------------------------------------------------------


def test_cross_attention_ignores_padded_context():
    loaded, model = _model("cross_attention")
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=0)
    inputs["regions_mask"][:, -2:] = 0
    inputs["regions_mask"][:, 0] = 1
    changed = dict(inputs, regions=inputs["regions"].clone())
    changed["regions"][:, -2:] += 10.0
    with torch.no_grad():
        a, b = model(inputs), model(changed)
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=1e-5)
    changed["regions"][:, 0] += 10.0
    with torch.no_grad():
        assert (model(changed)[0] - a[0]).abs().max() > 1e-3  # the context does matter


def test_gated_cross_attention_starts_as_the_stack_without_it():
    loaded, model = _model("gated_frozen_lm")
    plain = api.load_spec(SPECS / "gated_frozen_lm.yaml", sets=["encoders.lm.cross=null"])
    other = api.build(plain)
    other.load_state_dict(model.state_dict(), strict=False)
    assert {k for k in model.state_dict() if k not in other.state_dict()} == {
        k for k in model.state_dict() if ".cross_" in k
    }
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=0)
    with torch.no_grad():
        torch.testing.assert_close(model(inputs)[0], other(inputs)[0], atol=0, rtol=0)
        for layer in model.components["lm"].layers[::2]:
            layer.cross_res.gate.fill_(0.5)
        assert (model(inputs)[0] - other(inputs)[0]).abs().max() > 1e-4


# --- frozen stacks inside a component -------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "node", "frozen_prefix"), [
    ("gated_frozen_lm", "lm", ("layers.", "final_norm.")),
    ("frozen_stream", "co", ("text_layers.",)),
])
def test_frozen_stack_gets_no_gradients_runs_in_eval_and_counts_as_frozen(name, node, frozen_prefix):
    loaded = api.load_spec(SPECS / f"{name}.yaml")
    torch.manual_seed(0)
    trainer = Trainer(loaded)
    module = trainer.model.components[node]
    params = dict(module.named_parameters())
    frozen = {k for k, p in params.items() if not p.requires_grad}
    assert frozen and all(k.startswith(frozen_prefix) and ".cross_" not in k for k in frozen)
    assert all(p.requires_grad for k, p in params.items() if ".cross_" in k)
    in_optimizer = {id(p) for g in trainer.optimizers for group in g.param_groups for p in group["params"]}
    assert not any(id(params[k]) in in_optimizer for k in frozen)
    before = {k: p.detach().clone() for k, p in params.items()}
    trainer.fit(synthetic_batch(loaded, 4, 0), 2, 0)
    assert all(torch.equal(before[k], params[k]) for k in frozen)
    assert any(not torch.equal(before[k], params[k]) for k in set(params) - frozen)
    parts = [m for m in module.modules() if is_frozen(m)]
    assert parts and not any(m.training for p in parts for m in p.modules())
    assert module.training  # the rest of the component trains
    counts = api.param_counts(api.build(loaded, device="meta"))
    n_frozen = sum(params[k].numel() for k in frozen)
    others = sum(p.numel() for n, m in trainer.model.components.items() if not loaded.plan.node(n).config.trainable
                 for p in m.parameters())
    assert counts["trainable"] == counts["total"] - n_frozen - others


# --- co-attention schedules -----------------------------------------------------------------------------------


def _official_order(t_ids: list[int], v_ids: list[int], t_layers: int, v_layers: int) -> list[str]:
    """The layer calls of vilbert-multi-task's BertEncoder.forward: before co block k, the layers from the previous
    id up to (excluding) the k-th id of each stream (the official code runs the vision ones first; the streams
    do not meet before the block, so the text-first order below computes the same), then the rest."""
    calls, ts, vs = [], 0, 0
    for k, (te, ve) in enumerate(zip(t_ids, v_ids, strict=True)):
        calls += [f"t{i}" for i in range(ts, te)] + [f"v{i}" for i in range(vs, ve)] + [f"c{k}"]
        ts, vs = te, ve
    return calls + [f"t{i}" for i in range(ts, t_layers)] + [f"v{i}" for i in range(vs, v_layers)]


@pytest.mark.parametrize(("t_ids", "v_ids", "t_layers", "v_layers"), [
    ([1, 2, 3, 4], [0, 0, 2, 2], 4, 3),  # the spec as written
    ([1, 2, 3, 4, 5, 6], [0, 0, 1, 2, 2, 3], 6, 4),  # the official v_biattention_id for a 4-layer visual stream
])
def test_repeated_co_attention_ids_run_every_layer_exactly_once_in_order(t_ids, v_ids, t_layers, v_layers):
    sets = [f"fusion.co.text.layers={t_layers}", f"fusion.co.vision.layers={v_layers}",
            f"fusion.co.co.text_layers={t_ids}", f"fusion.co.co.vision_layers={v_ids}"]
    loaded = api.load_spec(SPECS / "frozen_stream.yaml", sets=sets)
    model = api.build(loaded)
    co = model.components["co"]
    calls: list[str] = []
    for stream in ("text_layers", "vision_layers", "co_layers"):
        for i, layer in enumerate(getattr(co, stream)):
            layer.register_forward_hook(lambda m, a, o, tag=f"{stream[0]}{i}": calls.append(tag))
    with torch.no_grad():
        model(make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=0))
    assert calls == _official_order(t_ids, v_ids, t_layers, v_layers)
    for prefix, n in (("t", t_layers), ("v", v_layers), ("c", len(t_ids))):  # none twice, none skipped
        assert sorted(c for c in calls if c[0] == prefix) == sorted(f"{prefix}{i}" for i in range(n))
    if v_ids == [0, 0, 2, 2]:
        assert calls == ["t0", "c0", "t1", "c1", "t2", "v0", "v1", "c2", "t3", "c3", "v2"]


def test_co_attention_ids_must_not_decrease(tmp_path):
    spec = (SPECS / "frozen_stream.yaml").read_text()
    spec = spec.replace("vision_layers: [0, 0, 2, 2]", "vision_layers: [0, 2, 1, 2]")
    path = tmp_path / "bad.yaml"
    path.write_text(spec)
    with pytest.raises(SpecError) as e:
        api.load_spec(path)
    assert "non-decreasing" in str(e.value)


def test_a_tokens_embedding_reads_a_modality_not_a_node():
    """The token table is sized by the modality's vocab_size: ids from a node are a located error (the fuzzer
    drew one and the planner failed with a KeyError)."""
    from mmspec.registry import get_component
    from mmspec.spec.model import PlanContext
    from mmspec.spec.tensors import CheckError, TensorInfo

    cfg = get_component("transformer", "encoders").config.model_validate(
        {"type": "transformer", "input": "codes_1.ids", "embed": {"type": "tokens", "positions": 8}, "width": 8,
         "layers": 1, "heads": 2, "ffn": 16})
    spec = type("Spec", (), {"modalities": {}, "encoders": {}})()
    with pytest.raises(CheckError, match="'codes_1.ids' is the output of a node") as e:
        cfg.infer({"input": {"ids": TensorInfo(("batch", 4), "int64")}}, PlanContext(spec, {}))
    assert e.value.field == ("input",)
