"""Image tokens, DALL-E style: a causal prior samples the codes of a 4x4 grid after a text prompt (masked to the
image ids), and a `vq_decoder` graph turns them into pixels; ONNX Runtime gives the eager model's codes and
pixels (tests/generation/specs/tiny_dalle.yaml)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmspec import api
from mmspec.errors import SpecError
from mmspec.runtime import decode_tokens, generate_image
from mmspec.runtime.decoding import Pipeline

SPEC = Path(__file__).parent / "specs" / "tiny_dalle.yaml"
TEXT, CODES = 20, 16  # text vocabulary; codebook (stream ids TEXT .. TEXT + CODES - 1)


@pytest.fixture(scope="module")
def dalle(tmp_path_factory):
    """(ORT pipeline, the same graphs on the eager model)."""
    out = tmp_path_factory.mktemp("tiny_dalle")
    api.compile(SPEC, out_dir=out)
    ort = Pipeline.open(out)
    model = api.build(api.load_spec(SPEC))
    return ort, Pipeline(ort.manifest, {name: api.eager_graph(model, name) for name in ort.graphs})


def _generate(pipe: Pipeline, strategy: str, **kwargs):
    prompt = np.random.default_rng(0).integers(0, TEXT, (3, 4))  # B,T  text tokens only
    return generate_image(pipe.decoder(), pipe.graphs["vq_decoder"], prompt, CODES, offset=TEXT,
                          entry=pipe.manifest["graphs"]["vq_decoder"], strategy=strategy, **kwargs)


@pytest.mark.parametrize(("strategy", "kwargs"), [("greedy", {}), ("sample", {"top_k": 8, "temperature": 1.5,
                                                                                "seed": 3})])
def test_generated_image_equals_eager(dalle, strategy, kwargs):
    ort, eager = dalle
    ours, theirs = _generate(ort, strategy, **kwargs), _generate(eager, strategy, **kwargs)
    np.testing.assert_array_equal(ours.codes, theirs.codes)
    np.testing.assert_allclose(ours.pixels, theirs.pixels, atol=1e-4, rtol=1e-3)
    assert ours.codes.shape == (3, CODES) and ours.pixels.shape == (3, 3, 8, 8)
    assert ours.codes.min() >= 0 and ours.codes.max() < CODES
    if strategy == "sample":
        assert len(np.unique(ours.codes)) > 1


def test_codes_stay_in_range_when_the_prior_prefers_text(dalle):
    """A prior whose unmasked choice is always a text token still yields image codes only."""
    ort, _ = dalle

    class TextLover:
        def __init__(self, decoder):
            self.decoder = decoder

        def start(self, prompt):
            logits, state = self.decoder.start(prompt)
            return self._bias(logits), state

        def step(self, tokens, state):
            assert (tokens >= TEXT).all()  # what the prior is fed back is a stream id of an image token
            logits, state = self.decoder.step(tokens, state)
            return self._bias(logits), state

        def reorder(self, state, index):
            return self.decoder.reorder(state, index)

        @staticmethod
        def _bias(logits):
            return logits + np.where(np.arange(logits.shape[1]) < TEXT, 100.0, 0.0).astype(np.float32)  # B,V

    prompt = np.zeros((2, 3), np.int64)
    image = generate_image(TextLover(ort.decoder()), ort.graphs["vq_decoder"], prompt, CODES, offset=TEXT)
    assert image.codes.min() >= 0 and image.codes.max() < CODES


def test_decode_tokens_checks_the_length(dalle):
    ort, eager = dalle
    with pytest.raises(ValueError, match="takes 16 codes per image, got 15"):
        decode_tokens(ort.graphs["vq_decoder"], np.zeros((2, 15), np.int64))
    with pytest.raises(ValueError, match="takes 16 codes per image, got 17"):
        decode_tokens(eager.graphs["vq_decoder"], np.zeros((2, 17), np.int64),
                      entry=eager.manifest["graphs"]["vq_decoder"])
    with pytest.raises(ValueError, match="pass entry="):
        decode_tokens(eager.graphs["vq_decoder"], np.zeros((2, 16), np.int64))
    with pytest.raises(ValueError, match="image_tokens is 9"):
        generate_image(ort.decoder(), ort.graphs["vq_decoder"], np.zeros((1, 2), np.int64), 9, offset=TEXT)


def test_one_code_changes_the_pixels(dalle):
    ort, _ = dalle
    codes = np.random.default_rng(1).integers(0, CODES, (1, CODES))  # B,h*w
    other = codes.copy()
    other[0, 5] = (other[0, 5] + 1) % CODES
    a, b = decode_tokens(ort.graphs["vq_decoder"], codes), decode_tokens(ort.graphs["vq_decoder"], other)
    assert a.shape == (1, 3, 8, 8)
    assert np.abs(a - b).max() > 1e-3


VQ_SPEC = """\
mmspec: 1
name: vq
modalities:
  codes: {type: tokens, vocab_size: 16, length: LENGTH}
  feats: {type: vector, dim: 4}
heads:
  vq:
    type: vq_decoder
    input: INPUT
    codebook: 16
    dim: 4
    grid: [4, 4]
    widths: [8, 6]
    groups: 2
"""


@pytest.mark.parametrize(("edit", "line", "message"), [
    ({"LENGTH": "seq"}, 12, "grid 4x4 holds 16 codes but 'codes' has length 'seq'"),
    ({"LENGTH": "12"}, 12, "has length 12; give the ids the fixed length 16"),
    ({"codebook: 16": "codebook: 32"}, 10, "codebook 32 differs from the vocab_size 16 of 'codes'"),
    ({"INPUT": "feats"}, 9, "the decoder needs int64 code ids [batch, h*w]"),
    ({"groups: 2": "groups: 4"}, 13, "width 6 is not divisible by groups 4"),
])
def test_vq_decoder_shape_rules_are_located(tmp_path, edit, line, message):
    text = VQ_SPEC
    for old, new in {"LENGTH": "16", "INPUT": "codes", **edit}.items():
        text = text.replace(old, new)
    (tmp_path / "vq.yaml").write_text(text)
    with pytest.raises(SpecError) as e:
        api.load_spec(tmp_path / "vq.yaml")
    (d,) = e.value.diagnostics
    assert (d.line, d.code) == (line, "check") and message in d.message, d.render()
