"""benchmarks/run: the page it writes (docs/benchmarks.md) from bench and compile results, and the target verdicts
it derives. Synthetic results stand in for measurements (times are never measured in tests); `mmspec bench`
itself is tested in tests/test_bench.py."""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    loader = importlib.machinery.SourceFileLoader("benchmarks_run", str(ROOT / "benchmarks" / "run"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def _run(ms: dict[str, float], batch: int = 1) -> dict:
    return {"machine": {"cpu": "test cpu", "cores": 2, "torch": "t", "onnxruntime": "o"}, "peak_gflops": 100.0,
            "skipped": {"ort_cuda": "no GPU"},
            "results": [{"engine": e, "batch": batch, "median_ms": v} for e, v in ms.items()]}


def _args(**kw):
    return argparse.Namespace(threads=2, rounds=15, repeat=2, quick=False, **kw)


def test_ratios_and_verdicts(script):
    fast = _run({"reference_eager": 10.0, "reference_onnx": 8.0, "ort_cpu": 7.0, "ort_int8": 4.0, "eager": 11.0})
    slow = _run({"reference_eager": 10.0, "reference_onnx": 8.0, "ort_cpu": 8.0, "ort_int8": 6.0, "eager": 11.0})
    runs = {"bert": [fast], "vit": [slow]}
    rows = {t: (m, ok) for t, m, ok, _ in script.targets(runs, [], None, [], [1])}
    assert rows["bert B1: ort_cpu ≤ 0.95 × reference_onnx"] == ("0.88", "yes")  # 7/8
    assert rows["vit B1: ort_cpu ≤ 0.95 × reference_onnx"] == ("1.00", "**no**")
    assert rows["bert B1: ort_cpu ≥ 1.3× faster than reference_eager"] == ("1.43", "yes")  # 10/7
    assert rows["bert B1: ort_int8 ≥ 2× faster than reference_eager"] == ("2.50", "yes")
    assert rows["clip B1: ort_cpu ≤ 0.95 × reference_onnx"] == ("—", "—")  # not measured: no verdict


def test_spread_of_repeats(script):
    runs = [_run({"ort_cpu": v, "reference_onnx": 10.0}) for v in (9.0, 11.0, 10.0)]
    assert script.spread(script.ratios(runs, "ort_cpu", "reference_onnx", 1)) == "1.00 (0.90–1.10)"


def test_compile_targets(script):
    gib = 2**30
    compiles = [{"spec": "bert", "wall_s": 12.0, "params": 110_000_000, "weight_bytes": 440_000_000,
                 "peak_rss_bytes": 3 * gib},
                {"spec": "vit", "wall_s": 20.0, "params": 86_000_000, "weight_bytes": 344_000_000,
                 "peak_rss_bytes": int(1.2 * gib)}]
    int8 = {"report": {"precision": {"vs_fp32": {"mlm": {"top1_agreement": 0.995}}}}}
    tiny = [{"spec": "gpt2", "wall_s": 6.0}]
    rows = {t.split(" (")[0]: ok for t, _, ok, _ in script.targets({}, compiles, int8, tiny, [1])}
    assert rows["bert: compile peak RSS ≤ 2 × weights + 1.5 GiB"] == "**no**"  # 3 GiB > 0.82 + 1.5
    assert rows["vit: compile peak RSS ≤ 2 × weights + 1.5 GiB"] == "yes"
    assert rows["bert: spec → verified ONNX ≤ 15 s"] == "yes"
    assert rows["bert int8: MLM top-1 agreement ≥ 99 %"] == "yes"
    assert rows["tiny compile ≤ 5 s wall"] == "**no**"


def test_a_target_not_met_says_why_from_the_measurements(script):
    run = _run({"reference_eager": 10.0, "reference_onnx": 8.0, "ort_cpu": 8.0, "ort_int8": 6.0})
    for r, g in zip(run["results"], (40.0, 50.0, 50.0, 70.0), strict=True):
        r["gflops"] = g
    run["profiles"] = {"ort_cpu": {"1": {"MatMul": 0.8, "Softmax": 0.1}},
                       "reference_onnx": {"1": {"MatMul": 0.7, "Attention": 0.2}},
                       "ort_int8": {"1": {"DynamicQuantizeMatMul": 0.5, "MatMul": 0.3}}}
    int8 = {"report": {"precision": {"vs_fp32": {"mlm": {"top1_agreement": 0.96, "top1_margin": 0.081,
                                                         "max_abs": 0.05}}}}}
    compiles = [{"spec": "bert", "wall_s": 20.0, "params": 1, "weight_bytes": 4, "peak_rss_bytes": 3 * 2**30,
                 "report": {"timings_s": {"export": 9.0, "verify": 6.0, "load": 0.1}}}]
    rows = {t.split(" (")[0]: (ok, why) for t, _, ok, why in script.targets(
        {"bert": [run], "vit": [_run({"reference_onnx": 10.0, "ort_cpu": 5.0})]}, compiles, int8,
        [{"spec": "gpt2", "wall_s": 7.0}], [1])}
    ok, why = rows["bert B1: ort_cpu ≤ 0.95 × reference_onnx"]
    assert ok == "**no**" and "ort_cpu runs at 50 % and reference_onnx at 50 %" in why
    assert "MatMul 80 %, Softmax 10 %" in why and "Attention 20 %" in why and script.NEXT["attention"] in why
    assert rows["vit B1: ort_cpu ≤ 0.95 × reference_onnx"] == ("yes", "")
    assert "DynamicQuantizeMatMul 50 %, MatMul 30 %" in rows["bert B1: ort_int8 ≥ 2× faster than reference_eager"][1]
    assert "margin is 0.081, int8 moves a logit by up to 0.050" in rows["bert int8: MLM top-1 agreement ≥ 99 %"][1]
    assert "slowest phases: export 9.0 s, verify 6.0 s, load 0.1 s" in rows["bert: spec → verified ONNX ≤ 15 s"][1]
    assert "slowest: gpt2 7.0 s" in rows["tiny compile ≤ 5 s wall"][1]


def test_the_large_compile_is_a_target(script):
    big = {"spec": "parti --variant parti_3b", "wall_s": 634.0, "params": 3_074_318_336,
           "weight_bytes": 4 * 3_074_318_336, "peak_rss_bytes": 21 * 2**30, "large": True}
    rows = {t: (m, ok) for t, m, ok, _ in script.targets({}, [big], None, [], [1])}
    assert rows["parti --variant parti_3b (3.1B parameters) compiles and verifies"] == ("634 s", "yes")
    rss = "parti --variant parti_3b: compile peak RSS ≤ 2 × weights + 1.5 GiB (24.41 GiB)"
    assert rows[rss] == ("21.00 GiB", "yes")
    failed = {"spec": "parti --variant parti_3b", "failed": "killed", "large": True}
    (row,) = [r for r in script.targets({}, [failed], None, [], [1]) if "compiles and verifies" in r[0]]
    assert row[2] == "**no**" and row[3].startswith("killed.")


def test_page(script):
    runs = {"bert": [_run({"reference_eager": 10.0, "reference_onnx": 8.0, "ort_cpu": 7.0})]}
    text = script.page(runs, [{"spec": "bert", "failed": "boom"}], None, [], [1], _args())
    assert text.startswith(script.HEADER)
    assert "| bert | 1 | 0.88 | 0.70 | — | — | 7.00 |" in text
    assert "| bert | failed: boom |" in text and "test cpu" in text


def test_docs_page_is_generated(script):
    """docs/benchmarks.md is the script's output: its header, and a latency row and a target row per model."""
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert text.startswith(script.HEADER)
    for stem in script.TARGET_MODELS:
        assert f"| {stem} | 1 |" in text and f"| {stem} B1: ort_cpu ≤ 0.95 × reference_onnx |" in text
