"""Token decoders over compiled graphs: `StepDecoder` runs a step graph of `exports:` (`cache:`) with its KV
cache, `Seq2Seq` runs an encoder graph once and decodes against it; `Pipeline` opens a build's manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmspec.runtime.graphs import Graph, OnnxGraph
from mmspec.spec.files import read_limited


@dataclass
class StepState:
    """The KV cache of every row ({past input name: array [B, H, P, d]}, and {state input name: array [B, ...]}
    for recurrent states) and the per-row constant feeds (cross-attention keys/values, the memory mask) of a
    `StepDecoder`."""

    past: dict[str, np.ndarray]
    feeds: dict[str, np.ndarray] = field(default_factory=dict)


class StepDecoder:
    """A `mmspec.runtime.search.Decoder` over one step graph (its manifest entry says which inputs are past
    keys/values or recurrent states and which outputs are the present ones or the next states): the prompt runs as
    one step on an empty past (P = 0) and on zero states, or the states' first values when `feeds` holds them by
    their input names (an encoder's final state), then one token per step; `reorder` selects rows of the cache and
    of the constant feeds.

    `tokens` / `logits` name the token input and the logits output; by default the graph's one int64 input
    fed from a modality, and its one output that is not a cache. `feeds` are further inputs, the same at every
    step (e.g. an encoder's outputs); with fewer rows than the prompt, each row is repeated for consecutive
    prompt rows (beam search starts B * beams rows)."""

    def __init__(self, graph: Graph, entry: dict, feeds: dict[str, np.ndarray] | None = None,
                 tokens: str | None = None, logits: str | None = None):
        self.graph = graph
        self.past = {i["name"]: i for i in entry["inputs"] if i["source"].startswith("cache ")
                     and (".past." in i["source"] or ".state." in i["source"])}
        outputs = {o["name"]: o for o in entry["outputs"]}
        self.present = {}  # past (state) input name -> present (next state) output name
        self.past_axes = {c["node"]: c["past_axis"] for c in entry.get("cache", [])}
        for name, inp in self.past.items():
            _, node_kind_layer_part = inp["source"].split(" ", 1)
            node, kind, layer, part = node_kind_layer_part.split(".")
            out_kind = "present" if kind == "past" else "next_state"
            self.present[name] = next(
                o["name"] for o in outputs.values()
                if o.get("cache") == {"node": node, "kind": out_kind, "layer": int(layer), "part": part})
        self.tokens = tokens or _only(
            [i["name"] for i in entry["inputs"] if i["source"].startswith("modality ") and i["dtype"] == "int64"],
            "token input", "tokens")
        self.logits = logits or _only([n for n, o in outputs.items() if "cache" not in o], "logits output", "logits")
        self.feeds = dict(feeds or {})
        self.first = {k: self.feeds.pop(k) for k in list(self.feeds) if k in self.past}  # states' first values
        expected = {i["name"] for i in entry["inputs"]} - set(self.past) - {self.tokens}
        if expected != set(self.feeds):
            raise ValueError(f"the step graph takes {sorted(expected)} besides its tokens and past keys/values, "
                             f"but got feeds {sorted(self.feeds)}")

    def start(self, prompt: np.ndarray) -> tuple[np.ndarray, StepState]:
        rows = prompt.shape[0]
        feeds = {k: _rows(v, rows, k) for k, v in self.feeds.items()}
        past = {}
        for name, inp in self.past.items():
            if name in self.first:
                past[name] = _rows(self.first[name], rows, name).astype(np.float32)  # B,...
                continue
            node = inp["source"].split(" ", 1)[1].split(".")[0]
            shape = [d if isinstance(d, int) else 0 if d == self.past_axes.get(node) else rows for d in inp["shape"]]
            past[name] = np.zeros(shape, np.float32)  # B,H,0,d (keys/values) or B,... (states)
        return self._run(prompt, StepState(past, feeds))

    def step(self, tokens: np.ndarray, state: StepState) -> tuple[np.ndarray, StepState]:
        return self._run(tokens[:, None], state)  # B,1

    def reorder(self, state: StepState, index: np.ndarray) -> StepState:
        return StepState({k: v[index] for k, v in state.past.items()}, {k: v[index] for k, v in state.feeds.items()})

    def _run(self, ids: np.ndarray, state: StepState) -> tuple[np.ndarray, StepState]:
        outs = self.graph({self.tokens: ids.astype(np.int64), **state.past, **state.feeds})
        past = {name: outs[present] for name, present in self.present.items()}  # B,H,P+T,d or states B,...
        return outs[self.logits][:, -1].astype(np.float32), StepState(past, state.feeds)  # B,V


class FullDecoder:
    """A Decoder without a cache: every step reruns the whole sequence through a graph that maps token ids
    [B, S] to logits [B, S, V] (the monolithic model). The reference a cached step is compared with, and the
    quadratic cost it avoids. `mask`: an input that takes a keep-mask of ones over the whole sequence."""

    def __init__(self, graph: Graph, tokens: str, logits: str, feeds: dict[str, np.ndarray] | None = None,
                 mask: str | None = None):
        self.graph, self.tokens, self.logits, self.feeds, self.mask = graph, tokens, logits, dict(feeds or {}), mask

    def start(self, prompt: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, dict]]:
        feeds = {k: _rows(v, prompt.shape[0], k) for k, v in self.feeds.items()}
        return self._run(prompt, feeds)

    def step(self, tokens: np.ndarray, state: tuple[np.ndarray, dict]):
        ids, feeds = state
        return self._run(np.concatenate([ids, tokens[:, None]], axis=1), feeds)  # B,S+1

    def reorder(self, state, index: np.ndarray):
        ids, feeds = state
        return ids[index], {k: v[index] for k, v in feeds.items()}

    def _run(self, ids: np.ndarray, feeds: dict):
        mask = {self.mask: np.ones_like(ids)} if self.mask else {}  # B,S
        outs = self.graph({self.tokens: ids, **feeds, **mask})
        return outs[self.logits][:, -1].astype(np.float32), (ids, feeds)  # B,V


class Pipeline:
    """The graphs of a compiled spec, from its `<stem>.manifest.json`: `graphs` by name, each an `OnnxGraph`
    (or whatever `open_graph` returns for a manifest entry), and the manifest itself."""

    def __init__(self, manifest: dict, graphs: dict[str, Graph]):
        self.manifest = manifest
        self.graphs = graphs

    @classmethod
    def open(cls, path: str | Path, device: str = "cpu") -> Pipeline:
        """`path`: a manifest file, or a build directory holding exactly one."""
        path = Path(path)
        if path.is_dir():
            found = sorted(path.glob("*.manifest.json"))
            if len(found) != 1:
                raise FileNotFoundError(f"{path}: expected one *.manifest.json (a spec compiled with exports:), "
                                        f"found {len(found)}")
            path = found[0]
        manifest = json.loads(read_limited(path, 16 << 20))  # never blocks on a FIFO; FileProblem says why
        graphs = {name: OnnxGraph(path.parent / g["file"], device) for name, g in manifest["graphs"].items()}
        return cls(manifest, graphs)

    def step_graph(self) -> str:
        """The one graph that decodes step by step."""
        return _only([n for n, g in self.manifest["graphs"].items() if "cache" in g], "step graph (with cache:)",
                     "graph")

    def decoder(self, inputs: dict[str, np.ndarray] | None = None, graph: str | None = None,
                tokens: str | None = None, logits: str | None = None) -> StepDecoder:
        """A StepDecoder on the step graph. The graphs that feed it (an encoder) run first, once, on `inputs`
        ({input name: array}); their outputs become the step's constant feeds, as the manifest connects them."""
        graph = graph or self.step_graph()
        inputs = dict(inputs or {})
        feeds: dict[str, np.ndarray] = {}
        ran: dict[str, dict[str, np.ndarray]] = {}
        for c in self.manifest["connections"]:
            if c["to"]["graph"] != graph or c.get("step") == "next":
                continue
            if c["from"] is None:
                feeds[c["to"]["input"]] = inputs[c["to"]["input"]]
                continue
            source = c["from"]["graph"]
            if source not in ran:
                g = self.graphs[source]
                ran[source] = g({n: inputs[n] for n in g.input_names if n in inputs})
            feeds[c["to"]["input"]] = ran[source][c["from"]["output"]]
        entry = self.manifest["graphs"][graph]
        for i in entry["inputs"]:  # modality inputs other than the tokens (e.g. the memory mask) come from inputs
            if i["source"].startswith("modality ") and i["name"] in inputs and i["name"] != tokens:
                feeds.setdefault(i["name"], inputs[i["name"]])
        return StepDecoder(self.graphs[graph], entry, feeds, tokens, logits)


def _rows(value: np.ndarray, rows: int, name: str) -> np.ndarray:
    """`value` with `rows` rows: itself, or each row repeated for consecutive rows (beams of one example)."""
    have = value.shape[0]
    if have == rows:
        return value
    if rows % have:
        raise ValueError(f"feed {name!r} has {have} rows, which do not divide the prompt's {rows}")
    return np.repeat(value, rows // have, axis=0)


def _only(names: list[str], what: str, flag: str) -> str:
    if len(names) != 1:
        raise ValueError(f"cannot tell the {what}: candidates {names}; name it with {flag}=")
    return names[0]
