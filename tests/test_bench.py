"""`mmspec bench`: the JSON contract, every engine computing the same function as its eager model, the reference
implementation built only at the spec's exact size, and usage errors. Timings are never asserted (benchmarks/
measures them); only their consistency (p10 <= median <= p90) and the fields around them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import transformers as tf

from mmspec.api import BENCH_ENGINES, bench, build, load_spec, param_counts
from mmspec.cli import run

ROOT = Path(__file__).resolve().parents[1]
BERT = ROOT / "specs" / "bert.yaml"
TINY_BERT = {"vocab_size": 512, "max_position_embeddings": 64, "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 4, "intermediate_size": 64}  # specs/bert.yaml's tiny variant
ORT_ATOL = 1e-4  # fp32 export tolerance (docs/contracts.md)


@pytest.fixture(scope="module")
def tiny_reference(tmp_path_factory) -> Path:
    """A transformers config directory for BertForPreTraining at the tiny variant's size."""
    path = tmp_path_factory.mktemp("bert-tiny-config")
    tf.BertConfig(**TINY_BERT).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory, tiny_reference) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    code = run(["bench", str(BERT), "--variant", "tiny", "--batch", "1,3", "--size", "seq=16", "--rounds", "2",
                "--warmup", "0", "--threads", "1", "--reference", str(tiny_reference), "--json", str(out), "--profile",
                "-q"])
    assert code == 0
    return json.loads(out.read_text())


def test_json_contract(report):
    assert set(report) >= {"machine", "peak_gflops", "results", "sizes", "skipped", "reference"}
    assert report["machine"]["threads"] == 1 and report["sizes"] == {"seq": 16}
    assert report["peak_gflops"] > 0
    cpu_engines = [e for e in BENCH_ENGINES if e != "ort_cuda"]
    assert [(r["engine"], r["batch"]) for r in report["results"]] == [(e, b) for b in (1, 3) for e in cpu_engines]
    for r in report["results"]:
        assert 0 < r["p10_ms"] <= r["median_ms"] <= r["p90_ms"], r
        assert r["gflops"] > 0 and r["rounds"] == 2
    assert "ort_cuda" in report["skipped"]


def test_engines_compute_the_eager_function(report):
    """ORT, the FX-optimized module and the hand export of the reference equal their eager model at fp32
    tolerance; int8 moves the outputs, but boundedly (logits of a random tiny BERT are O(1))."""
    by = {(r["engine"], r["batch"]): r["max_abs_vs_eager"] for r in report["results"]}
    for b in (1, 3):
        assert by["optimized", b] == 0.0
        assert by["ort_cpu", b] <= ORT_ATOL
        assert by["reference_onnx", b] <= ORT_ATOL
        assert by["reference_eager", b] == 0.0
        assert 0 < by["ort_int8", b] < 0.5


def test_profiles(report):
    """ORT's operator-time shares per ORT engine and batch: they sum to 1, and the int8 graph spends its time in
    quantized kernels the fp32 one does not have."""
    profiles = report["profiles"]
    assert set(profiles) == {"ort_cpu", "ort_int8", "reference_onnx"}
    for by_batch in profiles.values():
        assert set(by_batch) == {"1", "3"}
        for shares in by_batch.values():
            assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
            assert list(shares.values()) == sorted(shares.values(), reverse=True)
    assert any("Integer" in op or "Quantize" in op for op in profiles["ort_int8"]["1"])
    assert not any("Integer" in op or "Quantize" in op for op in profiles["ort_cpu"]["1"])


def test_reference_only_at_the_spec_size():
    """Without --reference, BertForPreTraining's default (BERT-base) is not the tiny model: not timed, and the
    reason names both counts."""
    result = bench(BERT, "tiny", batches=(1,), sizes={"seq": 4}, rounds=1, warmup=0, threads=1,
                   engines=["reference_eager", "eager"])
    tiny = param_counts(build(load_spec(BERT, "tiny"), device="meta"))["total"]
    base = tf.BertForPreTraining(tf.BertConfig()).num_parameters()
    assert [r["engine"] for r in result["results"]] == ["eager"]
    assert result["reference"] is None
    assert f"{base:,}" in result["skipped"]["reference_eager"] and f"{tiny:,}" in result["skipped"]["reference_eager"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--engine", "tensorrt"], "unknown engine"),
    (["--size", "frames=4"], "no axis 'frames'"),
    (["--size", "seq=4096"], "outside"),
    (["--size", "seq"], "expected AXIS=N"),
    (["--batch", "1,x"], "comma-separated integers"),
    (["--batch", "0"], ">= 1"),
])
def test_usage_errors(argv, message, capsys):
    assert run(["bench", str(BERT), "--variant", "tiny", "-q", *argv]) == 2
    assert message in capsys.readouterr().err


def test_multi_graph_specs_are_refused(capsys):
    assert run(["bench", str(ROOT / "specs" / "gpt2.yaml"), "--variant", "tiny", "-q"]) == 2
    assert "exports:" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--reference", "/nonexistent"], "not a directory"),
    (["--rounds", "5000"], "1000"),
    (["--threads", "100000"], "256"),
])
def test_bounded_options(argv, message, capsys):
    assert run(["bench", str(BERT), "--variant", "tiny", "-q", *argv]) == 2
    assert message in capsys.readouterr().err


def test_reference_of_another_architecture_is_not_timed(tmp_path):
    tf.ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8).save_pretrained(
        tmp_path)
    result = bench(BERT, "tiny", batches=(1,), sizes={"seq": 4}, rounds=1, warmup=0, threads=1,
                   engines=["reference_eager", "eager"], reference=tmp_path)
    assert [r["engine"] for r in result["results"]] == ["eager"]
    assert "reference_eager" in result["skipped"]
