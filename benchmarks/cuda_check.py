"""CUDA check of every registry example and every spec's tiny variant (run where a GPU is present).

    python benchmarks/cuda_check.py [--json FILE]

For each one: the model built with the same seed on CPU and on CUDA gives the same outputs in fp32 with TF32 off
(tolerance 1e-4 + 1e-3·|cpu|, the verification policy's), and objectives run two training steps on CUDA with
finite losses. Prints one line per case and a summary; exits 1 when any case fails.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from mmspec import api
from mmspec.graph.inputs import make_inputs, trace_sizes
from mmspec.registry import list_components
from mmspec.testing import write_example

ATOL, RTOL = 1e-4, 1e-3


def compare(loaded) -> float:
    """Max violation ratio of |cuda - cpu| against ATOL + RTOL·|cpu| over every output (<= 1 passes)."""
    cpu = api.build(loaded)
    cuda = api.build(loaded).to("cuda")
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=1)
    with torch.no_grad():
        ref = cpu(inputs)
        out = cuda({k: v.cuda() for k, v in inputs.items()})
    worst = 0.0
    for a, b in zip(ref, out, strict=True):
        if a.is_floating_point():
            ratio = ((b.cpu() - a).abs() / (ATOL + RTOL * a.abs())).max().item() if a.numel() else 0.0
        else:
            ratio = 0.0 if torch.equal(a, b.cpu()) else math.inf
        worst = max(worst, ratio)
    return worst


def train(loaded) -> list[float]:
    from mmspec.train.data import synthetic_batch
    from mmspec.train.trainer import Trainer

    torch.manual_seed(0)
    trainer = Trainer(loaded, device="cuda")
    return trainer.fit(synthetic_batch(loaded, 4, 0), 2, 0).as_dict()["losses"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cases: list[tuple[str, Path]] = []
    tmp = Path(tempfile.mkdtemp())
    for component in list_components():
        for example in component.examples:
            cases.append((f"{component.slot}/{component.name}/{example.name}", write_example(component, example, tmp)))
    root = Path(__file__).resolve().parents[1]
    cases += [(f"specs/{p.name}:tiny", p) for p in sorted((root / "specs").glob("*.yaml"))]
    results, failed = [], 0
    for name, path in cases:
        start = time.perf_counter()
        row: dict = {"case": name}
        try:
            loaded = api.load_spec(path, "tiny" if name.endswith(":tiny") else None)
            row["worst"] = compare(loaded)
            if loaded.spec.objectives and any("loss" in loaded.plan.bundles[n] for n in loaded.spec.objectives):
                row["losses"] = train(loaded)
            row["passed"] = row["worst"] <= 1.0 and all(math.isfinite(x) for x in row.get("losses", []))
        except Exception as e:  # report and go on: one line per case
            row.update(passed=False, error=f"{type(e).__name__}: {e}", trace=traceback.format_exc(limit=3))
        row["seconds"] = round(time.perf_counter() - start, 3)
        failed += not row["passed"]
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "trace"}), flush=True)
    summary = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cases": len(results),
               "failed": failed, "results": results}
    print(f"{len(results) - failed}/{len(results)} passed on {summary['device']} (torch {torch.__version__})")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
