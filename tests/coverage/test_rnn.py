"""Recurrent encoder-decoders (NLP-06: Sutskever et al. 2014's LSTM, Cho et al.'s GRU cells; NLP-07: Bahdanau et
al.'s RNNsearch): parameter counts equal torch.nn.LSTM/GRU/GRUCell/Embedding/Linear built with the same sizes, the
step graph keeps the decoder's states as its cache (state in, next state out, first values from the encoder
graph), greedy and beam search on ONNX Runtime equal the eager graphs and the teacher-forced monolithic forward,
the length stays dynamic in the exported graphs (ONNX LSTM/GRU nodes, an ONNX Scan), and the next-token objective
trains."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mmspec import api
from mmspec.errors import SpecError
from mmspec.runtime import beam_search, greedy
from mmspec.runtime.decoding import FullDecoder, Pipeline
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
SEQ2SEQ = ROOT / "specs" / "seq2seq.yaml"
RNNSEARCH = ROOT / "specs" / "rnnsearch.yaml"


def _reference_count(cell: type[nn.Module], source_vocab: int, target_vocab: int, dim: int, hidden: int,
                     layers: int) -> int:
    """Embeddings, encoder and decoder stacks and the output softmax, built from torch modules on the meta device."""
    with torch.device("meta"):
        parts = [nn.Embedding(source_vocab, dim), cell(dim, hidden, layers), nn.Embedding(target_vocab, dim),
                 cell(dim, hidden, layers), nn.Linear(hidden, target_vocab)]
    return sum(p.numel() for m in parts for p in m.parameters())


@pytest.mark.parametrize(("variant", "cell"), [(None, nn.LSTM), ("gru", nn.GRU), ("tiny", nn.LSTM)])
def test_parameter_counts_equal_torch_modules(variant, cell):
    loaded = api.load_spec(SEQ2SEQ, variant)
    spec = loaded.spec
    enc, dec = spec.encoders["encoder"], spec.encoders["decoder"]
    assert (enc.cell, enc.layers, enc.hidden) == (dec.cell, dec.layers, dec.hidden)
    theirs = _reference_count(cell, spec.modalities["source"].vocab_size, spec.modalities["target"].vocab_size,
                              enc.embed.dim, enc.hidden, enc.layers)
    ours = api.param_counts(api.build(loaded, device="meta"))["total"]
    assert ours == theirs
    if variant is None:  # Sutskever et al. 2014, section 3.4: "384M parameters", 64M of them recurrent
        assert round(ours / 1e6) == 384 and "384M" in spec.reference.notes
        with torch.device("meta"):
            recurrent = 2 * sum(p.numel() for p in nn.LSTM(enc.hidden, enc.hidden, enc.layers).parameters())
        assert round(recurrent / 1e6) == 64


def test_rnnsearch_parameter_count_equals_torch_modules():
    """Appendix A's matrices as torch modules: embeddings, bidirectional GRU, W_s, W_a, U_a, v_a, the decoder's
    GRUCell over [E y; c], the maxout layer over [s; E y; c] and the softmax."""
    spec = api.load_spec(RNNSEARCH).spec
    enc, dec = spec.encoders["encoder"], spec.encoders["decoder"]
    source, target = spec.modalities["source"].vocab_size, spec.modalities["target"].vocab_size
    context, align = 2 * enc.hidden, dec.attention.dim
    with torch.device("meta"):
        parts = [nn.Embedding(source, enc.embed.dim), nn.GRU(enc.embed.dim, enc.hidden, bidirectional=True),
                 nn.Linear(enc.hidden, dec.hidden), nn.Embedding(target, dec.embed.dim),
                 nn.GRUCell(dec.embed.dim + context, dec.hidden), nn.Linear(dec.hidden, align),
                 nn.Linear(context, align, bias=False), nn.Linear(align, 1, bias=False),
                 nn.Linear(dec.hidden + dec.embed.dim + context, 2 * dec.maxout), nn.Linear(dec.maxout, target)]
    theirs = sum(p.numel() for m in parts for p in m.parameters())
    assert (enc.embed.dim, enc.hidden, dec.hidden, align, dec.maxout, source) == (620, 1000, 1000, 1000, 500, 30000)
    assert api.param_counts(api.build(api.load_spec(RNNSEARCH), device="meta"))["total"] == theirs


def _compiled(tiny_export, path: Path):
    """(ORT pipeline, the same graphs eager, the monolithic eager model) of the tiny variant."""
    out, _ = tiny_export(path)
    ort = Pipeline.open(out)
    model = api.build(api.load_spec(path, "tiny"))
    eager = Pipeline(ort.manifest, {name: api.eager_graph(model, name) for name in ort.graphs})
    return ort, eager, api.eager_graph(model)


@pytest.fixture(scope="module")
def seq2seq(tiny_export):
    return _compiled(tiny_export, SEQ2SEQ)


@pytest.fixture(scope="module")
def rnnsearch(tiny_export):
    return _compiled(tiny_export, RNNSEARCH)


def test_the_step_graph_takes_and_returns_the_states(seq2seq):
    ort, _, _ = seq2seq
    step = ort.manifest["graphs"]["decoder_step"]
    sources = {i["name"]: (i["source"], i["shape"]) for i in step["inputs"]}
    assert sources == {"target": ("modality target", ["batch", "tgt_len"]),
                       "state.h": ("cache decoder.state.0.h", ["batch", 2, 8]),
                       "state.c": ("cache decoder.state.0.c", ["batch", 2, 8])}
    caches = [o["cache"] for o in step["outputs"] if "cache" in o]
    assert caches == [{"node": "decoder", "kind": "next_state", "layer": 0, "part": p} for p in ("h", "c")]
    assert step["cache"] == [{"node": "decoder", "past_axis": None, "length_axis": "tgt_len", "positions": None}]
    links = {(c["from"]["graph"], c["from"]["output"], c["to"]["input"], c.get("step"))
             for c in ort.manifest["connections"]}
    assert links == {("decoder_step", "next_state.h", "state.h", "next"), ("encoder", "encoder_h", "state.h", "first"),
                     ("decoder_step", "next_state.c", "state.c", "next"), ("encoder", "encoder_c", "state.c", "first")}
    assert list(ort.manifest["graphs"]) == ["encoder", "decoder_step"]  # run order: the encoder first


def test_exported_graphs_keep_the_length_dynamic(seq2seq):
    """The ONNX LSTM nodes run any source/target length: ORT equals eager at lengths 1, 3 and 7."""
    ort, eager, _ = seq2seq
    rng = np.random.default_rng(0)
    for length in (1, 3, 7):
        source = {"source": rng.integers(0, 24, (3, length))}
        for name in ("encoder_h", "encoder_c"):
            np.testing.assert_allclose(ort.graphs["encoder"](source)[name], eager.graphs["encoder"](source)[name],
                                       atol=1e-5, rtol=1e-4)
        feeds = {"target": rng.integers(0, 20, (3, length)), "state.h": rng.standard_normal((3, 2, 8), np.float32),
                 "state.c": rng.standard_normal((3, 2, 8), np.float32)}
        ours, theirs = ort.graphs["decoder_step"](feeds), eager.graphs["decoder_step"](feeds)
        assert ours["lm"].shape == (3, length, 20)
        for name in ("lm", "next_state.h", "next_state.c"):
            np.testing.assert_allclose(ours[name], theirs[name], atol=1e-6, rtol=1e-4)


def test_steps_from_the_encoder_state_give_the_teacher_forced_logits(seq2seq):
    """A prompt of two tokens, then one token per step (ORT): the logits of the full forward's last position."""
    ort, _, full = seq2seq
    inputs = {"source": np.random.default_rng(1).integers(0, 24, (2, 5))}
    cached, plain = ort.decoder(inputs), FullDecoder(full, "target", "lm", inputs)
    prompt = np.array([[0, 4], [0, 9]])
    (a, state), (b, ref) = cached.start(prompt), plain.start(prompt)
    for token in (3, 11, 19, 2):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)  # logits of the tiny model are ~1e-3
        (a, state), (b, ref) = cached.step(np.full(2, token), state), plain.step(np.full(2, token), ref)
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)
    assert state.past["state.c"].shape == (2, 2, 8)


