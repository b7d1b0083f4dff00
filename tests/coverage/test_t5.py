"""NLP-10 (T5): parameter parity of T5-small/base/large with transformers' T5ForConditionalGeneration on the meta
device, `import hf` + `--weights` of random T5 checkpoints against transformers' logits and `generate`, decoding of
the tiny spec on ONNX Runtime equal to eager (step graphs and the monolithic model, CLI included), located shape
errors, and `fit` with span corruption."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as tf
from hf_reference import PARITY_ATOL, randomize

from mmspec import api
from mmspec.blocks.positions import RelativePositionBias, relative_position_bucket
from mmspec.cli import run
from mmspec.errors import SpecError
from mmspec.importers.hf import import_hf, write_spec
from mmspec.runtime import beam_search, greedy, sample
from mmspec.runtime.decoding import FullDecoder, Pipeline

ROOT = Path(__file__).resolve().parents[2]
T5 = ROOT / "specs" / "t5.yaml"
EXPORTS = {"encoder": {"inputs": ["source"], "outputs": ["encoder"]},
           "decoder_step": {"inputs": ["target", "encoder"], "outputs": ["decoder.logits"], "cache": ["decoder"]}}
"""The graphs of specs/t5.yaml, added to an imported spec (import hf writes one graph, like the other families)."""


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _config(loaded: api.LoadedSpec) -> tf.T5Config:
    """transformers' T5Config with the spec's sizes."""
    enc, dec = loaded.spec.encoders["encoder"], loaded.spec.encoders["decoder"]
    return tf.T5Config(vocab_size=loaded.spec.modalities["source"].vocab_size, d_model=enc.width, d_kv=enc.head_dim,
                       d_ff=enc.ffn, num_layers=enc.layers, num_decoder_layers=dec.layers, num_heads=enc.heads,
                       relative_attention_num_buckets=enc.buckets, relative_attention_max_distance=enc.max_distance,
                       dropout_rate=enc.dropout, layer_norm_epsilon=enc.eps, feed_forward_proj=enc.feed_forward)


@pytest.mark.parametrize("variant", [None, "small", "large"])
def test_sizes_equal_transformers(variant):
    loaded = api.load_spec(T5, variant, budget=None)
    ours = _count(api.build(loaded, device="meta"))  # the shared table counts once
    config = _config(loaded)
    with torch.device("meta"):
        theirs = _count(tf.T5ForConditionalGeneration(config))
    assert ours == loaded.estimate.params == theirs, (ours, loaded.estimate.params, theirs)
    if variant == "small":  # transformers' default configuration is T5-small
        assert {k: v for k, v in config.to_dict().items() if k != "num_decoder_layers"} == {
            k: v for k, v in tf.T5Config().to_dict().items() if k != "num_decoder_layers"}


def test_relative_position_bias_with_a_past_equals_transformers():
    """Query positions P..P+T-1 against keys 0..P+T-1, bidirectional and causal buckets, as T5Attention."""
    for decoder in (False, True):
        config = tf.T5Config(d_model=16, d_kv=4, num_heads=4, is_decoder=decoder)
        theirs = tf.models.t5.modeling_t5.T5Attention(config, has_relative_attention_bias=True, layer_idx=0)
        ours = RelativePositionBias(4, 32, 128, bidirectional=not decoder)
        ours.relative_attention_bias.weight.data.copy_(theirs.relative_attention_bias.weight)
        for past, t in ((0, 7), (150, 1), (3, 4)):
            expected = theirs.compute_bias(t, past + t, past_seen_tokens=past)  # 1,H,T,P+T
            assert torch.equal(ours(t, past + t, past), expected), (decoder, past, t)
        relative = torch.arange(-300, 300)[None, :]  # 1,600
        bucket = theirs._relative_position_bucket(relative, not decoder, 32, 128)
        assert torch.equal(relative_position_bucket(relative, not decoder, 32, 128), bucket)


def _errors(tmp_path: Path, old: str, new: str) -> str:
    path = tmp_path / "t.yaml"
    text = T5.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    with pytest.raises(SpecError) as info:
        api.load_spec(path)
    return str(info.value)


@pytest.mark.parametrize(("old", "new", "message"), [
    ("share: encoder", "share: encodr", "share 'encodr' must name another t5 stack; candidates: encoder"),
    ("target: {type: tokens, vocab_size: 32128", "target: {type: tokens, vocab_size: 32000",
     "the table of 'encoder' is [32128, 768] but this stack needs [32000, 768]"),
    ("    feed_forward: relu\n    dropout: 0.1\n  decoder:", "    lm_head: {}\n    dropout: 0.1\n  decoder:",
     "an LM head belongs to a decoder"),
    ("    heads: 12\n    head_dim: 64\n    ffn: 3072\n    feed_forward: relu\n    dropout: 0.1\n  decoder:",
     "    heads: 7\n    ffn: 3072\n    feed_forward: relu\n    dropout: 0.1\n  decoder:",
     "width 768 is not divisible by heads 7; set head_dim"),
])  # fmt: skip
def test_shape_errors_are_located(tmp_path, old, new, message):
    err = _errors(tmp_path, old, new)
    assert message in err and f"{tmp_path / 't.yaml'}:" in err, err


SMALL = {"vocab_size": 99, "d_model": 16, "d_kv": 6, "d_ff": 37, "num_layers": 2, "num_heads": 3,
         "relative_attention_num_buckets": 8, "relative_attention_max_distance": 20}
"""A tiny T5 whose inner width (heads x d_kv = 18) differs from d_model (transformers' generate needs as many
decoder as encoder layers; tests/weights/test_import_hf.py imports one with more)."""
VERSIONS = {"v1_0": {"feed_forward_proj": "relu"},
            "v1_1": {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}}
"""transformers 5 ties v1.1's head too (its config.json then says tie_word_embeddings true), but does not scale."""


