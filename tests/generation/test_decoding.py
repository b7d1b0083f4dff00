"""Decoding with a KV cache: step graphs on ONNX Runtime give the tokens of the eager model, cached and not;
GPT-2 imported from transformers decodes greedily exactly as `transformers` generate does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as tf

from mmspec import api
from mmspec.cli import run
from mmspec.importers.hf import import_hf, write_spec
from mmspec.runtime import beam_search, greedy, sample
from mmspec.runtime.decoding import FullDecoder, Pipeline

SPECS = Path(__file__).parent / "specs"


def _compiled(tmp_path_factory, stem: str):
    """(ORT pipeline, the same graphs in eager torch, the monolithic eager model) of a tiny spec."""
    out = tmp_path_factory.mktemp(stem)
    api.compile(SPECS / f"{stem}.yaml", out_dir=out)
    ort = Pipeline.open(out)
    model = api.build(api.load_spec(SPECS / f"{stem}.yaml"))
    eager = Pipeline(ort.manifest, {name: api.eager_graph(model, name) for name in ort.graphs})
    return ort, eager, api.eager_graph(model)


@pytest.fixture(scope="module")
def gpt(tmp_path_factory):
    return _compiled(tmp_path_factory, "tiny_gpt")


@pytest.fixture(scope="module")
def seq2seq(tmp_path_factory):
    return _compiled(tmp_path_factory, "tiny_seq2seq")


def _prompt(rows: int, length: int, vocab: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, (rows, length))  # B,T


def test_cached_steps_give_the_logits_of_the_whole_sequence(gpt):
    """Eager: each cached step's logits equal the last position of the full causal forward over the sequence."""
    _, eager, full = gpt
    cached, plain = eager.decoder(), FullDecoder(full, "text", "lm", mask="text_mask")
    prompt = _prompt(3, 4, 40)
    (a, state), (b, ref) = cached.start(prompt), plain.start(prompt)
    for token in (5, 17, 3, 39, 0, 22, 8):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
        tokens = np.full(3, token)
        (a, state), (b, ref) = cached.step(tokens, state), plain.step(tokens, ref)
    assert state.past["past_key_values.0.key"].shape == (3, 2, 11, 4)  # B,H,4 + 7 cached,d
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_decoder_only_tokens_equal_eager(gpt, strategy):
    ort, eager, full = gpt
    run = {
        "greedy": lambda d: greedy(d, _prompt(2, 3, 40), 12),
        "beam": lambda d: beam_search(d, _prompt(2, 3, 40), 10, beams=3, eos_id=7, length_penalty=0.8),
        "sample": lambda d: sample(d, _prompt(2, 3, 40), 12, top_k=10, top_p=0.9, temperature=1.3, seed=4),
    }[strategy]
    ours = run(ort.decoder())
    np.testing.assert_array_equal(ours, run(eager.decoder()))
    np.testing.assert_array_equal(ours, run(FullDecoder(full, "text", "lm", mask="text_mask")))
    assert ours.shape[1] > 3


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_encoder_decoder_tokens_equal_eager(seq2seq, strategy):
    """The encoder graph runs once (memory mask and cross-attention keys/values); the step graph decodes."""
    ort, eager, full = seq2seq
    source = _prompt(2, 6, 30, seed=1)
    mask = np.ones_like(source)
    mask[1, 4:] = 0  # a padded source row
    inputs = {"source": source, "source_mask": mask}
    bos = np.zeros((2, 1), np.int64)
    run = {
        "greedy": lambda d: greedy(d, bos, 12),
        "beam": lambda d: beam_search(d, bos, 12, beams=4, eos_id=3, length_penalty=1.2),
    }[strategy]
    ours = run(ort.decoder(inputs))
    np.testing.assert_array_equal(ours, run(eager.decoder(inputs)))
    np.testing.assert_array_equal(ours, run(FullDecoder(full, "target", "lm", inputs)))
    other = {**inputs, "source": _prompt(2, 6, 30, seed=2)}
    assert not np.array_equal(ours, run(ort.decoder(other)))  # the decoder does read the memory


def _gpt2_parity(tmp_path: Path, capsys, config: tf.GPT2Config, rows: int, new_tokens: int) -> None:
    """GPT-2 with random weights, saved, imported (`import hf`) with a step graph, compiled with its weights:
    greedy decoding on ONNX Runtime, by the runtime API and by `mmspec generate`, equals transformers' `generate`
    token for token."""
    torch.manual_seed(0)
    reference = tf.GPT2LMHeadModel(config).eval()
    reference.save_pretrained(tmp_path / "ckpt")
    tree, _ = import_hf(tmp_path / "ckpt")
    tree["exports"] = {"decoder_step": {"inputs": ["text"], "outputs": ["lm"], "cache": ["gpt2"]}}
    write_spec(tree, tmp_path / "gpt2.yaml")
    api.compile(tmp_path / "gpt2.yaml", out_dir=tmp_path / "build", weights=tmp_path / "ckpt")
    prompt = _prompt(rows, 5, config.vocab_size - 1, seed=3) + 1  # no eos (id 0) in the prompt
    ours = greedy(Pipeline.open(tmp_path / "build").decoder(), prompt, new_tokens, eos_id=0, pad_id=0)
    with torch.no_grad():
        theirs = reference.generate(torch.from_numpy(prompt), attention_mask=torch.ones_like(torch.from_numpy(prompt)),
                                    do_sample=False, max_new_tokens=new_tokens, pad_token_id=0).numpy()
    np.testing.assert_array_equal(ours, theirs)
    args = ["generate", str(tmp_path / "build"), "--max-new-tokens", str(new_tokens), "--eos-id", "0", "--pad-id",
            "0", "--json", "-q"] + [a for row in prompt for a in ("--prompt", " ".join(map(str, row)))]
    capsys.readouterr()
    assert run(args) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == theirs.tolist()


def test_gpt2_greedy_equals_transformers_generate(tmp_path, capsys):
    config = tf.GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=40, bos_token_id=0,
                           eos_token_id=0)
    _gpt2_parity(tmp_path, capsys, config, rows=3, new_tokens=20)


@pytest.mark.slow
def test_gpt2_small_greedy_equals_transformers_generate(tmp_path, capsys):
    """GPT-2 small (124M: transformers' default GPT2Config) -- `pytest -m slow tests/generation`."""
    _gpt2_parity(tmp_path, capsys, tf.GPT2Config(bos_token_id=0, eos_token_id=0), rows=2, new_tokens=24)
