"""Grounded language models ISL-01 (specs/bruni.yaml), ISL-05 (specs/vis_w2v.yaml), ISL-07
(specs/hill_korhonen.yaml), ISL-09 (specs/bordes.yaml), ISL-12 (specs/vokenization.yaml), ISL-13
(specs/iace.yaml) and ISL-15 (specs/xdbert.yaml): the full sizes against the references of tests/references.py
or torch.nn modules of the stated widths, outputs against the reference modules with the same weights, the
objectives and statistical preprocessing against direct computations, and `mmspec fit` on every tiny variant
with objectives (every objective's loss goes down)."""

from __future__ import annotations

import json
from pathlib import Path

import grounded_references as GR
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers as tf
from hf_reference import PARITY_ATOL, randomize
from references import reference_count
from safetensors.torch import save_model

from mmspec.api import build, load_spec, param_counts
from mmspec.cli import run
from mmspec.components.objectives.word_vectors.preprocess import (
    feature_fusion,
    local_mutual_information,
    mixed_matrices,
    pseudo_sentences,
    score_fusion,
    skipgram_pairs,
)
from mmspec.graph.inputs import make_inputs, trace_sizes

SPECS = Path(__file__).resolve().parents[2] / "specs"
VOKENIZATION, XDBERT, IACE = SPECS / "vokenization.yaml", SPECS / "xdbert.yaml", SPECS / "iace.yaml"
VIS_W2V, HILL_KORHONEN, BRUNI = SPECS / "vis_w2v.yaml", SPECS / "hill_korhonen.yaml", SPECS / "bruni.yaml"
BORDES = SPECS / "bordes.yaml"


@pytest.mark.parametrize(("path", "variant"), [(VOKENIZATION, "tiny"), (XDBERT, "tiny"), (IACE, "tiny"),
                                               (VIS_W2V, "tiny"), (HILL_KORHONEN, "tiny"), (BORDES, "tiny")],
                         ids=lambda x: x.stem if isinstance(x, Path) else x)
def test_mmspec_fit_lowers_every_objective(path, variant, tmp_path):
    out = tmp_path / "fit.json"
    assert run(["fit", str(path), "--variant", variant, "--steps", "30", "--json", str(out), "-q"]) == 0
    history = json.loads(out.read_text())
    assert history["losses"][-1] < history["losses"][0], history["losses"][::10]
    for name, losses in history["objectives"].items():
        assert losses[-1] < losses[0], (name, losses[::10])


@pytest.mark.parametrize(("path", "variant", "key"), [(VOKENIZATION, None, "vokenization"),
                                                      (VOKENIZATION, "small", "vokenization:small"),
                                                      (XDBERT, None, "xdbert"), (IACE, None, "iace")])
def test_full_sizes_equal_the_references(path, variant, key):
    assert param_counts(build(load_spec(path, variant), device="meta"))["total"] == reference_count(key)[0]


def test_vokenization_logits_match_the_official_model_with_its_weights(tmp_path):
    """The tiny LM loads a CoLwithBert-named checkpoint (bert.*, cls.predictions.*, visual_cls_head.*) and
    gives its MLM and voken logits; the voken head is trained but not exported."""
    loaded = load_spec(VOKENIZATION, "tiny")
    reference = randomize(GR.vokenization(16, 1, 2, 32, vokens=10, vocab=64, positions=16))
    save_model(reference, str(tmp_path / "model.safetensors"))
    model = build(loaded, weights=tmp_path)
    assert model.weights_report["loaded"] == model.weights_report["tensors"] and not model.weights_report["new"]
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=1)
    with torch.no_grad():
        values = model.node_values(inputs)
        mlm, vokens = reference(inputs["text"], inputs["text_mask"], inputs["text_segments"])
    assert vokens.abs().max() > 0.1
    torch.testing.assert_close(values["mlm"]["logits"], mlm, atol=PARITY_ATOL, rtol=0)
    torch.testing.assert_close(values["voken"]["logits"], vokens, atol=PARITY_ATOL, rtol=0)
    assert model.output_names == ["bert_sequence"]