def _seq2seq_inputs(rows: int = 3, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    source = torch.randint(2, 99, (rows, 7), generator=g)  # B,S
    target = torch.randint(2, 99, (rows, 5), generator=g)  # B,T
    target[:, 0] = 0  # the decoder starts from the pad id
    source_mask = torch.ones_like(source)
    source_mask[1, 4:] = 0  # a padded source row
    target_mask = torch.ones_like(target)
    target_mask[2, 3:] = 0  # a padded target row
    return {"source": source, "source_mask": source_mask, "target": target, "target_mask": target_mask}


def _checkpoint(path: Path, version: str, sharpen: float = 1.0) -> tf.T5ForConditionalGeneration:
    """A random T5 of `version` saved at `path`; `sharpen` scales every projection (not norms, table, bias)."""
    torch.manual_seed(0)
    reference = randomize(tf.T5ForConditionalGeneration(tf.T5Config(**SMALL, **VERSIONS[version])))
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if not any(k in name for k in ("layer_norm", "shared", "relative_attention_bias")):
                p.mul_(sharpen)
    reference.save_pretrained(path)
    return reference


def _import(ckpt: Path, spec: Path, version: str) -> dict:
    assert run(["import", "hf", str(ckpt), "-o", str(spec)]) == 0
    tree, arch = import_hf(ckpt)
    proj = VERSIONS[version]["feed_forward_proj"]
    assert arch == "T5ForConditionalGeneration" and tree["encoders"]["decoder"]["feed_forward"] == proj
    return tree


@pytest.fixture(scope="module", params=sorted(VERSIONS))
def imported(request, tmp_path_factory):
    """(transformers reference, build dir, ORT pipeline) of an imported checkpoint compiled with its weights; its
    projections are doubled so that greedy decoding does not just repeat one token."""
    tmp = tmp_path_factory.mktemp(f"t5_{request.param}")
    reference = _checkpoint(tmp / "ckpt", request.param, sharpen=2.0)
    tree = _import(tmp / "ckpt", tmp / "t5.yaml", request.param)
    tree.pop("outputs")
    tree["exports"] = EXPORTS
    write_spec(tree, tmp / "step.yaml")
    api.compile(tmp / "step.yaml", out_dir=tmp / "build", weights=tmp / "ckpt")
    return reference, tmp / "build", Pipeline.open(tmp / "build")


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_import_with_weights_equals_transformers_logits(version, tmp_path):
    """Teacher-forced logits of the imported spec with the checkpoint's weights: padding masks on both sides, v1.0
    (tied, scaled head) and transformers 5's gated-GELU v1.1 (tied, unscaled)."""
    reference = _checkpoint(tmp_path / "ckpt", version)
    tmp = tmp_path
    tree = _import(tmp / "ckpt", tmp / "t5.yaml", version)
    lm = tree["encoders"]["decoder"]["lm_head"]
    assert lm == {"tied": True, "scale": tree["encoders"]["decoder"]["feed_forward"] == "relu"}
    loaded = api.load_spec(tmp / "t5.yaml")
    model = api.build(loaded, weights=tmp / "ckpt")
    assert model.weights_report["new"] == [] and model.weights_report["ignored"] == []
    x = _seq2seq_inputs()
    with torch.no_grad():
        (ours,) = model(x)
        theirs = reference(input_ids=x["source"], attention_mask=x["source_mask"], decoder_input_ids=x["target"],
                           decoder_attention_mask=x["target_mask"]).logits
    diff = (ours - theirs).abs().max().item()
    assert diff <= PARITY_ATOL and theirs.abs().max() > 1, diff


def _generate(reference, source: np.ndarray, mask: np.ndarray, new: int) -> np.ndarray:
    with torch.no_grad():
        return reference.generate(torch.from_numpy(source), attention_mask=torch.from_numpy(mask), do_sample=False,
                                  max_new_tokens=new, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1).numpy()


def test_imported_checkpoint_decodes_as_transformers_generate(imported, capsys):
    """Greedy decoding of the compiled graphs on ONNX Runtime (runtime API and `mmspec generate`) equals
    transformers' generate token for token; the prompt is the decoder start token (pad = 0)."""
    reference, build, ort = imported
    source = np.random.default_rng(5).integers(2, 99, (3, 6))  # B,S
    mask = np.ones_like(source)
    mask[2, 3:] = 0
    expected = _generate(reference, source, mask, 12)
    start = np.zeros((3, 1), np.int64)
    tokens = greedy(ort.decoder({"source": source, "source_mask": mask}), start, 12, eos_id=1, pad_id=0)
    np.testing.assert_array_equal(tokens, expected)
    assert len({tuple(r) for r in expected[:, 1:].tolist()}) > 1 and len(np.unique(expected)) > 3
    assert _cli_greedy(capsys, build, source, mask, 12) == tokens.tolist()


def _cli_greedy(capsys, build: Path, source: np.ndarray, mask: np.ndarray, new: int) -> list[list[int]]:
    """Greedy tokens printed by `mmspec generate` on a T5 build, one prompt (the start token 0) per source row."""
    args = ["generate", str(build), "--max-new-tokens", str(new), "--eos-id", "1", "--pad-id", "0", "--json", "-q"]
    for row, row_mask in zip(source, mask, strict=True):
        args += ["--prompt", "0", "--input", "source=" + " ".join(map(str, row)),
                 "--input", "source_mask=" + " ".join(map(str, row_mask))]
    capsys.readouterr()
    assert run(args) == 0
    return json.loads(capsys.readouterr().out)["tokens"]


@pytest.fixture(scope="module")
def tiny(tiny_export):
    """(ORT pipeline, the same graphs eager, the eager monolithic model, build dir) of specs/t5.yaml's tiny."""
    out, _ = tiny_export(T5)
    ort = Pipeline.open(out)
    model = api.build(api.load_spec(T5, "tiny"))
    eager = Pipeline(ort.manifest, {name: api.eager_graph(model, name) for name in ort.graphs})
    return ort, eager, api.eager_graph(model), out


def _source(seed: int) -> dict[str, np.ndarray]:
    source = np.random.default_rng(seed).integers(2, 64, (2, 7))  # B,S
    mask = np.ones_like(source)
    mask[1, 5:] = 0  # a padded source row
    return {"source": source, "source_mask": mask}


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_tiny_decodes_on_ort_as_eager(tiny, strategy):
    """The step graphs on ONNX Runtime, the same graphs eager, and the monolithic eager model rerun on the whole
    target each step give the same tokens."""
    ort, eager, full, _ = tiny
    start = np.zeros((2, 1), np.int64)
    run_ = {
        "greedy": lambda d: greedy(d, start, 10),
        "beam": lambda d: beam_search(d, start, 10, beams=3, eos_id=1, length_penalty=1.2),
        "sample": lambda d: sample(d, start, 10, top_k=20, temperature=1.5, seed=4),
    }[strategy]
    inputs = _source(1)
    ours = run_(ort.decoder(inputs))
    np.testing.assert_array_equal(ours, run_(eager.decoder(inputs)))
    np.testing.assert_array_equal(ours, run_(FullDecoder(full, "target", "decoder_logits", inputs,
                                                         mask="target_mask")))
    assert ours.shape[1] > 1
    if strategy == "sample":
        assert len(np.unique(ours)) > 4


def test_tiny_generate_cli_equals_the_runtime(tiny, capsys):
    ort, _, _, out = tiny
    inputs = _source(0)
    expected = greedy(ort.decoder(inputs), np.zeros((2, 1), np.int64), 6)
    args = ["generate", str(out), "--max-new-tokens", "6", "--json", "-q"]
    for row, row_mask in zip(inputs["source"], inputs["source_mask"], strict=True):
        args += ["--prompt", "0", "--input", "source=" + " ".join(map(str, row)),
                 "--input", "source_mask=" + " ".join(map(str, row_mask))]
    capsys.readouterr()
    assert run(args) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == expected.tolist()


def test_tiny_forward_with_padding_keeps_unpadded_logits(tiny):
    """The monolithic decoder's logits at a row's real positions do not depend on its padded tail."""
    _, _, full, _ = tiny
    inputs = {**_source(2), "target": np.array([[0, 5, 9, 11], [0, 7, 3, 2]]),
              "target_mask": np.array([[1, 1, 1, 1], [1, 1, 0, 0]])}
    padded = full(inputs)["decoder_logits"]  # B,T,V
    cut = full({**inputs, "target": inputs["target"][:, :2], "target_mask": inputs["target_mask"][:, :2]})
    np.testing.assert_allclose(padded[1, :2], cut["decoder_logits"][1], atol=1e-5)


def test_fit_lowers_the_loss_of_the_tiny_variant(tmp_path):
    """Span corruption on a fixed batch: sentinel spans in the source, the decoder predicts them."""
    out = tmp_path / "fit.json"
    assert run(["fit", str(T5), "--variant", "tiny", "--steps", "40", "--json", str(out), "-q"]) == 0
    losses = json.loads(out.read_text())["losses"]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < 0.7 * losses[0], losses[::5]


def test_spec_is_what_import_hf_writes_for_the_base_config(tmp_path):
    """The canonical spec's stacks are `mmspec import hf` of T5-base's config (plus exports and the objective)."""
    base = {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "d_model": 768, "d_ff": 3072,
            "num_layers": 12, "num_heads": 12}
    (tmp_path / "config.json").write_text(json.dumps(base))
    tree, _ = import_hf(tmp_path)
    write_spec(tree, tmp_path / "base.yaml")
    spec, imported = api.load_spec(T5).spec, api.load_spec(tmp_path / "base.yaml").spec
    for name in ("encoder", "decoder"):
        assert spec.encoders[name].model_dump() == imported.encoders[name].model_dump(), name
    assert spec.modalities == imported.modalities and spec.weights == imported.weights


@pytest.mark.slow
def test_t5_small_full_size_decodes_as_transformers(tmp_path, capsys):
    """specs/t5.yaml's small variant compiled with a random T5ForConditionalGeneration(T5Config()) checkpoint
    (60.5M): greedy decoding on ONNX Runtime, by the runtime API and by `mmspec generate`, equals transformers'
    generate -- `pytest -m slow tests/coverage`."""
    torch.manual_seed(0)
    reference = tf.T5ForConditionalGeneration(tf.T5Config()).eval()
    reference.save_pretrained(tmp_path / "ckpt")
    api.compile(T5, out_dir=tmp_path / "build", variant="small", weights=tmp_path / "ckpt")
    source = np.random.default_rng(3).integers(2, 32100, (2, 9))  # B,S
    mask = np.ones_like(source)
    mask[1, 6:] = 0
    tokens = greedy(Pipeline.open(tmp_path / "build").decoder({"source": source, "source_mask": mask}),
                    np.zeros((2, 1), np.int64), 12, eos_id=1, pad_id=0)
    np.testing.assert_array_equal(tokens, _generate(reference, source, mask, 12))
    assert _cli_greedy(capsys, tmp_path / "build", source, mask, 12) == tokens.tolist()
