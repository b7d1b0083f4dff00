"""MP-01 sparsely-gated mixture of experts (specs/moe.yaml, mmspec/blocks/moe.py): routing against a loop
reference and transformers' Switch router, the exported graph equal to eager for every routing outcome (capacity
overflow included), noise only while training, parameter parity (total and active per token), and `fit`.
MP-08 LIMoE (specs/limoe.yaml): one shared tower per modality, the entropy losses, the H/14 count, and `fit`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import transformers as tf
from references import reference_count
from transformers.models.switch_transformers import modeling_switch_transformers as switch

from mmspec import api
from mmspec.blocks.moe import MixtureOfExperts, route
from mmspec.cli import run
from mmspec.components.objectives.moe_entropy.loss import MoEEntropy
from mmspec.errors import SpecError
from mmspec.graph.inputs import make_inputs

ROOT = Path(__file__).resolve().parents[2]
MOE = ROOT / "specs" / "moe.yaml"
LIMOE = ROOT / "specs" / "limoe.yaml"
ATOL = 1e-5


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _route_loop(logits: torch.Tensor, top_k: int, capacity_factor, renormalize: bool, priority: str) -> torch.Tensor:
    """Token-by-token routing, written independently of `route`: each token's choices in rank order, the
    buffers of the experts filled in priority order until full."""
    n, e = logits.shape
    probs = torch.softmax(logits.double(), -1)
    chosen = [sorted(range(e), key=lambda j, i=i: -probs[i, j].item())[:top_k] for i in range(n)]
    order = sorted(range(n), key=lambda i: -probs[i, chosen[i][0]].item()) if priority == "score" else range(n)
    capacity = math.inf if capacity_factor is None else math.ceil(capacity_factor * n * top_k / e)
    used = [0] * e
    out = torch.zeros(n, e, dtype=torch.float64)
    for k in range(top_k):
        for i in order:
            j = chosen[i][k]
            if used[j] < capacity:
                used[j] += 1
                total = sum(probs[i, c] for c in chosen[i]) if renormalize else 1.0
                out[i, j] = probs[i, j] / total
    return out


@pytest.mark.parametrize(
    ("top_k", "capacity_factor", "renormalize", "priority"),
    [(2, None, True, "order"), (2, 0.5, True, "order"), (1, 0.75, False, "order"), (2, 0.6, False, "score"),
     (3, 1.0, True, "score")],
)
def test_route_equals_the_loop_reference(top_k, capacity_factor, renormalize, priority):
    g = torch.Generator().manual_seed(top_k)
    dropped = 0
    for n in (1, 7, 24):
        logits = torch.randn(n, 5, generator=g) * 2  # N,E
        ours = route(logits, top_k, capacity_factor, renormalize, priority)
        reference = _route_loop(logits, top_k, capacity_factor, renormalize, priority)
        torch.testing.assert_close(ours.double(), reference, atol=1e-6, rtol=0)
        dropped += n * top_k - int((reference > 0).sum())
    if capacity_factor is None or capacity_factor < 1:  # unlimited buffers drop nothing; short ones must drop
        assert (dropped > 0) == (capacity_factor is not None)


def test_top1_capacity_routing_equals_transformers_switch_router():
    """Per sequence with capacity 2 (= ceil(0.5 * 12 / 4)): the same experts kept, the same gates."""
    config = tf.SwitchTransformersConfig(d_model=8, num_experts=4, expert_capacity=2, router_jitter_noise=0.0)
    router = switch.SwitchTransformersTop1Router(config).eval()
    with torch.no_grad():
        router.classifier.weight.normal_(0, 2.0, generator=torch.Generator().manual_seed(0))
        x = torch.randn(3, 12, 8, generator=torch.Generator().manual_seed(1))  # B,S,D
        index, probs, logits = router(x)  # B,S,E; B,S,1; B,S,E
    for b in range(3):
        ours = route(logits[b], 1, 0.5, renormalize=False)  # S,E
        torch.testing.assert_close(ours, index[b].float() * probs[b], atol=1e-6, rtol=0)
    assert 0 < int(index.sum()) < 3 * 12  # some tokens overflowed


def test_dropped_tokens_pass_through_and_experts_are_dense_ffns():
    moe = MixtureOfExperts(6, 10, 3, 1, "relu", capacity_factor=0.4).eval()
    x = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(2))  # B,S,D
    with torch.no_grad():
        y, logits = moe(x)  # B,S,D; B,S,E
        combine = route(logits.view(-1, 3), 1, 0.4)  # N,E
        kept = combine.sum(-1) > 0  # N
        assert 0 < int(kept.sum()) < 10
        tokens, out = x.view(-1, 6), y.view(-1, 6)
        assert torch.equal(out[~kept], torch.zeros_like(out[~kept]))
        for i in kept.nonzero().flatten().tolist():
            e = int(combine[i].argmax())
            dense = torch.relu(tokens[i] @ moe.fc1[e]) @ moe.fc2[e]  # D
            torch.testing.assert_close(out[i], dense, atol=1e-6, rtol=1e-5)  # renormalised top-1 gate is 1


def test_noise_acts_only_while_training():
    moe = MixtureOfExperts(6, 10, 4, 2, "relu", noise=True)
    x = torch.randn(2, 5, 6)  # B,S,D
    with torch.no_grad():
        a, b = moe.train()(x)[1], moe(x)[1]
        assert not torch.equal(a, b)
        c, d = moe.eval()(x)[1], moe(x)[1]
    assert torch.equal(c, d) and torch.equal(c, moe.router(x))


@pytest.mark.parametrize(
    "sets",
    [[], ["encoders.moe.moe.capacity_factor=null"],
     ["encoders.moe.moe.top_k=1", "encoders.moe.moe.priority=score", "encoders.moe.moe.renormalize=false"]],
    ids=["overflow", "no_capacity", "top1_priority"],
)
def test_onnx_equals_eager_for_every_routing_outcome(sets, tmp_path):
    loaded = api.load_spec(MOE, "tiny", sets)
    model = api.build(loaded).eval()
    path = tmp_path / "moe.onnx"
    api.export(api.optimize(api.capture(model))[0], loaded, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    m = loaded.spec.encoders["moe"].moe
    dropped = whole = 0
    for seed, (batch, length) in enumerate([(1, 3), (2, 16), (3, 11), (4, 16)]):
        inputs = make_inputs(loaded.plan, {"batch": batch, "seq": length}, seed=seed)
        with torch.no_grad():
            eager = dict(zip(model.output_names, model(inputs), strict=True))
        theirs = dict(zip(model.output_names, session.run(None, {k: v.numpy() for k, v in inputs.items()}),
                          strict=True))
        for name, value in eager.items():
            np.testing.assert_allclose(theirs[name], value.numpy(), atol=ATOL, rtol=1e-4, err_msg=name)
        layers = len(m.layers_of(loaded.spec.encoders["moe"].layers))
        routers = zip(torch.from_numpy(theirs["moe_router"]).chunk(layers, 1), eager["moe_router"].chunk(layers, 1),
                      strict=True)
        for onnx_logits, eager_logits in routers:  # B,S,E of one MoE layer each
            ours, same = (route(x.reshape(-1, m.experts), m.top_k, m.capacity_factor, m.renormalize, m.priority)
                          for x in (onnx_logits, eager_logits))  # N,E
            assert torch.equal(ours > 0, same > 0)  # the same routing outcome
            kept = (ours > 0).sum(-1)  # N
            dropped += int((m.top_k - kept).sum())
            whole += int((kept == 0).sum())
    if m.capacity_factor is None:
        assert dropped == whole == 0
    else:
        assert dropped > 0 and whole > 0  # overflowing choices and tokens with none of their experts


def test_layer_and_total_counts_equal_switch_transformers_and_torch_modules():
    loaded = api.load_spec(MOE)
    enc = loaded.spec.encoders["moe"]
    m = enc.moe
    model = api.build(loaded, device="meta")
    config = tf.SwitchTransformersConfig(d_model=enc.width, d_ff=m.hidden or enc.ffn, num_experts=m.experts,
                                         expert_capacity=1)
    with torch.device("meta"):
        sparse_mlp = switch.SwitchTransformersSparseMLP(config)
    noise = enc.width * m.experts
    assert _count(model.components["moe"].layers[0].ffn) == _count(sparse_mlp) + noise == 33_570_816
    total = api.param_counts(model)["total"]
    assert total == loaded.estimate.params == reference_count("moe")[0] == 51_270_656
    active = total - enc.idle_params()
    assert active == total - (m.experts - m.top_k) * _count(sparse_mlp.experts) // m.experts - noise == 21_902_336


def test_fit_lowers_the_loss_of_the_tiny_variant(tmp_path):
    out = tmp_path / "fit.json"
    assert run(["fit", str(MOE), "--variant", "tiny", "--steps", "40", "--json", str(out), "-q"]) == 0
    history = json.loads(out.read_text())
    assert sorted(history["objectives"]) == ["balance", "mlm_loss"]
    losses = history["losses"]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < 0.7 * losses[0], losses[::5]


def test_limoe_towers_share_one_stack_and_encode_each_modality_alone():
    loaded = api.load_spec(LIMOE, "tiny")
    model = api.build(loaded).eval()
    image, text = model.components["tower"], model.components["text_tower"]
    assert image.layers is text.layers and image.final_norm is text.final_norm
    assert api.param_counts(model)["total"] == loaded.estimate.params
    inputs = make_inputs(loaded.plan, {"batch": 3, "seq": 5}, seed=0)
    other = {**inputs, "image": torch.randn_like(inputs["image"])}
    with torch.no_grad():
        b, c = (dict(zip(model.output_names, model(x), strict=True)) for x in (inputs, other))
    assert torch.equal(b["limoe_text_embeds"], c["limoe_text_embeds"])  # text routed and encoded on its own
    assert not torch.allclose(b["limoe_image_embeds"], c["limoe_image_embeds"])


def test_limoe_entropy_losses_equal_their_definitions():
    logits = torch.randn(2, 7, 5, generator=torch.Generator().manual_seed(3))  # B,S,E
    p = torch.softmax(logits.reshape(-1, 5), -1)  # N,E
    h = -(p * p.log()).sum(-1)  # N
    mean = p.mean(0)  # E
    spread = -(mean * mean.log()).sum()
    args = {"input": {"router": logits}}
    torch.testing.assert_close(MoEEntropy("local", None)(args, {}), h.mean())
    torch.testing.assert_close(MoEEntropy("global", None)(args, {}), -spread)
    torch.testing.assert_close(MoEEntropy("global", 5.0)(args, {}), 5.0 - spread)
    assert MoEEntropy("global", 0.1)(args, {}).item() == 0.0  # above the threshold: no pressure


def test_limoe_h14_count_on_the_meta_device():
    """The canonical LIMoE-H/14 (built on the meta device) and the `b16` variant's count."""
    loaded = api.load_spec(LIMOE)
    enc = loaded.spec.encoders["tower"]
    assert enc.moe.layers_of(enc.layers) == list(range(9, 32, 2))  # the last 12 even (1-based) layers
    model = api.build(loaded, device="meta")
    total = api.param_counts(model)["total"]
    experts = sum(m.fc1.numel() + m.fc2.numel() for m in model.components["tower"].modules()
                  if isinstance(m, MixtureOfExperts))
    assert total == loaded.estimate.params == 5_549_346_561  # the figure in the spec's notes
    assert total - enc.idle_params() == total - experts * 31 // 32 == 673_468_161
    assert api.load_spec(LIMOE, "b16").estimate.params == 309_366_529


def test_limoe_share_stack_must_match_its_owner():
    with pytest.raises(SpecError) as err:
        api.load_spec(LIMOE, "tiny", ["encoders.text_tower.heads=4"])
    assert "share_stack" in str(err.value) and "heads" in str(err.value)


def test_limoe_fit_lowers_the_loss(tmp_path):
    out = tmp_path / "fit.json"
    assert run(["fit", str(LIMOE), "--variant", "tiny", "--steps", "30", "--json", str(out), "-q"]) == 0
    history = json.loads(out.read_text())
    assert len(history["objectives"]) == 7
    losses = history["losses"]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < 0.7 * losses[0], losses[::5]