def test_without_a_first_value_the_states_start_at_zero(seq2seq):
    """No encoder state fed: the first step runs on zeros of the manifest's shape (batch -> the prompt's rows)."""
    _, eager, _ = seq2seq
    decoder = eager.decoder({"source": np.zeros((2, 3), np.int64)})
    decoder.first = {}
    logits, _ = decoder.start(np.array([[5], [6]]))
    zeros = {"target": np.array([[5], [6]]), "state.h": np.zeros((2, 2, 8), np.float32),
             "state.c": np.zeros((2, 2, 8), np.float32)}
    np.testing.assert_array_equal(logits, eager.graphs["decoder_step"](zeros)["lm"][:, -1])


def _tokens_equal_eager(pipelines, inputs: dict, strategy: str) -> np.ndarray:
    """Greedy or beam tokens from a start token on ORT, asserted equal to the eager step graphs' and to the whole
    model rerun each step; returns them."""
    ort, eager, full = pipelines
    bos = np.zeros((2, 1), np.int64)
    run = {
        "greedy": lambda d: greedy(d, bos, 10),
        "beam": lambda d: beam_search(d, bos, 10, beams=3, eos_id=3, length_penalty=1.0),
    }[strategy]
    ours = run(ort.decoder(inputs))
    np.testing.assert_array_equal(ours, run(eager.decoder(inputs)))
    np.testing.assert_array_equal(ours, run(FullDecoder(full, "target", "lm", inputs)))
    return ours


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_tokens_equal_eager(seq2seq, strategy):
    ort = seq2seq[0]
    inputs = {"source": np.random.default_rng(2).integers(0, 24, (2, 6))}
    bos = np.zeros((2, 1), np.int64)
    _tokens_equal_eager(seq2seq, inputs, strategy)
    other = {"source": np.random.default_rng(3).integers(0, 24, (2, 6))}
    first, _ = ort.decoder(inputs).start(bos)
    gap = np.abs(first - ort.decoder(other).start(bos)[0]).max()
    assert gap > 0.1 * np.abs(first).max()  # the decoder starts from the encoder's states