def test_per_token_cross_entropy_skips_unlabelled_positions():
    model = build(load_spec(VOKENIZATION, "tiny"))
    loss = model.objectives["voken_loss"]
    logits = torch.randn(2, 5, 10, generator=torch.Generator().manual_seed(0))  # B,S,vokens
    labels = torch.tensor([[1, 2, -100, 3, 4], [-100, -100, 5, 6, 7]])  # B,S
    kept = labels != -100
    expected = torch.nn.functional.cross_entropy(logits[kept], labels[kept])
    with torch.no_grad():
        ours = loss({"input": {"logits": logits}}, {"labels": labels})
    torch.testing.assert_close(ours, expected)


_XLAYER = {  # ours -> the official LXRTXLayer rebuilt in grounded_references (dense/LayerNorm names as LXMERT's)
    "a_from_b": "language_attention", "b_from_a": "visual_attention",
    "a_block.attn": "lang_self_att", "b_block.attn": "visn_self_att",
}


def _official_names(name: str) -> str:
    """A parameter name of our cross-modality layer as the rebuilt LXRTXLayer names it."""
    for ours, theirs in (("a_res.norm", "language_attention.output.LayerNorm"),
                         ("b_res.norm", "visual_attention.output.LayerNorm"),
                         ("a_block.attn_res.norm", "lang_self_att.output.LayerNorm"),
                         ("b_block.attn_res.norm", "visn_self_att.output.LayerNorm"),
                         ("a_block.ffn_res.norm", "lang_ffn.LayerNorm"), ("b_block.ffn_res.norm", "visn_ffn.LayerNorm"),
                         ("a_block.ffn.fc1", "lang_ffn.inter"), ("a_block.ffn.fc2", "lang_ffn.out"),
                         ("b_block.ffn.fc1", "visn_ffn.inter"), ("b_block.ffn.fc2", "visn_ffn.out")):
        if name.startswith(ours + "."):
            return theirs + name[len(ours):]
    prefix, _, rest = name.rpartition(".")[0].rpartition(".")
    part = {"q": "att.query", "k": "att.key", "v": "att.value", "out": "output.dense"}[rest]
    return f"{_XLAYER[prefix]}.{part}.{name.rpartition('.')[2]}"


def test_xdbert_cross_layer_matches_the_official_lxrt_x_layer():
    """Both streams read the other's input in cross-attention (each in its own width and heads), then run
    self-attention and the feed-forward, post-norm throughout; padding of either stream is masked."""
    model = build(load_spec(XDBERT, "tiny")).eval()
    ours = model.components["cross"].layers[0]
    reference = GR.CrossModalityLayer(8, 2, 6, 2, 16).eval()
    state = {_official_names(k): v for k, v in ours.state_dict().items()}
    reference.load_state_dict(state)  # strict: every official parameter has one of ours
    g = torch.Generator().manual_seed(0)
    lang, visn = torch.randn(2, 5, 8, generator=g), torch.randn(2, 4, 6, generator=g)  # B,S,768 / B,T,512 full size
    lang_mask, visn_mask = torch.tensor([[1, 1, 1, 0, 0], [1] * 5]), torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    lang_bias = (1.0 - lang_mask[:, None, None].float()) * -1e9  # B,1,1,S
    visn_bias = (1.0 - visn_mask[:, None, None].float()) * -1e9  # B,1,1,T
    with torch.no_grad():
        out = model.components["cross"]({"text": {"sequence": lang, "mask": lang_mask},
                                         "vision": {"sequence": visn, "mask": visn_mask}})
        want_lang, want_visn = reference(lang, lang_bias, visn, visn_bias)
    torch.testing.assert_close(out["text"], want_lang, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["vision"], want_visn, atol=1e-5, rtol=1e-5)
    pool = model.components["cross"].text_pool
    (dense,) = [m for m in pool.modules() if isinstance(m, torch.nn.Linear)]
    torch.testing.assert_close(out["text_pooled"], torch.tanh(dense(want_lang[:, 0])), atol=1e-5, rtol=1e-5)


