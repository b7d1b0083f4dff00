"""NVIDIA Triton Inference Server model repositories from a compiled spec (docs/serving.md).

`plan_repository` turns the graphs of a compile (their manifest entries: file, inputs, outputs, and the
connections between graphs) into Triton models: one `onnxruntime_onnx` model per graph and, for a spec with
several graphs, an `ensemble` that runs them all once in dependency order. It only writes text (`config.pbtxt`)
and says which compiled file goes where; `mmspec.api.export_triton` compiles, lays the files out and publishes.

Triton ensembles are acyclic, so the ensemble of a step-by-step decoder is its first pass (the encoder and the
first decoder step, with an empty cache from the caller); later steps call the decoder-step model directly with
the `present` tensors and the encoder outputs the ensemble returned, as the manifest's connections describe.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

BATCH_AXIS = "batch"  # the symbolic first axis that a compiled graph batches over

DATA_TYPES = {
    "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32",
    "int64": "TYPE_INT64", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16", "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
}
KINDS = {"auto": "KIND_AUTO", "cpu": "KIND_CPU", "gpu": "KIND_GPU"}


@dataclass
class TritonModel:
    """One model directory: its name, config.pbtxt text, and the compiled ONNX file it serves (None: an
    ensemble)."""

    name: str
    config: str
    file: str | None = None


def plan_repository(stem: str, graphs: dict[str, dict], connections: list[dict], *, max_batch_size: int = 8,
                    kind: str = "auto", count: int = 1) -> list[TritonModel]:
    """The models of a repository for the compile named `stem`. `graphs` maps a graph name to its manifest entry
    ({"file", "inputs", "outputs"}; a single-graph compile is one entry named after the spec). A graph whose
    inputs and outputs all start with the `batch` axis gets `max_batch_size` and dynamic batching (requests of
    equal shapes are batched); any other runs unbatched (`max_batch_size: 0`, full shapes)."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be at least 1, not {max_batch_size}")
    if kind not in KINDS:
        raise ValueError(f"instance kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if count < 1:
        raise ValueError(f"instance count must be at least 1, not {count}")
    single = len(graphs) == 1
    names = {g: stem if single else f"{stem}_{g}" for g in graphs}
    batched = {g: _batched(entry) for g, entry in graphs.items()}
    models = []
    for g, entry in graphs.items():
        mb = max_batch_size if batched[g] else 0
        lines = [f"name: {_q(names[g])}", 'platform: "onnxruntime_onnx"',
                 f"default_model_filename: {_q(entry['file'])}", f"max_batch_size: {mb}"]
        lines += _tensors("input", entry["inputs"], mb)
        lines += _tensors("output", entry["outputs"], mb)
        lines += ["dynamic_batching { }"] if mb else []
        lines += [f"instance_group [ {{ kind: {KINDS[kind]} count: {count} }} ]"]
        models.append(TritonModel(names[g], "\n".join(lines) + "\n", file=entry["file"]))
    if not single:
        mb = max_batch_size if all(batched.values()) else 0
        models.append(TritonModel(stem, _ensemble(stem, graphs, connections, names, mb)))
    return models


def _batched(entry: dict) -> bool:
    return all(t["shape"] and t["shape"][0] == BATCH_AXIS for t in (*entry["inputs"], *entry["outputs"]))


def _q(text: str) -> str:
    return json.dumps(text)  # a protobuf text-format string: double quotes, backslash escapes


def _dims(shape: list, batched: bool) -> str:
    dims = [d if isinstance(d, int) else -1 for d in (shape[1:] if batched else shape)]  # symbolic axes -> -1
    return "[ " + ", ".join(map(str, dims)) + " ]"


def _tensors(section: str, tensors: list[dict], max_batch_size: int) -> list[str]:
    if not tensors:
        return []
    rows = [f"  {{ name: {_q(t['name'])} data_type: {_data_type(t)} dims: {_dims(t['shape'], max_batch_size > 0)} }}"
            for t in tensors]
    return [f"{section} [", ",\n".join(rows), "]"]


def _data_type(t: dict) -> str:
    try:
        return DATA_TYPES[t["dtype"]]
    except KeyError:
        raise ValueError(f"tensor {t['name']!r}: Triton has no data type for {t['dtype']!r}") from None


def _ensemble(stem: str, graphs: dict[str, dict], connections: list[dict], names: dict[str, str],
              max_batch_size: int) -> str:
    """The ensemble: every graph once, producers before consumers. A graph input fed by another graph's output
    (a plain connection, or the `"step": "first"` start of a state) is wired to it; every other graph input is
    an ensemble input (inputs of one name and source are shared); every graph output is an ensemble output
    (renamed `<graph>.<output>` where two would clash)."""
    fed = {}
    for c in connections:
        if c.get("from") and c.get("step") != "next" and c["from"]["graph"] != c["to"]["graph"]:
            fed[c["to"]["graph"], c["to"]["input"]] = (c["from"]["graph"], c["from"]["output"])
    order = _order(graphs, fed)
    inputs: dict[str, dict] = {}  # ensemble input name -> the manifest tensor, renamed
    input_of: dict[tuple[str, str], str] = {}
    for g in order:
        for t in graphs[g]["inputs"]:
            if (g, t["name"]) in fed:
                continue
            same = inputs.get(t["name"])
            shared = same is None or (same.get("source"), same["dtype"]) == (t.get("source"), t["dtype"])
            name = t["name"] if shared else f"{g}.{t['name']}"
            inputs.setdefault(name, {**t, "name": name})
            input_of[g, t["name"]] = name
    uses = Counter(t["name"] for g in order for t in graphs[g]["outputs"])
    outputs: dict[str, dict] = {}
    output_of: dict[tuple[str, str], str] = {}
    for g in order:
        for t in graphs[g]["outputs"]:
            name = t["name"] if uses[t["name"]] == 1 and t["name"] not in inputs else f"{g}.{t['name']}"
            outputs[name] = {**t, "name": name}
            output_of[g, t["name"]] = name
    steps = []
    for g in order:
        in_map = [(t["name"], output_of[fed[g, t["name"]]] if (g, t["name"]) in fed else input_of[g, t["name"]])
                  for t in graphs[g]["inputs"]]
        out_map = [(t["name"], output_of[g, t["name"]]) for t in graphs[g]["outputs"]]
        steps.append("\n".join([
            "    {", f"      model_name: {_q(names[g])}", "      model_version: -1",
            *[f"      input_map {{ key: {_q(k)} value: {_q(v)} }}" for k, v in in_map],
            *[f"      output_map {{ key: {_q(k)} value: {_q(v)} }}" for k, v in out_map], "    }"]))
    lines = [f"name: {_q(stem)}", 'platform: "ensemble"', f"max_batch_size: {max_batch_size}",
             *_tensors("input", list(inputs.values()), max_batch_size),
             *_tensors("output", list(outputs.values()), max_batch_size),
             "ensemble_scheduling {", "  step [", ",\n".join(steps), "  ]", "}"]
    return "\n".join(lines) + "\n"


def _order(graphs: dict[str, dict], fed: dict) -> list[str]:
    """Graphs in dependency order (the manifest lists them in run order already; this keeps that order and
    only moves a consumer after its producers)."""
    done: list[str] = []
    pending = list(graphs)
    while pending:
        ready = next((g for g in pending if all(src in done for (to, _), (src, _) in fed.items() if to == g)), None)
        if ready is None:
            raise ValueError(f"the graphs {', '.join(pending)} feed each other in a cycle; no ensemble can run them")
        done.append(ready)
        pending.remove(ready)
    return done
