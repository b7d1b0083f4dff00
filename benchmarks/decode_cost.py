"""Per-step cost of greedy decoding with and without the KV cache, on ONNX Runtime CPU.

    python benchmarks/decode_cost.py [--new-tokens 512] [--prompt 16] [--batch 1 [4 ...]] [--repeats 3]
                                     [--threads 1] [--quick] [--out DIR] [--json FILE]

Compiles benchmarks/specs/decode_gpt.yaml twice: its `decoder_step` graph with a KV cache (`StepDecoder`), and,
with `--set exports=null`, one graph over the whole sequence (`FullDecoder`, which reruns every token at every step).
Both decode the same random prompt greedily, interleaved in one run, and every step is timed; the per-step time
t(k) of step k (the step that feeds the k-th new token, context prompt + k) is the median over the repeats.

What "linear" means: with the cache, step k runs one token, so the projections, the MLP and the LM head cost O(1)
and only attention over the cache and the cache copy (present = past + one position) cost O(prompt + k):
t(k) = a + b·k with a small slope b, no quadratic term, and the total over n steps, a·n + b·n²/2, grows about
linearly while b·n is small against a. Without the cache, step k reruns all prompt + k tokens: t(k) grows in
proportion to the sequence (plus attention's (prompt + k)² term) and the total quadratically. The script reports,
for both decoders, the least-squares line t(k) = a + b·k, t(late)/t(early) (medians of the first and the last
eighth of the steps) next to the growth of the context between them, and the exponent p of the total
T(k) = t(1) + ... + t(k) ~ k^p (log-log least squares over the last seven eighths: 1 is linear, 2 quadratic).
The verdict is LINEAR when the cached t(late)/t(early) is at most the context's growth (a per-step cost quadratic
in the context would grow by its square) and the cached slope b is under a tenth of the uncached one.

`--quick` uses the spec's tiny `quick` variant and a few steps (a smoke test; its times mean nothing). Exits 1
when the two decoders' tokens differ.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mmspec import api
from mmspec.runtime import greedy
from mmspec.runtime.decoding import FullDecoder, Pipeline
from mmspec.runtime.graphs import OnnxGraph

SPEC = Path(__file__).resolve().parent / "specs" / "decode_gpt.yaml"


def step_times(decoder, prompt: np.ndarray, new_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy tokens [B, T + n] and the wall time in ms of each step: [0] the prompt, [k] step k (k = 1..n-1)."""
    marks = [time.perf_counter()]
    tokens = greedy(decoder, prompt, new_tokens, progress=lambda _: marks.append(time.perf_counter()))
    return tokens, np.diff(marks) * 1e3


