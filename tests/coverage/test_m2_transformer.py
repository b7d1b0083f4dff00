"""M² Meshed-Memory Transformer (I2T-01): counts equal the official modules' sizes rebuilt from torch.nn
(tests/m2_references.py), the tiny spec computes the official forward (written out below from the official code's
equations) with the same weights, the encoder + decoder-step graphs caption on ONNX Runtime as eager (greedy and
beam search), and the tiny variant trains: cross-entropy, then the self-critical stage from its checkpoint
(the objective itself: tests/objectives/test_self_critical.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hf_reference import PARITY_ATOL, randomize
from m2_references import m2
from references import REFERENCES, key

from mmspec import api
from mmspec.graph.inputs import make_inputs
from mmspec.runtime import beam_search, greedy
from mmspec.runtime.decoding import FullDecoder, Pipeline
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

M2 = Path(__file__).resolve().parents[2] / "specs" / "m2_transformer.yaml"
HEADS = 2


@pytest.mark.parametrize("variant", [None, "one_to_one", "no_memory", "scst"], ids=str)
def test_sizes_equal_the_official_modules(variant):
    with torch.device("meta"):
        reference = sum(p.numel() for p in REFERENCES[key("m2_transformer", variant)]().parameters())
    assert api.param_counts(api.build(api.load_spec(M2, variant), device="meta"))["total"] == reference


def _attention(m, queries, keys, values, blocked, memory=None):
    """The official MultiHeadAttention around ScaledDotProductAttention(Memory): -inf at blocked keys (memory
    slots never blocked), then LayerNorm(queries + fc_o(...))."""
    b, nq, d = queries.shape
    dk, h = d // HEADS, HEADS
    k, v = m["fc_k"](keys), m["fc_v"](values)  # B,S,D
    if memory is not None:
        slots = memory[0].shape[1]
        k = torch.cat([k, math.sqrt(dk) * memory[0].expand(b, -1, -1)], 1)  # B,S+M,D
        v = torch.cat([v, math.sqrt(slots) * memory[1].expand(b, -1, -1)], 1)  # B,S+M,D
        blocked = torch.cat([blocked, blocked.new_zeros(*blocked.shape[:-1], slots)], -1)
    q = m["fc_q"](queries).view(b, nq, h, dk).permute(0, 2, 1, 3)  # B,H,T,d
    k = k.view(b, -1, h, dk).permute(0, 2, 3, 1)  # B,H,d,S
    v = v.view(b, -1, h, dk).permute(0, 2, 1, 3)  # B,H,S,d
    att = torch.softmax((q @ k / math.sqrt(dk)).masked_fill(blocked, -math.inf), -1)  # B,H,T,S
    out = m["fc_o"]((att @ v).permute(0, 2, 1, 3).reshape(b, nq, d))  # B,T,D
    return m["layer_norm"](queries + out)


def _pwff(m, x):
    return m["layer_norm"](x + m["fc2"](F.relu(m["fc1"](x))))


def _official(ref, regions, keep, caption):
    """MemoryAugmentedEncoder + MeshedDecoder forward in eval mode: log-probabilities [B, T, V]."""
    blocked = (keep == 0)[:, None, None, :]  # B,1,1,R
    x = ref["layer_norm"](F.relu(ref["fc"](regions)))  # B,R,D
    levels = []
    for layer in ref["encoder"]:
        mhatt = layer["mhatt"]
        memory = (mhatt.m_k, mhatt.m_v) if hasattr(mhatt, "m_k") else None
        x = _pwff(layer["pwff"], _attention(mhatt, x, x, x, blocked, memory))
        levels.append(x)
    t = caption.shape[1]
    y = ref["word_emb"](caption) + ref["pos_emb"](torch.arange(1, t + 1))  # B,T,D
    causal = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)[None, None]  # 1,1,T,T
    for layer in ref["decoder"]:
        s = _attention(layer["self_att"], y, y, y, causal)
        crosses = [_attention(layer["enc_att"], s, c, c, blocked) for c in levels]
        alphas = [torch.sigmoid(layer[f"fc_alpha{i + 1}"](torch.cat([s, c], -1))) for i, c in enumerate(crosses)]
        y = _pwff(layer["pwff"], sum(a * c for a, c in zip(alphas, crosses, strict=True)) / math.sqrt(len(levels)))
    return F.log_softmax(ref["out"](y), -1)


def _copy_official(ref, model) -> None:
    enc, dec = model.components["encoder"], model.components["decoder"]
    pairs = [(enc.project, ref["fc"]), (enc.norm, ref["layer_norm"]), (dec.word, ref["word_emb"]),
             (dec.out, ref["out"])]
    for i, layer in enumerate(ref["encoder"]):
        a = enc.attn[i]
        pairs += [(a.attn.q, layer["mhatt"]["fc_q"]), (a.attn.k, layer["mhatt"]["fc_k"]),
                  (a.attn.v, layer["mhatt"]["fc_v"]), (a.attn.out, layer["mhatt"]["fc_o"]),
                  (enc.attn_res[i].norm, layer["mhatt"]["layer_norm"]), (enc.ffn[i].fc1, layer["pwff"]["fc1"]),
                  (enc.ffn[i].fc2, layer["pwff"]["fc2"]), (enc.ffn_res[i].norm, layer["pwff"]["layer_norm"])]
        a.memory_keys.data.copy_(layer["mhatt"].m_k)
        a.memory_values.data.copy_(layer["mhatt"].m_v)
    for ours, layer in zip(dec.layers, ref["decoder"], strict=True):
        for mine, theirs in ((ours.attn, layer["self_att"]), (ours.cross_attn, layer["enc_att"])):
            pairs += [(mine.q, theirs["fc_q"]), (mine.k, theirs["fc_k"]), (mine.v, theirs["fc_v"]),
                      (mine.out, theirs["fc_o"])]
        pairs += [(ours.attn_res.norm, layer["self_att"]["layer_norm"]),
                  (ours.cross_res.norm, layer["enc_att"]["layer_norm"]), (ours.ffn.fc1, layer["pwff"]["fc1"]),
                  (ours.ffn.fc2, layer["pwff"]["fc2"]), (ours.ffn_res.norm, layer["pwff"]["layer_norm"])]
        pairs += [(gate, layer[f"fc_alpha{i + 1}"]) for i, gate in enumerate(ours.gates)]
    for mine, theirs in pairs:
        mine.load_state_dict(theirs.state_dict())
    ref["pos_emb"].weight.data.copy_(dec.position.weight)  # both the fixed sinusoid table


def test_tiny_computes_the_official_forward():
    """Memory slots in the keys/values, padded regions blocked, every encoder level gated into every decoder
    layer: the tiny spec's log-softmax equals the official equations' with the same (random) weights."""
    loaded = api.load_spec(M2, "tiny")
    torch.manual_seed(0)
    ref = randomize(m2(vocab=40, memory=4, layers=2, d=16, ff=32, max_len=16, d_in=12))
    for layer in ref["encoder"]:  # the memory slots at the official initialisation scale
        torch.nn.init.normal_(layer["mhatt"].m_k, 0, 1 / 8)
        torch.nn.init.normal_(layer["mhatt"].m_v, 0, 1 / 4)
    model = api.build(loaded).eval()
    with torch.no_grad():
        _copy_official(ref, model)
        inputs = make_inputs(loaded.plan, {"batch": 3, "regions": 6, "caption_len": 5}, seed=2)
        inputs["regions_mask"][:, 0] = 1
        inputs["regions_mask"][1, 3:] = 0  # an image with three regions
        expected = _official(ref, inputs["regions"], inputs["regions_mask"], inputs["caption"])
        outs = dict(zip(model.output_names, model(inputs), strict=True))
    ours = F.log_softmax(outs["decoder"], -1)
    assert (ours - expected).abs().max().item() <= PARITY_ATOL
    assert expected.exp().std() > 1e-3


@pytest.fixture(scope="module")
def tiny(tiny_export):
    """(ORT pipeline, the same graphs eager, the eager monolithic model) of the tiny variant."""
    out, _ = tiny_export(M2)
    ort = Pipeline.open(out)
    model = api.build(api.load_spec(M2, "tiny"))
    eager = Pipeline(ort.manifest, {name: api.eager_graph(model, name) for name in ort.graphs})
    return ort, eager, api.eager_graph(model)


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_tiny_captions_on_ort_as_eager(tiny, strategy):
    """Step graphs (self-attention KV cache, encoder levels fed whole) on ONNX Runtime, the same graphs eager, and
    the monolithic model rerun on the whole caption each step give the same captions."""
    ort, eager, full = tiny
    rng = np.random.default_rng(1)
    mask = np.ones((2, 6), np.int64)
    mask[1, 4:] = 0
    inputs = {"regions": rng.standard_normal((2, 6, 12)).astype(np.float32), "regions_mask": mask}
    start = np.zeros((2, 1), np.int64)
    run = {"greedy": lambda d: greedy(d, start, 10),
           "beam": lambda d: beam_search(d, start, 10, beams=3, eos_id=1)}[strategy]
    ours = run(ort.decoder(inputs))
    np.testing.assert_array_equal(ours, run(eager.decoder(inputs)))
    np.testing.assert_array_equal(ours, run(FullDecoder(full, "caption", "decoder", inputs)))
    assert ours.shape[1] > 1


def test_fit_lowers_the_loss_of_the_tiny_variant():
    loaded = api.load_spec(M2, "tiny")
    history = Trainer(loaded, lr=1e-2).fit(synthetic_batch(loaded, 4, 0), 20, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]


def test_scst_stage_fits_from_the_xe_checkpoint(tmp_path):
    """The second stage as the spec's notes run it: `mmspec fit --variant tiny_scst --weights XE_CKPT` starts from
    the cross-entropy checkpoint, runs the self-critical objective (beams decoded through the model, CIDEr-D
    against the batch's `scst.references`) and changes the weights (checkpoints with the same tensors)."""
    from safetensors.torch import load_file

    api.fit(M2, 2, variant="tiny", batch=4, out_dir=tmp_path / "xe")
    history = api.fit(M2, 3, variant="tiny_scst", batch=4, lr=1e-2, weights=tmp_path / "xe",
                      out_dir=tmp_path / "scst")
    losses = history["objectives"]["scst"]
    assert list(history["objectives"]) == ["scst"] and all(math.isfinite(x) for x in losses) and any(losses)
    xe = load_file(tmp_path / "xe" / "m2_transformer-tiny.safetensors")
    scst = load_file(tmp_path / "scst" / "m2_transformer-tiny_scst.safetensors")
    assert {k for k in scst if not k.startswith("optimizer.")} == {k for k in xe if not k.startswith("optimizer.")}
    assert any(not torch.equal(v, scst[k]) for k, v in xe.items() if not k.startswith("optimizer."))