def test_xdbert_exports_only_the_bert_stream_and_its_heads_are_tied():
    model = build(load_spec(XDBERT, "tiny"))
    assert model.output_names == ["cross_text", "cross_text_pooled"]
    c = model.components
    assert c["mlm"].weight is c["bert"].embed.word.weight and c["clip_mlm"].weight is c["clip_t"].embed.word.weight


def test_iace_prediction_matches_the_official_models_with_their_weights(tmp_path):
    """The tiny spec loads the fine-tuned BertForSequenceClassification and LanguageAndVisionConcat (`langvis.`)
    and predicts what the official evaluation computes: (LM logits + mean of both imagination orders) / 2."""
    loaded = load_spec(IACE, "tiny")
    config = tf.BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=16, max_position_embeddings=12, num_labels=2)
    reference = randomize(GR.IACE(config, clip=6, hidden=8))
    save_model(reference, str(tmp_path / "model.safetensors"))
    model = build(loaded, weights=tmp_path)
    assert model.weights_report["loaded"] == model.weights_report["tensors"] and not model.weights_report["new"]
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=2)
    with torch.no_grad():
        (ours,) = model(inputs)
        theirs = reference(inputs["text"], inputs["text_mask"], inputs["text_segments"], inputs["imagination"],
                           inputs["clip_text"])
    assert theirs.abs().max() > 0.01
    torch.testing.assert_close(ours, theirs, atol=PARITY_ATOL, rtol=0)