def fit(t: np.ndarray, prompt: int) -> dict:
    """Growth of the per-step times t[k-1] = t(k), k = 1..len(t) (ms), after a prompt of that many tokens."""
    k = np.arange(1, len(t) + 1, dtype=np.float64)
    b, a = np.polyfit(k, t, 1)
    r2 = 1.0 - np.sum((t - (a + b * k)) ** 2) / np.sum((t - t.mean()) ** 2)
    w = max(1, len(t) // 8)
    total = np.cumsum(t)
    p = np.polyfit(np.log(k[w:]), np.log(total[w:]), 1)[0]
    return {"intercept_ms": a, "slope_ms_per_token": b, "r2": r2, "early_ms": np.median(t[:w]),
            "late_ms": np.median(t[-w:]), "late_over_early": np.median(t[-w:]) / np.median(t[:w]),
            "context_late_over_early": np.median(prompt + k[-w:]) / np.median(prompt + k[:w]),
            "total_ms": total[-1], "total_exponent": p}


def measure(cached, full, prompt: np.ndarray, new_tokens: int, repeats: int) -> dict:
    """Interleaved timed runs (the order alternates per repeat): per-step medians, fits, verdict, token check."""
    for decoder in (cached, full):  # warm-up: sessions allocate on their first runs
        greedy(decoder, prompt, min(new_tokens, 8))
    runs: dict[str, list[np.ndarray]] = {"cached": [], "full": []}
    tokens = {}
    for r in range(repeats):
        for name in ("cached", "full") if r % 2 == 0 else ("full", "cached"):
            tokens[name], ms = step_times(cached if name == "cached" else full, prompt, new_tokens)
            runs[name].append(ms)
    med = {name: np.median(np.stack(v), axis=0) for name, v in runs.items()}  # n: [0] prompt, [k] step k
    c, f = (fit(med[name][1:], prompt.shape[1]) for name in ("cached", "full"))
    same = np.array_equal(tokens["cached"], tokens["full"])
    differ = np.flatnonzero((tokens["cached"] != tokens["full"]).any(axis=0))
    return {
        "batch": len(prompt), "prompt": prompt.shape[1], "new_tokens": new_tokens, "repeats": repeats,
        "tokens_equal": same, "first_difference": None if same else int(differ[0]),  # a position in [B, T + n]
        "prompt_ms": {name: m[0] for name, m in med.items()},
        "step_ms": {name: m[1:] for name, m in med.items()},
        "runs_ms": runs,
        "fit": {"cached": c, "full": f},
        "linear": bool(c["late_over_early"] <= c["context_late_over_early"]
                       and c["slope_ms_per_token"] < 0.1 * f["slope_ms_per_token"]),
    }


def table_rows(result: dict) -> list[tuple[int, float, float]]:
    """(k, cached ms, full ms) at a few k; each the median of the steps k-2..k+2."""
    steps = len(result["step_ms"]["cached"])
    ks = sorted({1, steps // 8, steps // 4, steps // 2, 3 * steps // 4, steps} - {0})
    rows = []
    for k in ks:
        lo, hi = max(0, k - 3), min(steps, k + 2)
        rows.append((k, *(float(np.median(result["step_ms"][n][lo:hi])) for n in ("cached", "full"))))
    return rows


def report(result: dict) -> None:
    c, f = result["fit"]["cached"], result["fit"]["full"]
    print(f"\nbatch {result['batch']}, prompt {result['prompt']}, {result['new_tokens']} new tokens, "
          f"median of {result['repeats']} runs; prompt step: cached {result['prompt_ms']['cached']:.2f} ms, "
          f"full {result['prompt_ms']['full']:.2f} ms")
    print(f"{'k':>6} {'context':>8} {'cached ms':>10} {'full ms':>10} {'full/cached':>12}")
    for k, a, b in table_rows(result):
        print(f"{k:>6} {result['prompt'] + k:>8} {a:>10.3f} {b:>10.3f} {b / a:>12.1f}")
    print(f"{'':>8} {'a (ms)':>8} {'b (ms/token)':>13} {'R2':>6} {'late/early':>11} {'total ms':>10} "
          f"{'T~k^p: p':>9}")
    for name, x in (("cached", c), ("full", f)):
        print(f"{name:>8} {x['intercept_ms']:>8.3f} {x['slope_ms_per_token']:>13.5f} {x['r2']:>6.3f} "
              f"{x['late_over_early']:>11.2f} {x['total_ms']:>10.1f} {x['total_exponent']:>9.2f}")
    print(f"speed-up of the cache over all steps: {f['total_ms'] / c['total_ms']:.1f}x; tokens equal: "
          f"{result['tokens_equal']}")
    verdict = "LINEAR" if result["linear"] else "NOT LINEAR"
    print(f"verdict (batch {result['batch']}): {verdict}: with the cache t(k) = {c['intercept_ms']:.3f} ms + "
          f"{c['slope_ms_per_token'] * 1e3:.2f} us·k ({c['slope_ms_per_token'] / f['slope_ms_per_token']:.1%} of the "
          f"uncached slope), x{c['late_over_early']:.2f} from the first to the last eighth while the context grows "
          f"x{c['context_late_over_early']:.1f}, total ~ k^{c['total_exponent']:.2f}; without the cache "
          f"x{f['late_over_early']:.2f}, total ~ k^{f['total_exponent']:.2f}")


def compile_both(out: Path, variant: str | None) -> tuple[Path, Path]:
    """The step graph's manifest and the whole-sequence ONNX file."""
    report = api.compile(SPEC, out_dir=out / "step", variant=variant)
    stem = f"{report['name']}-{variant}" if variant else report["name"]
    full = api.compile(SPEC, out_dir=out / "full", variant=variant, sets=["exports=null"])
    return out / "step" / f"{stem}.manifest.json", Path(full["onnx"]["path"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--new-tokens", type=int, default=512, help="generated tokens per run (default 512)")
    parser.add_argument("--prompt", type=int, default=16, help="prompt length (default 16)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per decoder (default 3)")
    parser.add_argument("--threads", type=int, default=1,
                        help="ONNX Runtime intra-op threads (default 1: steadier on a loaded machine; 0: all cores)")
    parser.add_argument("--quick", action="store_true", help="tiny variant, 24 new tokens, 1 repeat")
    parser.add_argument("--out", help="build directory (default: a temporary one)")
    parser.add_argument("--json", help="write every number to this file")
    args = parser.parse_args(argv)
    variant = "quick" if args.quick else None
    if args.quick:
        args.new_tokens, args.prompt, args.repeats = 24, 4, 1
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="decode_cost-"))
    start = time.perf_counter()
    manifest_file, full_file = compile_both(out, variant)
    compile_s = time.perf_counter() - start
    manifest = json.loads(manifest_file.read_text())
    pipeline = Pipeline(manifest, {name: OnnxGraph(manifest_file.parent / g["file"], threads=args.threads)
                                   for name, g in manifest["graphs"].items()})
    full = FullDecoder(OnnxGraph(full_file, threads=args.threads), "text", "lm", mask="text_mask")
    vocab = next(o for o in manifest["graphs"][pipeline.step_graph()]["outputs"] if o["name"] == "lm")["shape"][-1]
    results = []
    for batch in args.batch:
        prompt = np.random.default_rng(0).integers(0, vocab, (batch, args.prompt))  # B,T
        result = measure(pipeline.decoder(), full, prompt, args.new_tokens, args.repeats)
        report(result)
        results.append(result)
    seconds = time.perf_counter() - start
    print(f"\ncompile {compile_s:.0f} s, total {seconds:.0f} s on {platform.processor() or platform.machine()}")
    if args.json:
        summary = {"spec": str(SPEC), "variant": variant, "threads": args.threads, "compile_s": compile_s,
                   "seconds": seconds, "results": results}
        Path(args.json).write_text(json.dumps(summary, indent=2, default=_plain) + "\n")
    return 0 if all(r["tokens_equal"] for r in results) else 1


def _plain(value):
    """numpy arrays and scalars as JSON."""
    return value.tolist() if isinstance(value, np.ndarray) else value.item()


if __name__ == "__main__":
    sys.exit(main())
