"""Latency measurement for `mmspec bench`: engines timed side by side in one process.

An engine is a name and a callable from {input name: numpy array} to anything; `measure` runs every engine on
the same inputs, round by round (the order rotating each round, so no engine always runs right after another),
discards the warm-up rounds and reports median, p10 and p90 per engine and batch size. Ratios of medians taken
this way are what the project compares; absolute times depend on the machine and on what else runs on it.

`reference_model` builds the public implementation a spec names in `reference.implementation` (a transformers
class) at the spec's own size, so `bench` can time what a user would otherwise run or export by hand.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmspec.errors import UsageError
from mmspec.spec.model import Plan

HF_INPUTS = {"ids": "input_ids", "mask": "attention_mask", "segments": "token_type_ids", "pixels": "pixel_values",
             "samples": "input_values"}
"""The keyword of a transformers model's forward for each modality field mmspec feeds (one modality per kind)."""


@dataclass
class Engine:
    """A named way to run the model: `prepare(feeds)` returns the zero-argument call that is timed."""

    name: str
    prepare: Callable[[dict[str, np.ndarray]], Callable[[], object]]


def measure(engines: list[Engine], feeds: dict[int, dict[str, np.ndarray]], rounds: int, warmup: int,
            flops: dict[int, int]) -> list[dict]:
    """Per batch size and engine: {"engine", "batch", "median_ms", "p10_ms", "p90_ms", "gflops", "rounds"}.

    Engines run interleaved: each round calls every engine once, starting one engine later than the round before.
    `flops[batch]` is the forward FLOP count at that batch (for "gflops", the throughput at the median)."""
    results = []
    for batch, feed in feeds.items():
        calls = [(e.name, e.prepare(feed)) for e in engines]
        times: dict[str, list[float]] = {name: [] for name, _ in calls}
        for r in range(warmup + rounds):
            shift = r % len(calls)
            for name, call in calls[shift:] + calls[:shift]:
                start = time.perf_counter()
                call()
                if r >= warmup:
                    times[name].append(time.perf_counter() - start)
        for name, _ in calls:
            ms = np.asarray(times[name]) * 1e3
            median = float(np.median(ms))
            results.append({
                "engine": name, "batch": batch, "median_ms": round(median, 4),
                "p10_ms": round(float(np.percentile(ms, 10)), 4), "p90_ms": round(float(np.percentile(ms, 90)), 4),
                "gflops": round(flops[batch] / median / 1e6, 3), "rounds": rounds,
            })
    return results


def peak_gflops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """fp32 matmul throughput of this machine at `threads` threads (best of `repeats` size x size products)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return round(2 * size**3 / best / 1e9, 2)


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def machine(threads: int, onnxruntime: str) -> dict:
    """What the numbers were measured on: CPU, core count, threads used, library versions."""
    return {
        "cpu": _cpu_name(), "cores": os.cpu_count(), "threads": threads, "python": platform.python_version(),
        "torch": torch.__version__, "onnxruntime": onnxruntime,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def reference_model(plan: Plan, implementation: str | None, params: int, config_dir: Path | None):
    """(module, {mmspec input name: forward keyword}, description) for the spec's reference implementation, or
    (None, {}, why not) when there is none to run.

    The class is `reference.implementation` (`transformers.<Class>`), built with random weights from the config
    in `config_dir`, or, without one, from the class's default configuration; either way it must have exactly
    the spec's parameter count (else it is a different model and is not timed)."""
    if not implementation or not implementation.startswith("transformers."):
        return None, {}, "the spec names no transformers reference (reference.implementation)"
    try:
        import transformers
    except ImportError:
        return None, {}, "transformers is not installed (pip install transformers)"

    cls_name = implementation.removeprefix("transformers.")
    cls = getattr(transformers, cls_name, None)
    if cls is None:
        raise UsageError(f"reference.implementation {implementation!r}: transformers "
                         f"{transformers.__version__} has no class {cls_name}")
    kinds = {}
    for gi in plan.graph_inputs:
        keyword = HF_INPUTS.get(gi.field)
        if keyword is None or keyword in kinds.values():
            return None, {}, f"input {gi.name!r} has no unambiguous transformers keyword"
        kinds[gi.name] = keyword
    if config_dir is not None:
        try:
            config = transformers.AutoConfig.from_pretrained(config_dir)
        except (OSError, ValueError, KeyError) as e:
            raise UsageError(f"--reference {config_dir}: cannot read its config.json: {e}") from None
        source = f"{cls_name} from {config_dir}"
    else:
        config = cls.config_class()
        source = f"{cls_name} with its default configuration"
    try:
        with torch.device("meta"):
            counted = sum(p.numel() for p in cls(config).parameters())
    except Exception as e:  # a config of another architecture: no reference to time, not a crash
        return None, {}, f"{source}: {cls_name} cannot be built from it ({type(e).__name__}: {e})"
    if counted != params:
        return None, {}, f"{source} has {counted:,} parameters, the spec {params:,}: not the same model"
    config._attn_implementation = "sdpa" if getattr(cls, "_supports_sdpa", False) else "eager"
    torch.manual_seed(0)
    model = cls(config).eval()
    return _Tuple(model).eval(), kinds, source


class _Tuple(torch.nn.Module):
    """A transformers model returning the tensors of its output as a tuple (what torch.onnx exports)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, pixel_values=None,
                input_values=None):
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
                 "pixel_values": pixel_values, "input_values": input_values}
        out = self.model(**{k: v for k, v in given.items() if v is not None}, return_dict=True)
        return tuple(v for v in out.values() if isinstance(v, torch.Tensor))