def test_the_next_token_objective_trains():
    loaded = api.load_spec(SEQ2SEQ, "tiny")
    history = Trainer(loaded, lr=3e-2).fit(synthetic_batch(loaded, 4, 0), 50, seed=0)
    assert all(math.isfinite(v) for v in history.losses)
    assert history.losses[-1] < 0.5 * history.losses[0], history.losses[::5]


@pytest.mark.parametrize(("sets", "node", "words"), [
    ({"modalities.target.mask": True}, "exports.decoder_step.cache",  # the encoder packs padded rows; no step does
     "encoders.decoder cannot decode step by step: 'target' carries a padding mask"),
    ({"encoders.decoder.hidden": 6}, "encoders.decoder", "needs the final states ['h', 'c'] of shape"),
    ({"encoders.encoder.cell": "gru"}, "encoders.decoder", "needs the final states ['h', 'c'] of shape"),
])
def test_invalid_rnns_are_reported(sets, node, words):
    with pytest.raises(SpecError) as e:
        api.load_spec(SEQ2SEQ, "tiny", sets=[f"{k}={str(v).lower()}" for k, v in sets.items()])
    assert f"{node}: {words}" in str(e.value)


def test_a_bidirectional_decoder_cannot_be_stepped():
    with pytest.raises(SpecError, match="bidirectional: false"):
        api.load_spec(SEQ2SEQ, "tiny", sets=["encoders.encoder.bidirectional=true",
                                             "encoders.decoder.bidirectional=true"])


def test_rnnsearch_step_graph_reads_the_annotations_and_starts_from_the_bridge(rnnsearch):
    ort, _, _ = rnnsearch
    step = ort.manifest["graphs"]["decoder_step"]
    assert {i["name"]: i["source"] for i in step["inputs"]} == {
        "target": "modality target", "encoder_sequence": "node encoder.sequence", "state.h": "cache decoder.state.0.h"}
    links = {(c["from"]["graph"], c["from"]["output"], c["to"]["input"], c.get("step"))
             for c in ort.manifest["connections"]}
    assert links == {("encoder", "encoder_sequence", "encoder_sequence", None),
                     ("decoder_step", "next_state.h", "state.h", "next"),
                     ("encoder", "encoder_bridge", "state.h", "first")}


def test_rnnsearch_steps_give_the_teacher_forced_logits(rnnsearch):
    """ORT, one position at a time after a two-token prompt, equals the eager monolithic forward (a Python loop
    over the positions), and the Scan runs the lengths 1, 3 and 7 of the eager graphs."""
    ort, eager, full = rnnsearch
    inputs = {"source": np.random.default_rng(4).integers(0, 24, (2, 5))}
    cached, plain = ort.decoder(inputs), FullDecoder(full, "target", "lm", inputs)
    prompt = np.array([[0, 4], [0, 9]])
    (a, state), (b, ref) = cached.start(prompt), plain.start(prompt)
    for token in (3, 11, 19, 2):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)
        (a, state), (b, ref) = cached.step(np.full(2, token), state), plain.step(np.full(2, token), ref)
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)
    rng = np.random.default_rng(5)
    for length in (1, 3, 7):
        feeds = {"target": rng.integers(0, 20, (3, length)),
                 "encoder_sequence": rng.standard_normal((3, 4, 10), np.float32),
                 "state.h": rng.standard_normal((3, 1, 7), np.float32)}
        ours, theirs = ort.graphs["decoder_step"](feeds), eager.graphs["decoder_step"](feeds)
        for name in ("lm", "next_state.h"):
            np.testing.assert_allclose(ours[name], theirs[name], atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_rnnsearch_tokens_equal_eager(rnnsearch, strategy):
    _tokens_equal_eager(rnnsearch, {"source": np.random.default_rng(6).integers(0, 24, (2, 6))}, strategy)


def test_rnnsearch_objective_trains():
    loaded = api.load_spec(RNNSEARCH, "tiny")
    history = Trainer(loaded, lr=3e-2).fit(synthetic_batch(loaded, 4, 0), 50, seed=0)
    assert all(math.isfinite(v) for v in history.losses)
    assert history.losses[-1] < 0.5 * history.losses[0], history.losses[::5]
