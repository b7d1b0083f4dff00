"""Image captioning over detector regions (I2T-02, the Transformer baselines): the counts equal torch.nn's
Transformer layers + region projection + word table + output linear on the meta device, the tiny spec computes
those torch.nn layers' logits with their weights, the encoder + decoder-step graphs caption on ONNX Runtime as
eager (greedy and beam search), and the tiny variant trains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hf_reference import PARITY_ATOL, randomize
from references import REFERENCES, key
from test_gpt_transformer import _copy_layer, _sinusoids

from mmspec import api
from mmspec.graph.inputs import make_inputs
from mmspec.runtime import beam_search, greedy
from mmspec.runtime.decoding import FullDecoder, Pipeline
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

CAPTIONING = Path(__file__).resolve().parents[2] / "specs" / "captioning_transformer.yaml"


@pytest.mark.parametrize("variant", [None, "six_layer"], ids=str)
def test_sizes_equal_torch_transformer_layers(variant):
    with torch.device("meta"):
        reference = sum(p.numel() for p in REFERENCES[key("captioning_transformer", variant)]().parameters())
    assert api.param_counts(api.build(api.load_spec(CAPTIONING, variant), device="meta"))["total"] == reference


def test_tiny_computes_torch_transformer_layers_over_regions():
    """Regions: Linear + LayerNorm, torch.nn post-norm encoder layers with the padded regions masked; words: the
    table + fixed sinusoids, causal decoder layers cross-attending to the last encoder layer; bias-free output."""
    loaded = api.load_spec(CAPTIONING, "tiny")
    enc, dec = loaded.spec.encoders["encoder"], loaded.spec.encoders["decoder"]
    layer = dict(d_model=enc.width, nhead=enc.heads, dim_feedforward=enc.ffn, dropout=0.0, batch_first=True)
    encoder = randomize(torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(**layer), enc.layers,
                                                    enable_nested_tensor=False))
    decoder = randomize(torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(**layer), dec.layers))
    model = api.build(loaded).eval()
    ours = model.components
    with torch.no_grad():
        pairs = [*zip(encoder.layers, ours["encoder"].layers, strict=True),
                 *zip(decoder.layers, ours["decoder"].layers, strict=True)]
        for theirs, mine in pairs:
            _copy_layer(theirs, mine)
    inputs = make_inputs(loaded.plan, {"batch": 3, "regions": 6, "caption_len": 5}, seed=2)
    inputs["regions_mask"][:, 0] = 1  # every image has a region
    padding = inputs["regions_mask"] == 0  # B,R
    embed = ours["encoder"].embed
    with torch.no_grad():
        regions = embed.norm(embed.features(inputs["regions"]))  # B,R,D
        memory = encoder(regions, src_key_padding_mask=padding)  # B,R,D
        words = ours["decoder"].embed.word.weight[inputs["caption"]] + _sinusoids(5, dec.width)  # B,T,D
        causal = torch.nn.Transformer.generate_square_subsequent_mask(5)  # T,T
        out = decoder(words, memory, tgt_mask=causal, memory_key_padding_mask=padding)  # B,T,D
        expected = out @ ours["words"].weight.T  # B,T,V
        outs = dict(zip(model.output_names, model(inputs), strict=True))
    keep = ~padding
    assert (outs["encoder_sequence"][keep] - memory[keep]).abs().max().item() <= PARITY_ATOL
    assert (outs["words"] - expected).abs().max().item() <= PARITY_ATOL
    assert expected.abs().max() > 0.1


@pytest.fixture(scope="module")
def tiny(tiny_export):
    """(ORT pipeline, the same graphs eager, the eager monolithic model) of the tiny variant."""
    out, _ = tiny_export(CAPTIONING)
    ort = Pipeline.open(out)
    model = api.build(api.load_spec(CAPTIONING, "tiny"))
    eager = Pipeline(ort.manifest, {name: api.eager_graph(model, name) for name in ort.graphs})
    return ort, eager, api.eager_graph(model)


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_tiny_captions_on_ort_as_eager(tiny, strategy):
    """Step graphs on ONNX Runtime, the same graphs eager, and the monolithic model rerun on the whole caption
    each step give the same captions (beam 3 as the paper's beam search, smaller)."""
    ort, eager, full = tiny
    rng = np.random.default_rng(1)
    mask = np.ones((2, 6), np.int64)
    mask[1, 4:] = 0  # an image with fewer regions
    inputs = {"regions": rng.standard_normal((2, 6, 12)).astype(np.float32), "regions_mask": mask}
    start = np.zeros((2, 1), np.int64)
    run = {"greedy": lambda d: greedy(d, start, 10),
           "beam": lambda d: beam_search(d, start, 10, beams=3, eos_id=1)}[strategy]
    ours = run(ort.decoder(inputs))
    np.testing.assert_array_equal(ours, run(eager.decoder(inputs)))
    np.testing.assert_array_equal(ours, run(FullDecoder(full, "caption", "words", inputs, mask="caption_mask")))
    assert ours.shape[1] > 1


def test_fit_lowers_the_loss_of_the_tiny_variant():
    loaded = api.load_spec(CAPTIONING, "tiny")
    history = Trainer(loaded, lr=1e-2).fit(synthetic_batch(loaded, 4, 0), 20, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]
