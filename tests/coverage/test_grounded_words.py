"""Grounded word and sentence models ISL-02, ISL-03, ISL-04, ISL-06, ISL-08 (specs/kiela_bottou.yaml,
silberer_lapata.yaml, mmskipgram.yaml, imagined.yaml, grounded_sentences.yaml): exported vectors against plain
torch computations from the models' own weights, the max-margin grounding term against a loop over its terms,
the full sizes against torch.nn modules of the stated widths, and `mmspec fit` on every tiny variant."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmspec.api import build, load_spec, param_counts
from mmspec.cli import run

SPECS = Path(__file__).resolve().parents[2] / "specs"
KIELA, IMAGINED, MMSKIP = SPECS / "kiela_bottou.yaml", SPECS / "imagined.yaml", SPECS / "mmskipgram.yaml"
SILBERER, SENTENCES = SPECS / "silberer_lapata.yaml", SPECS / "grounded_sentences.yaml"
ATOL, RTOL = 1e-6, 1e-5


def _count(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.mark.parametrize(("path", "variant"), [
    (KIELA, "tiny"), (IMAGINED, "tiny"), (IMAGINED, "tiny_mlp"), (MMSKIP, "tiny"), (MMSKIP, "tiny_a"),
    (SILBERER, "tiny"), (SILBERER, "tiny_finetune"), (SENTENCES, "tiny")])
def test_mmspec_fit_lowers_every_objective(path, variant, tmp_path):
    out = tmp_path / "fit.json"
    assert run(["fit", str(path), "--variant", variant, "--steps", "30", "--json", str(out), "-q"]) == 0
    history = json.loads(out.read_text())
    assert history["losses"][-1] < history["losses"][0], history["losses"][::10]
    for name, losses in history["objectives"].items():
        assert losses[-1] < losses[0], (name, losses[::10])


def test_kiela_bottou_vector_is_the_skipgram_vector_then_the_image_mean_or_max():
    model = build(load_spec(KIELA, "tiny")).eval()
    g = torch.Generator().manual_seed(0)
    words = torch.tensor([[3], [41]])  # B,1
    images = torch.randn(2, 3, 12, generator=g)  # B,images,D
    table = model.components["skipgram"].table.weight.detach()  # V,d
    with torch.no_grad():
        (fused,) = model({"words": words, "images": images})
    torch.testing.assert_close(fused, torch.cat([table[words[:, 0]], images.mean(1)], -1), atol=ATOL, rtol=RTOL)
    assert load_spec(KIELA, "max").spec.fusion["visual"].op == "max"


def test_imagined_vector_is_the_text_vector_then_its_mapping():
    model = build(load_spec(IMAGINED, "tiny")).eval()
    text = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))  # B,300 at full size
    (linear,) = [m for m in model.components["imagine"].modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        (fused,) = model({"text": text, "visual": torch.zeros(3, 4)})
    torch.testing.assert_close(fused, torch.cat([text, linear(text)], -1), atol=ATOL, rtol=RTOL)


def _hinge_by_loops(z: torch.Tensor, v: torch.Tensor, present: list[bool], margin: float) -> float:
    """Mean over both directions and words a != b (the image side present where it is read) of
    max(0, margin - cos(x_a, y_a) + cos(x_a, y_b))."""
    cos = lambda a, b: float(F.cosine_similarity(a, b, dim=0))  # noqa: E731
    terms = []
    for x, y, x_flag, y_flag in ((z, v, [True] * len(z), present), (v, z, present, [True] * len(z))):
        for a, b in itertools.permutations(range(len(z)), 2):
            if x_flag[a] and y_flag[a] and y_flag[b]:
                terms.append(max(0.0, margin - cos(x[a], y[a]) + cos(x[a], y[b])))
    return sum(terms) / max(len(terms), 1)


def test_mmskipgram_grounding_is_a_cosine_hinge_that_skips_words_without_images():
    model = build(load_spec(MMSKIP, "tiny"))
    g = torch.Generator().manual_seed(2)
    z, v = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)  # B,D: mapped words, visual vectors
    loss = model.objectives["grounding"]
    for present in ([1, 0, 1, 1], [1, 1, 1, 1]):
        flags = torch.tensor(present)
        with torch.no_grad():
            ours = loss({"0": {"embedding": z}, "1": {"values": v}, "present1": {"present": flags}}, {})
        assert float(ours) == pytest.approx(_hinge_by_loops(z, v, [bool(p) for p in present], 0.5), abs=1e-6)
    with torch.no_grad():
        none = loss({"0": {"embedding": z}, "1": {"values": v}, "present1": {"present": torch.zeros(4)}}, {})
    assert float(none) == 0.0


def test_grounded_sentence_is_the_max_pooled_bilstm_over_projected_glove():
    model = build(load_spec(SENTENCES, "tiny")).eval()
    caption = torch.randint(0, 30, (3, 6), generator=torch.Generator().manual_seed(3))  # B,S
    glove = model.components["glove"].table.weight.detach()  # V,5
    (projection,) = [m for m in model.components["projected"].modules() if isinstance(m, nn.Linear)]
    lstm = nn.LSTM(5, 4, batch_first=True, bidirectional=True)
    lstm.load_state_dict({k.removeprefix("rnn."): w for k, w in model.components["bilstm"].state_dict().items()})
    with torch.no_grad():
        (sentence,) = model({"caption": caption, "image": torch.zeros(3, 6)})
        states, _ = lstm(projection(glove[caption]))  # B,S,2H
    torch.testing.assert_close(sentence, states.max(1).values, atol=ATOL, rtol=RTOL)


def test_silberer_lapata_bimodal_code_reads_both_unimodal_codes_and_stages_share_names():
    model = build(load_spec(SILBERER, "tiny")).eval()
    g = torch.Generator().manual_seed(4)
    textual, visual = torch.randn(2, 10, generator=g), torch.randn(2, 8, generator=g)  # B,T / B,V
    c = model.components
    with torch.no_grad():
        (bimodal,) = model({"textual": textual, "visual": visual})
        codes = torch.cat([c["enc_textual"]({"input": {"x": textual}})["embedding"],
                           c["enc_visual"]({"input": {"x": visual}})["embedding"]], -1)  # B,8
    (linear,) = [m for m in c["bimodal"].modules() if isinstance(m, nn.Linear)]
    torch.testing.assert_close(bimodal, linear(codes).detach(), atol=ATOL, rtol=RTOL)
    first, second = build(load_spec(SILBERER), device="meta"), build(load_spec(SILBERER, "finetune"), device="meta")
    assert {k: v.shape for k, v in first.components.state_dict().items()} == {
        k: v.shape for k, v in second.components.state_dict().items()}


def _mlp(*widths: int) -> list[nn.Module]:
    return [nn.Linear(a, b) for a, b in zip(widths, widths[1:], strict=False)]


FULL_SIZES = {  # the spec's stated widths as torch.nn modules: tables, maps, LSTMs
    (KIELA, None): lambda: [nn.Embedding(100000, 100), nn.Embedding(100000, 100)],  # input + output tables
    (IMAGINED, None): lambda: [nn.Linear(300, 128)],
    (IMAGINED, "mlp"): lambda: _mlp(300, 300, 128),
    (MMSKIP, None): lambda: [nn.Embedding(300000, 300), nn.Embedding(300000, 300), nn.Linear(300, 4096, bias=False)],
    (MMSKIP, "a"): lambda: [nn.Embedding(300000, 300), nn.Embedding(300000, 300)],
    (SILBERER, None): lambda: [*_mlp(2362, 700, 500), *_mlp(414, 170, 100), *_mlp(500, 700, 2362),
                               *_mlp(100, 170, 414), nn.Linear(600, 500), nn.Linear(500, 600), nn.Linear(500, 500)],
    (SENTENCES, None): lambda: [nn.Embedding(30000, 300), nn.Linear(300, 300),
                                nn.LSTM(300, 1024, bidirectional=True), nn.Linear(2048, 2048, bias=False)],
}


@pytest.mark.parametrize(("path", "variant"), list(FULL_SIZES))
def test_full_size_counts_equal_torch_modules_of_the_stated_widths(path, variant):
    with torch.device("meta"):
        expected = _count(*FULL_SIZES[path, variant]())
    assert param_counts(build(load_spec(path, variant), device="meta"))["total"] == expected


def test_masking_noise_zeroes_a_fraction_while_training_and_nothing_in_inference():
    model = build(load_spec(SILBERER, "tiny"))
    noise = model.components["noisy_textual"]
    x = torch.rand(400, 10, generator=torch.Generator().manual_seed(5)) + 0.5  # B,T, no zeros
    torch.manual_seed(0)
    noise.train()
    corrupted = noise({"input": {"values": x}})["corrupted"]
    kept = corrupted != 0
    torch.testing.assert_close(corrupted[kept], x[kept], atol=0.0, rtol=0.0)  # no rescaling, unlike dropout
    assert abs(1 - kept.float().mean().item() - 0.1) < 0.02  # prob 0.1 of 4,000 elements
    noise.eval()
    assert torch.equal(noise({"input": {"values": x}})["corrupted"], x)