def test_vis_w2v_predicts_the_scene_cluster_from_the_mean_word_vector():
    """refineFunctions.c computeMultinomialPhrase: softmax(syn1 . mean of the sentence's word vectors), no bias;
    padding words are left out of the mean. Full size: the stated V x d table and K x d layer."""
    model = build(load_spec(VIS_W2V, "tiny")).eval()
    words = torch.tensor([[3, 7, 9, 0, 0, 0], [1, 2, 3, 4, 5, 6]])  # B,S
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1] * 6])  # B,S
    table = model.components["w2v"].table.weight.detach()  # V,d
    (layer,) = [m for m in model.components["scene"].modules() if isinstance(m, torch.nn.Linear)]
    assert layer.bias is None
    with torch.no_grad():
        logits = model.node_values({"words": words, "words_mask": mask})["scene"]["logits"]
    mean = (table[words] * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # B,d
    torch.testing.assert_close(logits, mean @ layer.weight.detach().T, atol=1e-6, rtol=1e-5)
    with torch.device("meta"):
        expected = sum(p.numel() for m in (torch.nn.Embedding(100000, 200), torch.nn.Linear(200, 25, bias=False))
                       for p in m.parameters())
    assert param_counts(build(load_spec(VIS_W2V), device="meta"))["total"] == expected


def test_hill_korhonen_pseudo_sentences_follow_their_sentence_with_the_share_alpha():
    corpus = [[1, 2, 3], [4, 2], [5]]
    features = {2: [10, 10, 11], 5: [12]}  # concrete words: feature-word ids repeated by strength
    assert pseudo_sentences(corpus, features, 0.0) == corpus
    assert pseudo_sentences(corpus, features, 1.0) == [
        [1, 2, 3], [2, 10, 10, 11], [4, 2], [2, 10, 10, 11], [5], [5, 12]]
    many = pseudo_sentences([[2]] * 4000, features, 0.25, np.random.default_rng(1))
    assert abs((len(many) - 4000) / 4000 - 0.25) < 0.03
    pairs = {p for s in pseudo_sentences(corpus, features, 1.0) for p in skipgram_pairs(s, window=2)}
    assert (2, 10) in pairs and (10, 2) in pairs and (5, 12) in pairs and (1, 10) not in pairs


def test_bruni_statistics_lmi_svd_mixing_and_both_fusions():
    rng = np.random.default_rng(0)
    text, visual = rng.poisson(2.0, (12, 5)).astype(float), rng.poisson(1.0, (12, 2)).astype(float)  # V,Ct / V,Cv
    lmi, n = local_mutual_information(text), text.sum()
    for w, c in [(0, 0), (3, 4), (11, 2)]:
        x = text[w, c]
        want = max(0.0, x * np.log(x * n / (text[w].sum() * text[:, c].sum()))) if x else 0.0
        assert lmi[w, c] == pytest.approx(want)
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    joint = np.concatenate([unit(text), unit(visual)], 1)  # V,7
    singular = np.linalg.svd(joint, compute_uv=False)
    mixed_t, mixed_v = mixed_matrices(text, visual, 3)
    low = np.concatenate([mixed_t, mixed_v], 1)
    assert mixed_t.shape == (12, 5) and np.linalg.matrix_rank(low) == 3
    # Eckart-Young: the truncated SVD is the best rank-3 approximation of the joint matrix
    assert np.linalg.norm(joint - low) == pytest.approx(np.sqrt((singular[3:] ** 2).sum()))
    fused = feature_fusion(mixed_t, mixed_v, 0.7)  # V,7
    np.testing.assert_allclose(np.linalg.norm(fused[:, :5], axis=1), 0.7)
    scores = score_fusion(mixed_t, mixed_v, 0.7)  # V,V
    np.testing.assert_allclose(scores, 0.7 * unit(mixed_t) @ unit(mixed_t).T + 0.3 * unit(mixed_v) @ unit(mixed_v).T)
    model = build(load_spec(BRUNI, "tiny")).eval()  # the frozen table holds the fused vectors
    table = model.components["vectors"].table
    assert not table.weight.requires_grad
    with torch.no_grad():
        table.weight.copy_(torch.from_numpy(fused))
        (out,) = model({"words": torch.tensor([[4], [9]])})
    torch.testing.assert_close(out, torch.from_numpy(fused[[4, 9]]).float())


def _grounding_by_loops(g: torch.Tensor, v: torch.Tensor, margin: float) -> float:
    """Bordes et al.'s cluster hinge (rows 2i, 2i+1 share an image) minus the Pearson correlation of the two
    similarity structures, term by term."""
    cos = lambda a, b: float(F.cosine_similarity(a, b, dim=0))  # noqa: E731
    n = len(g)
    hinges = [max(0.0, margin - cos(g[a], g[a ^ 1]) + cos(g[a], g[m])) for a in range(n) for m in range(n)
              if m // 2 != a // 2]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    s = np.array([cos(g[i], g[j]) for i, j in pairs])
    t = np.array([cos(v[i], v[j]) for i, j in pairs])
    return sum(hinges) / len(hinges) - float(np.corrcoef(s, t)[0, 1])


def test_bordes_grounding_is_the_cluster_hinge_minus_the_similarity_correlation():
    model = build(load_spec(BORDES, "tiny"))
    g = torch.Generator().manual_seed(5)
    grounded, image = torch.randn(6, 4, generator=g), torch.randn(6, 5, generator=g)  # B,512 / B,2048 full size
    with torch.no_grad():
        ours = model.objectives["grounding"]({"input": {"embedding": grounded}, "image": {"values": image}}, {})
    assert float(ours) == pytest.approx(_grounding_by_loops(grounded, image, 0.5), abs=1e-5)
    with torch.device("meta"):
        expected = sum(p.numel() for m in (torch.nn.Embedding(20000, 620), torch.nn.GRU(620, 2400, batch_first=True),
                                            torch.nn.Linear(2400, 512)) for p in m.parameters())
    assert param_counts(build(load_spec(BORDES), device="meta"))["total"] == expected
