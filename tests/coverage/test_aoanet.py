"""AoANet (I2T-02's Attention-on-Attention variant, Huang et al. 2019): the count equals the official network
rebuilt from torch.nn (tests/aoa_references.py), the shared AoA attention and the tiny spec compute that rebuild's
numbers with its weights, the refiner + decoder-step graphs caption on ONNX Runtime as eager, and the tiny variant
trains."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from aoa_references import AoANet, DotAttention
from hf_reference import randomize
from references import REFERENCES, key

from mmspec import api
from mmspec.blocks.attention import Attention, padding_bias
from mmspec.graph.inputs import make_inputs
from mmspec.runtime import beam_search, greedy
from mmspec.runtime.decoding import FullDecoder, Pipeline
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

AOANET = Path(__file__).resolve().parents[2] / "specs" / "aoanet.yaml"
ATOL, RTOL = 1e-5, 1e-4
"""fp32 parity of two implementations of the same numbers (different op order)."""


@pytest.mark.parametrize("variant", [None, "scst"], ids=str)
def test_size_equals_the_official_network(variant):
    with torch.device("meta"):
        theirs = sum(p.numel() for p in REFERENCES[key("aoanet", variant)]().parameters())
    assert api.param_counts(api.build(api.load_spec(AOANET, variant), device="meta"))["total"] == theirs


def _copy_linear(ours: torch.nn.Linear, theirs: torch.nn.Linear, rows: slice = slice(None)) -> None:
    ours.weight.copy_(theirs.weight[rows])
    ours.bias.copy_(theirs.bias[rows])


def test_aoa_attention_equals_the_official_layer():
    """Attention(aoa=True) = MultiHeadedDotAttention(do_aoa=1): q/k/v projections, masked heads, then
    GLU(Linear([heads' result; query])) in place of the output projection."""
    torch.manual_seed(0)
    theirs = randomize(DotAttention(4, 16, project_k_v=True, aoa=True, norm_q=False)).eval()
    ours = Attention(16, 16, 16, 4, 16, aoa=True).eval()
    with torch.no_grad():
        for mine, lin in zip((ours.q, ours.k, ours.v), theirs.linears, strict=True):
            _copy_linear(mine, lin)
        _copy_linear(ours.aoa.proj, theirs.aoa_layer[0])
        x, context = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
        mask = torch.ones(3, 7, dtype=torch.int64)
        mask[1, 4:] = 0
        got = ours(x, context, padding_bias(mask, x))  # B,T,D
        want = theirs(x, context, context, mask)  # B,T,D
    torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL)
    assert want.abs().max() > 0.1


def _official_with_our_weights(model: torch.nn.Module, spec) -> AoANet:
    """The torch.nn rebuild at the tiny sizes holding the tiny model's weights (ctx2att: values first, then keys)."""
    refiner, decoder = spec.encoders["refiner"], spec.encoders["decoder"]
    theirs = AoANet(spec.modalities["caption"].vocab_size, refiner.width, decoder.embed, refiner.heads,
                    refiner.layers, spec.modalities["regions"].dim).eval()
    ours = model.components
    r, d = ours["refiner"], ours["decoder"]
    with torch.no_grad():
        _copy_linear(theirs.att_embed[0], r.embed.features)
        for layer, mine in zip(theirs.refiner["layers"], r.layers, strict=True):
            for lin, ours_lin in zip(layer.self_attn.linears, (mine.attn.q, mine.attn.k, mine.attn.v), strict=True):
                _copy_linear(lin, ours_lin)
            _copy_linear(layer.self_attn.aoa_layer[0], mine.attn.aoa.proj)
            layer.sublayer[0]["norm"].load_state_dict(mine.attn_res.norm.state_dict())
        theirs.refiner["norm"].load_state_dict(r.final_norm.state_dict())
        theirs.embed[0].weight.copy_(d.word.weight)
        theirs.core["att_lstm"].load_state_dict(d.lstm.state_dict())
        _copy_linear(theirs.core["att2ctx"][0], d.attn.aoa.proj)
        theirs.core["attention"].norm.load_state_dict(d.query_norm.state_dict())
        _copy_linear(theirs.core["attention"].linears[0], d.attn.q)
        w = refiner.width
        theirs.ctx2att.weight.copy_(torch.cat([d.attn.v.weight, d.attn.k.weight]))
        theirs.ctx2att.bias.copy_(torch.cat([d.attn.v.bias, d.attn.k.bias]))
        assert theirs.ctx2att.weight.shape[0] == 2 * w
        _copy_linear(theirs.logit, ours["words"])
    return theirs


def test_tiny_computes_the_official_network():
    """Refined regions (the unpadded ones) and the teacher-forced logits equal the official network's with the
    same weights (its LayerNorm taken as torch's, dropout off)."""
    loaded = api.load_spec(AOANET, "tiny")
    torch.manual_seed(0)
    model = api.build(loaded).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)  # larger than the init, so every part moves the logits
    theirs = _official_with_our_weights(model, loaded.spec)
    inputs = make_inputs(loaded.plan, {"batch": 3, "regions": 6, "caption_len": 5}, seed=2)
    inputs["regions_mask"][:, 0] = 1  # every image has a region
    inputs["regions_mask"][2, 3:] = 0  # and one has padding
    with torch.no_grad():
        outs = dict(zip(model.output_names, model(inputs), strict=True))
        refined = theirs.refine(inputs["regions"], inputs["regions_mask"])  # B,R,D
        logits = theirs(inputs["regions"], inputs["regions_mask"], inputs["caption"])  # B,T,V
    keep = inputs["regions_mask"] == 1
    torch.testing.assert_close(outs["refiner_sequence"][keep], refined[keep], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(outs["words"], logits, atol=ATOL, rtol=RTOL)
    assert logits.std() > 0.1


@pytest.fixture(scope="module")
def tiny(tiny_export):
    """(ORT pipeline, the same graphs eager, the eager monolithic model) of the tiny variant."""
    out, _ = tiny_export(AOANET)
    ort = Pipeline.open(out)
    model = api.build(api.load_spec(AOANET, "tiny"))
    eager = Pipeline(ort.manifest, {name: api.eager_graph(model, name) for name in ort.graphs})
    return ort, eager, api.eager_graph(model)


def _inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    mask = np.ones((2, 6), np.int64)
    mask[1, 4:] = 0  # an image with fewer regions
    return {"regions": rng.standard_normal((2, 6, 12)).astype(np.float32), "regions_mask": mask}


def test_the_step_graph_takes_and_returns_the_states(tiny):
    step = tiny[0].manifest["graphs"]["decoder_step"]
    names = {i["name"] for i in step["inputs"]}
    assert {"state.h", "state.c", "state.context"} <= names


def test_steps_give_the_teacher_forced_logits(tiny):
    """A prompt of two tokens, then one token per step on ONNX Runtime: the full forward's last logits."""
    ort, _, full = tiny
    inputs = _inputs()
    cached, plain = ort.decoder(inputs), FullDecoder(full, "caption", "words", inputs)
    (a, state), (b, ref) = cached.start(np.array([[0, 4], [0, 9]])), plain.start(np.array([[0, 4], [0, 9]]))
    for token in (3, 11, 19):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
        (a, state), (b, ref) = cached.step(np.full(2, token), state), plain.step(np.full(2, token), ref)
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_tiny_captions_on_ort_as_eager(tiny, strategy):
    """Step graphs on ONNX Runtime, the same graphs eager, and the monolithic model rerun on the whole caption
    each step give the same captions."""
    ort, eager, full = tiny
    inputs, start = _inputs(), np.zeros((2, 1), np.int64)
    run = {"greedy": lambda d: greedy(d, start, 8),
           "beam": lambda d: beam_search(d, start, 8, beams=3, eos_id=1)}[strategy]
    ours = run(ort.decoder(inputs))
    np.testing.assert_array_equal(ours, run(eager.decoder(inputs)))
    np.testing.assert_array_equal(ours, run(FullDecoder(full, "caption", "words", inputs)))
    assert ours.shape[1] > 1


def test_fit_lowers_the_loss_of_the_tiny_variant():
    loaded = api.load_spec(AOANET, "tiny")
    history = Trainer(loaded, lr=1e-2).fit(synthetic_batch(loaded, 4, 0), 20, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]


def test_scst_stage_fits_from_the_xe_checkpoint(tmp_path):
    """train.sh's second run as the spec's notes give it: `mmspec fit --variant tiny_scst --weights XE_CKPT` starts
    from the cross-entropy checkpoint, samples captions through the model, rewards them with CIDEr-D against the
    batch's `scst.references` minus the greedy caption's, and changes the weights."""
    from safetensors.torch import load_file

    api.fit(AOANET, 2, variant="tiny", batch=4, out_dir=tmp_path / "xe")
    history = api.fit(AOANET, 3, variant="tiny_scst", batch=4, lr=1e-2, weights=tmp_path / "xe",
                      out_dir=tmp_path / "scst")
    losses = history["objectives"]["scst"]
    assert list(history["objectives"]) == ["scst"] and all(math.isfinite(x) for x in losses)
    xe = load_file(tmp_path / "xe" / "aoanet-tiny.safetensors")
    scst = load_file(tmp_path / "scst" / "aoanet-tiny_scst.safetensors")
    assert {k for k in scst if not k.startswith("optimizer.")} == {k for k in xe if not k.startswith("optimizer.")}
    assert any(not torch.equal(v, scst[k]) for k, v in xe.items() if not k.startswith("optimizer."))
