"""`mmspec generate TARGET`: token decoding or diffusion sampling with a compiled build, on ONNX Runtime.

A build directory, manifest or .onnx file runs without torch (numpy, onnxruntime and `mmspec.runtime` only); a
spec (.yaml) is compiled first with `mmspec.api.compile`, the only path that imports torch.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mmspec.cli._options import Device, JsonOpt, QuietOpt, SetOpt, VariantOpt
from mmspec.errors import UsageError, printable
from mmspec.spec.files import FileProblem, is_dir, kind_problem, read_limited

if TYPE_CHECKING:
    import numpy as np
    from rich.console import Console

TOKENS, DIFFUSION = "Token decoding", "Diffusion sampling"
MAX_NEW_TOKENS = 20
SPEC_SUFFIXES = (".yaml", ".yml")
PNG_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type: grey, grey+alpha, RGB, RGBA
ORT_DTYPES = {"float": "float32", "double": "float64", "float16": "float16", "int64": "int64", "int32": "int32",
              "bool": "bool"}


class Strategy(StrEnum):
    """Token decoding loop."""

    greedy = "greedy"
    beam = "beam"
    sample = "sample"


class Sampler(StrEnum):
    """Diffusion sampler."""

    ddim = "ddim"
    ddpm = "ddpm"


class Schedule(StrEnum):
    """Noise schedule of the training run."""

    linear = "linear"
    scaled_linear = "scaled_linear"
    cosine = "cosine"


# Options that belong to one mode, or to one strategy/sampler: giving them elsewhere is a usage error.
TOKEN_ONLY = ("prompt", "input_", "max_new_tokens", "strategy", "beams", "length_penalty", "top_k", "top_p",
              "temperature", "eos_id", "pad_id")
DIFFUSION_ONLY = ("sampler", "sample", "timestep", "eps", "cond", "uncond", "guidance", "steps", "schedule",
                  "train_steps", "eta", "batch", "png", "npy")
STRATEGY_ONLY = {"beams": Strategy.beam, "length_penalty": Strategy.beam, "top_k": Strategy.sample,
                 "top_p": Strategy.sample, "temperature": Strategy.sample}
DDIM_ONLY = ("steps", "eta")


def generate(
    ctx: typer.Context,
    target: Annotated[Path, typer.Argument(metavar="TARGET", show_default=False,
                                           help="A build directory, a manifest, an .onnx file, or a spec (.yaml) "
                                                "to compile first.")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR",
                                      help="Where a spec TARGET is compiled to.")] = Path("build"),
    variant: VariantOpt = None,
    set_: SetOpt = None,
    graph: Annotated[str | None, typer.Option(metavar="NAME",
                                              help="The graph to run (default: the one step graph, or the "
                                                   "only graph).")] = None,
    device: Annotated[Device, typer.Option(help="Run on this device.", case_sensitive=False)] = Device.cpu,
    seed: Annotated[int, typer.Option(metavar="S", min=0,
                                      help="Seed of --strategy sample, and of diffusion's noise.")] = 0,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    prompt: Annotated[list[str] | None, typer.Option(
        metavar="IDS", rich_help_panel=TOKENS,
        help='Prompt token ids, e.g. "1 2 3"; repeat for a batch of equal-length prompts.')] = None,
    input_: Annotated[list[str] | None, typer.Option(
        "--input", metavar="NAME=VALUES", rich_help_panel=TOKENS,
        help='Another input, e.g. source="4 5 6": once for every row, or once per prompt.')] = None,
    max_new_tokens: Annotated[int | None, typer.Option(
        metavar="N", min=1, rich_help_panel=TOKENS, show_default=False,
        help=f"New tokens at most (default: {MAX_NEW_TOKENS}, or fewer if the graph's positions run out).")] = None,
    strategy: Annotated[Strategy, typer.Option(rich_help_panel=TOKENS, case_sensitive=False)] = Strategy.greedy,
    beams: Annotated[int, typer.Option(metavar="K", min=1, rich_help_panel=TOKENS)] = 4,
    length_penalty: Annotated[float, typer.Option(metavar="X", rich_help_panel=TOKENS)] = 1.0,
    top_k: Annotated[int, typer.Option(metavar="K", min=0, rich_help_panel=TOKENS, help="0 keeps all.")] = 0,
    top_p: Annotated[float, typer.Option(metavar="P", rich_help_panel=TOKENS, help="In (0, 1].")] = 1.0,
    temperature: Annotated[float, typer.Option(metavar="T", rich_help_panel=TOKENS, help="> 0.")] = 1.0,
    eos_id: Annotated[int | None, typer.Option(metavar="ID", min=0, rich_help_panel=TOKENS)] = None,
    pad_id: Annotated[int | None, typer.Option(metavar="ID", rich_help_panel=TOKENS,
                                               help="Pads rows that ended early (default: --eos-id).")] = None,
    image_graph: Annotated[str | None, typer.Option(metavar="NAME", rich_help_panel=TOKENS,
        help="Decode the generated tokens as an image with this vq_decoder graph (--png / --npy).")] = None,
    image_offset: Annotated[int, typer.Option(metavar="K", min=0, rich_help_panel=TOKENS,
        help="With --image-graph: image code c is token id K + c.")] = 0,
    sampler: Annotated[Sampler | None, typer.Option(rich_help_panel=DIFFUSION, case_sensitive=False,
                                                    help="Required for a denoiser.")] = None,
    sample: Annotated[str | None, typer.Option(metavar="NAME", rich_help_panel=DIFFUSION,
                                               help="The noisy-sample input (default: the one rank-4 float "
                                                    "input).")] = None,
    timestep: Annotated[str | None, typer.Option(metavar="NAME", rich_help_panel=DIFFUSION,
                                                 help="The timestep input (default: the one int64 rank-1 input "
                                                      "left).")] = None,
    eps: Annotated[str | None, typer.Option(metavar="NAME", rich_help_panel=DIFFUSION,
                                            help="The predicted-noise output (default: the one output).")] = None,
    cond: Annotated[list[str] | None, typer.Option(metavar="NAME=VALUE", rich_help_panel=DIFFUSION,
                                                   help="A condition input, broadcast over the batch.")] = None,
    uncond: Annotated[list[str] | None, typer.Option(metavar="NAME=VALUE", rich_help_panel=DIFFUSION,
                                                     help="Its unconditional value (with --guidance).")] = None,
    guidance: Annotated[float | None, typer.Option(metavar="S", rich_help_panel=DIFFUSION,
                                                   help="Classifier-free guidance scale.")] = None,
    steps: Annotated[int, typer.Option(metavar="N", min=1, rich_help_panel=DIFFUSION, help="DDIM steps.")] = 50,
    schedule: Annotated[Schedule, typer.Option(rich_help_panel=DIFFUSION, case_sensitive=False)] = Schedule.linear,
    train_steps: Annotated[int, typer.Option(metavar="T", min=1, rich_help_panel=DIFFUSION)] = 1000,
    eta: Annotated[float, typer.Option(metavar="X", min=0.0, rich_help_panel=DIFFUSION, help="DDIM eta.")] = 0.0,
    batch: Annotated[int, typer.Option(metavar="B", min=1, rich_help_panel=DIFFUSION)] = 1,
    png: Annotated[Path | None, typer.Option(metavar="FILE", rich_help_panel=DIFFUSION,
                                             help="Write the batch as one PNG grid.")] = None,
    npy: Annotated[Path | None, typer.Option(metavar="FILE", rich_help_panel=DIFFUSION,
                                             help="Write the raw float32 samples [B, C, H, W].")] = None,
) -> None:
    """Generate with a compiled model on ONNX Runtime: token decoding when the build has a step graph (one
    with `cache:`), diffusion sampling (--sampler) when it is a denoiser.

    Token decoding prints each row, the prompt then the new tokens, as one line of ids (or --json).
    Diffusion writes --png (the batch as a grid, [-1, 1] mapped to 0..255) and/or --npy.
    A spec TARGET is compiled into --out first. See docs/generation.md, "Command line".
    """
    from rich.console import Console

    console = Console(stderr=True, quiet=quiet, highlight=False, soft_wrap=True)
    given = _given(ctx)
    if target.suffix in SPEC_SUFFIXES and target.is_file():
        target = _compile(target, out, variant, set_ or [], console)
    elif given & {"variant", "set_"}:
        raise UsageError(f"{_flags(ctx, given & {'variant', 'set_'})}: only for a spec TARGET (.yaml)")
    build = _Build.open(target, device.value)
    name, step = build.choose(graph)
    if step:
        files = {"png", "npy"} if image_graph is not None else set()
        _reject(ctx, given & (set(DIFFUSION_ONLY) - files), f"graph {name!r} decodes tokens (it has a cache)")
        _reject(ctx, given & {"image_offset"} if image_graph is None else set(), "there is no --image-graph")
        _reject(ctx, {k for k, s in STRATEGY_ONLY.items() if k in given and s != strategy},
                f"--strategy is {strategy.value}")
        _reject(ctx, {"seed"} & given if strategy != Strategy.sample else set(), f"--strategy is {strategy.value}")
        options = dict(beams=beams, length_penalty=length_penalty, top_k=top_k, top_p=top_p,
                       temperature=temperature, seed=seed)
        if image_graph is not None:
            codes = _image(build, name, image_graph, image_offset, prompt or [], strategy, options,
                           (eos_id, pad_id, max_new_tokens), png, npy, console)
            if as_json:
                print(json.dumps({"codes": codes, "strategy": strategy.value, "graph": name,
                                  "image_graph": image_graph, "png": png and str(png), "npy": npy and str(npy)}))
            else:
                print("\n".join(" ".join(map(str, row)) for row in codes))
            return
        tokens = _decode(build, name, prompt or [], input_ or [], max_new_tokens, strategy, options, eos_id, pad_id,
                         console)
        if as_json:
            print(json.dumps({"tokens": tokens, "strategy": strategy.value, "graph": name}))
        else:
            print("\n".join(" ".join(map(str, row)) for row in tokens))
        return
    if sampler is None:
        raise UsageError(f"{build.path}: graph {name!r} is a denoiser (no step graph with a cache); choose "
                         f"--sampler ddim or --sampler ddpm")
    _reject(ctx, given & set(TOKEN_ONLY), f"graph {name!r} is a denoiser")
    _reject(ctx, given & set(DDIM_ONLY) if sampler == Sampler.ddpm else set(),
            "--sampler ddpm runs every one of the --train-steps")
    x = _diffuse(build.graphs[name], _Diffusion(sampler, sample, timestep, eps, cond or [], uncond or [], guidance,
                                                steps, schedule.value, train_steps, eta, seed, batch), png, npy,
                 console)
    if as_json:
        print(json.dumps({"shape": list(x.shape), "sampler": sampler.value, "graph": name,
                          "png": png and str(png), "npy": npy and str(npy)}))


# --- the command line --------------------------------------------------------------------------------------------


def _given(ctx: typer.Context) -> set[str]:
    """The parameters set on the command line (or the environment), not left at their default."""
    sources = {p.name: ctx.get_parameter_source(p.name) for p in ctx.command.params}
    return {name for name, source in sources.items() if source and source.name in ("COMMANDLINE", "ENVIRONMENT")}


def _flags(ctx: typer.Context, names: set[str]) -> str:
    return ", ".join(p.opts[0] for p in ctx.command.params if p.name in names)


def _reject(ctx: typer.Context, names: set[str], why: str) -> None:
    if names:
        raise UsageError(f"{_flags(ctx, names)} cannot be used here: {why}")


def _compile(spec: Path, out: Path, variant: str | None, sets: list[str], console: Console) -> Path:
    """Compile `spec` into `out` as `mmspec compile` does; the manifest (or .onnx) it wrote."""
    from mmspec.api import compile
    from mmspec.cli.compile import step_text

    if console.is_terminal:
        with console.status("compiling") as status:
            report = compile(spec, out, variant, sets, progress=lambda s: status.update(f"{step_text(s)}..."))
    else:
        report = compile(spec, out, variant, sets,
                         progress=lambda s: console.print(f"{printable(str(spec))}: {step_text(s)}...", markup=False))
    stem = report["name"] + (f"-{report['variant']}" if report["variant"] else "")
    return out / f"{stem}.manifest.json" if "graphs" in report else Path(report["onnx"]["path"])


@contextmanager
def _progress(console: Console, label: str, total: int, first: int) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal, driven by a runtime `progress(i)` callback whose first call passes `first`."""
    if console.quiet or not console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda i: bar.update(task, completed=i - first + 1)


@contextmanager
def _runtime_errors(where: str) -> Iterator[None]:
    """Re-raise ONNX Runtime's and the runtime drivers' argument errors as one-line usage errors (exit 2)."""
    try:
        yield
    except UsageError:
        raise
    except (ValueError, KeyError) as e:
        raise UsageError(f"{where}: {e}") from e
    except Exception as e:
        if not type(e).__module__.startswith("onnxruntime"):
            raise
        raise UsageError(f"{where}: ONNX Runtime failed: {str(e).splitlines()[0]}") from e


# --- opening a build ---------------------------------------------------------------------------------------------


@dataclass
class _Build:
    """The graphs of a build, opened on ONNX Runtime: from a manifest, or one .onnx file (`manifest` None)."""

    path: Path
    manifest: dict | None
    graphs: dict[str, Any]

    @classmethod
    def open(cls, target: Path, device: str) -> _Build:
        path = _locate(target)
        from mmspec.runtime import OnnxGraph

        with _runtime_errors(str(path)):
            try:
                if path.suffix == ".onnx":
                    return cls(path, None, {path.stem: OnnxGraph(_regular(path), device)})
                text = read_limited(path, MANIFEST_MAX_BYTES)
                if len(text) > MANIFEST_MAX_BYTES:
                    raise UsageError(f"{path}: larger than {MANIFEST_MAX_BYTES >> 20} MiB; not a build manifest")
                manifest = json.loads(text)
                graphs = {n: OnnxGraph(_regular(path.parent / g["file"]), device)
                          for n, g in manifest["graphs"].items()}
            except FileProblem as e:
                raise UsageError(f"{path}: cannot open the build: {e}") from None
            except (ValueError, KeyError, AttributeError) as e:  # JSON, UTF-8, or not a manifest's layout
                raise UsageError(f"{path}: not a build manifest (a JSON object whose `graphs` map names to "
                                 f"{{file: ...}}): {type(e).__name__}: {e}") from None
            except (OSError, RuntimeError, TypeError) as e:
                raise UsageError(f"{path}: cannot open the build: {e}") from e
            return cls(path, manifest, graphs)

    def choose(self, graph: str | None) -> tuple[str, bool]:
        """(the graph to run, whether it is a step graph with a KV cache)."""
        entries = (self.manifest or {}).get("graphs", {})
        stepping = [n for n, g in entries.items() if "cache" in g]
        if graph is not None:
            if graph not in self.graphs:
                raise UsageError(f"{self.path}: no graph {graph!r}; it has {sorted(self.graphs)}")
            return graph, graph in stepping
        if len(stepping) == 1:
            return stepping[0], True
        if stepping or len(self.graphs) != 1:
            raise UsageError(f"{self.path}: choose a graph with --graph: it has {sorted(stepping or self.graphs)}")
        return next(iter(self.graphs)), False


MANIFEST_MAX_BYTES = 16 << 20


def _regular(path: Path) -> Path:
    """`path` when it is a regular file (ONNX Runtime would block on a FIFO); FileProblem otherwise."""
    problem = kind_problem(path)
    if problem:
        raise FileProblem(f"{path.name}: {problem}")
    return path


def _locate(target: Path) -> Path:
    """The manifest or .onnx file that TARGET names or holds."""
    if is_dir(target):
        for pattern in ("*.manifest.json", "*.onnx"):
            found = sorted(target.glob(pattern))
            if len(found) == 1:
                return found[0]
            if found:
                raise UsageError(f"{target}: holds {len(found)} {pattern} files; name one of them as TARGET")
        raise UsageError(f"{target}: no *.manifest.json or *.onnx in this directory; compile a spec into it first")
    problem = kind_problem(target)
    if problem:
        raise UsageError(f"{target}: {problem}")
    if target.suffix not in (".json", ".onnx"):
        raise UsageError(f"{target}: not a build directory, a manifest (.json), an .onnx file or a spec (.yaml)")
    return target


# --- token decoding ----------------------------------------------------------------------------------------------


def _decode(build: _Build, graph: str, prompts: list[str], inputs: list[str], max_new_tokens: int | None,
            strategy: Strategy, options: dict, eos_id: int | None, pad_id: int | None,
            console: Console) -> list[list[int]]:
    """Run the strategy on the step graph; the rows, prompt and new tokens."""
    import numpy as np

    from mmspec.runtime import beam_search, greedy, sample
    from mmspec.runtime.decoding import Pipeline

    manifest = build.manifest
    entry = manifest["graphs"][graph]
    if strategy == Strategy.sample and not 0.0 < options["top_p"] <= 1.0:
        raise UsageError(f"--top-p must be in (0, 1], got {options['top_p']}")
    if strategy == Strategy.sample and not options["temperature"] > 0.0:
        raise UsageError(f"--temperature must be > 0 (use --strategy greedy for 0), got {options['temperature']}")
    if not prompts:
        raise UsageError(f"graph {graph!r} decodes tokens: give the prompt's token ids with --prompt \"1 2 3\"")
    rows = [_ids(text, f"--prompt #{i}", int) for i, text in enumerate(prompts, 1)]
    if len({len(r) for r in rows}) != 1:
        raise UsageError(f"the prompts have different lengths {[len(r) for r in rows]}; a batch needs equal lengths")
    prompt = np.array(rows, dtype=np.int64)  # B,T
    vocab = _vocab(entry)
    for i, row in enumerate(rows, 1):
        bad = [t for t in row if t < 0 or (vocab is not None and t >= vocab)]
        if bad:
            known = f"0..{vocab - 1} (the width of the logits)" if vocab is not None else "of ids >= 0"
            raise UsageError(f"--prompt #{i}: token id {bad[0]} is outside the vocabulary {known}")
    if eos_id is not None and vocab is not None and eos_id >= vocab:
        raise UsageError(f"--eos-id {eos_id} is outside the vocabulary 0..{vocab - 1}")
    positions = min((c["positions"] for c in entry["cache"] if "positions" in c), default=None)
    if positions is not None and prompt.shape[1] > positions:
        raise UsageError(f"the prompt has {prompt.shape[1]} tokens; graph {graph!r} has {positions} positions")
    if max_new_tokens is None:
        room = MAX_NEW_TOKENS if positions is None else positions - prompt.shape[1] + 1
        max_new_tokens = min(MAX_NEW_TOKENS, room)
    if positions is not None and prompt.shape[1] + max_new_tokens - 1 > positions:
        raise UsageError(f"a prompt of {prompt.shape[1]} tokens and --max-new-tokens {max_new_tokens} need "
                         f"{prompt.shape[1] + max_new_tokens - 1} positions; graph {graph!r} has {positions} "
                         f"(use --max-new-tokens {positions - prompt.shape[1] + 1} or less)")
    feeds = _token_feeds(manifest, graph, inputs, len(prompt))
    pipeline = Pipeline(manifest, build.graphs)
    with _runtime_errors(f"graph {graph!r}"), _progress(console, strategy.value, max_new_tokens, 1) as progress:
        decoder = pipeline.decoder(feeds, graph)
        common = dict(eos_id=eos_id, pad_id=pad_id, progress=progress)
        if strategy == Strategy.greedy:
            result = greedy(decoder, prompt, max_new_tokens, **common)
        elif strategy == Strategy.beam:
            result = beam_search(decoder, prompt, max_new_tokens, beams=options["beams"],
                                 length_penalty=options["length_penalty"], **common)
        else:
            result = sample(decoder, prompt, max_new_tokens, top_k=options["top_k"], top_p=options["top_p"],
                            temperature=options["temperature"], seed=options["seed"], **common)
    console.print(f"{printable(str(build.path))}: {strategy.value} on graph {graph!r}, {len(result)} row(s), "
                  f"{result.shape[1] - prompt.shape[1]} new token(s)", markup=False)
    return result.tolist()


def _image(build: _Build, graph: str, image_graph: str, offset: int, prompts: list[str], strategy: Strategy,
           options: dict, stopping: tuple, png: Path | None, npy: Path | None, console: Console) -> list[list[int]]:
    """Sample a grid of image codes after the prompts with the step graph, decode them with the vq_decoder graph
    `image_graph`, write --png / --npy; the codes of each row."""
    import numpy as np

    from mmspec.runtime.decoding import Pipeline
    from mmspec.runtime.images import generate_image

    if strategy == Strategy.beam:
        raise UsageError("--image-graph samples codes with --strategy greedy or sample, not beam")
    if any(v is not None for v in stopping):
        raise UsageError("--eos-id, --pad-id and --max-new-tokens do not apply to --image-graph: an image has as "
                         "many codes as its vq_decoder graph takes")
    if image_graph not in build.graphs or image_graph == graph:
        raise UsageError(f"--image-graph {image_graph!r}: not a graph of {build.path} besides {graph!r}; it has "
                         f"{sorted(build.graphs)}")
    if png is None and npy is None:
        raise UsageError("--image-graph writes its images to a file: give --png FILE and/or --npy FILE")
    if not prompts:
        raise UsageError(f"graph {graph!r} decodes tokens: give the prompt's token ids with --prompt \"1 2 3\"")
    rows = [_ids(text, f"--prompt #{i}", int) for i, text in enumerate(prompts, 1)]
    if len({len(r) for r in rows}) != 1:
        raise UsageError(f"the prompts have different lengths {[len(r) for r in rows]}; a batch needs equal lengths")
    entry = build.manifest["graphs"][image_graph]
    (codes_input,) = entry["inputs"] if len(entry["inputs"]) == 1 else (None,)
    if codes_input is None or not isinstance(codes_input["shape"][1], int):
        raise UsageError(f"--image-graph {image_graph!r} must take one input of fixed length (the codes of one "
                         f"image); it takes {[i['name'] for i in entry['inputs']]}")
    length = codes_input["shape"][1]
    kwargs = {} if strategy == Strategy.greedy else {k: options[k] for k in ("top_k", "top_p", "temperature", "seed")}
    pipeline = Pipeline(build.manifest, build.graphs)
    with _runtime_errors(f"graph {graph!r}"), _progress(console, strategy.value, length, 1) as progress:
        try:
            image = generate_image(pipeline.decoder({}, graph), build.graphs[image_graph],
                                   np.array(rows, dtype=np.int64), length, offset=offset, entry=entry,
                                   strategy=strategy.value, progress=progress, **kwargs)
        except ValueError as e:
            raise UsageError(f"--image-graph {image_graph!r}: {e}") from e
    files = {}
    if png is not None:
        if image.pixels.shape[1] not in PNG_COLOR_TYPES:
            raise UsageError(f"--png: a {image.pixels.shape[1]}-channel output is not an image; use --npy")
        files[png] = png_bytes(grid(image.pixels))
    if npy is not None:
        import io

        buffer = io.BytesIO()
        np.save(buffer, image.pixels)
        files[npy] = buffer.getvalue()
    _write_all(files)
    console.print(f"wrote {printable(', '.join(map(str, files)))}: {len(rows)} image(s) of {length} codes from graph "
                  f"{graph!r} through {image_graph!r}", markup=False)
    return image.codes.tolist()


def _vocab(entry: dict) -> int | None:
    """The width of the step graph's logits output (its one non-cache output), when static."""
    logits = [o for o in entry["outputs"] if "cache" not in o]
    width = logits[0]["shape"][-1] if len(logits) == 1 else None
    return width if isinstance(width, int) else None


def _token_feeds(manifest: dict, graph: str, given: list[str], rows: int) -> dict[str, np.ndarray]:
    """{input: array} for `Pipeline.decoder`, from --input NAME=VALUES; NAME_mask is ones when not given."""
    import numpy as np

    takes = _caller_inputs(manifest, graph)  # name -> manifest input entry
    values: dict[str, list[list[float]]] = {}
    for i, item in enumerate(given, 1):
        name, eq, text = item.partition("=")
        if not eq:
            raise UsageError(f"--input #{i}: expected NAME=VALUES, got {item!r}")
        if name not in takes:
            raise UsageError(f"--input #{i}: graph {graph!r} does not take {name!r}; "
                             f"its inputs: {sorted(takes) or 'none besides the tokens'}")
        kind = np.dtype(takes[name]["dtype"])
        values.setdefault(name, []).append(_ids(text, f"--input #{i} ({name})", float if kind.kind == "f" else int))
    feeds = {}
    for name, given_rows in values.items():
        spec = takes[name]
        rank = len(spec["shape"])
        dynamic = [d for d in spec["shape"][1:] if not isinstance(d, int)]
        if rank > 2 and len(dynamic) > 1:
            raise UsageError(f"--input {name}: a rank-{rank} input with more than one dynamic axis after the batch "
                             f"({', '.join(map(str, dynamic))}) cannot be given on the command line")
        if len(given_rows) not in (1, rows):
            raise UsageError(f"--input {name} is given {len(given_rows)} times; give it once, or once per prompt "
                             f"({rows})")
        if rank == 1 and any(len(r) != 1 for r in given_rows):
            raise UsageError(f"--input {name} takes one value per row, shape {spec['shape']}")
        if len({len(r) for r in given_rows}) != 1:
            raise UsageError(f"--input {name}: the rows have different lengths {[len(r) for r in given_rows]}")
        array = np.array(given_rows, dtype=spec["dtype"])  # R,L
        if rank > 2:  # each row's values flattened, in the input's shape after the batch (a dynamic axis inferred)
            tail = [d if isinstance(d, int) else -1 for d in spec["shape"][1:]]
            try:
                array = array.reshape(len(given_rows), *tail)
            except ValueError:
                raise UsageError(f"--input {name}: {array.shape[1]} values per row do not fill its shape "
                                 f"{spec['shape'][1:]} after the batch") from None
        feeds[name] = array[:, 0] if rank == 1 else array
    for name in takes:
        base = name.removesuffix("_mask")
        if name not in feeds and name != base and base in feeds:
            feeds[name] = np.ones(feeds[base].shape, dtype=takes[name]["dtype"])
    missing = sorted(set(takes) - set(feeds))
    if missing:
        raise UsageError(f"graph {graph!r} needs {', '.join(missing)}: give --input {missing[0]}=VALUES")
    return feeds


def _caller_inputs(manifest: dict, graph: str) -> dict[str, dict]:
    """The inputs `Pipeline.decoder` reads from the caller for `graph`: those of the graphs that feed it, the
    unconnected ones (`from: null`) and its own modality inputs besides the tokens."""
    entries = manifest["graphs"]
    takes: dict[str, dict] = {}
    own = {i["name"]: i for i in entries[graph]["inputs"]}
    for c in manifest["connections"]:
        if c["to"]["graph"] != graph or c.get("step") == "next":
            continue
        if c["from"] is None:
            takes[c["to"]["input"]] = own[c["to"]["input"]]
        else:
            takes.update({i["name"]: i for i in entries[c["from"]["graph"]]["inputs"]})
    modality = [i for i in own.values() if i["source"].startswith("modality ")]
    tokens = [i["name"] for i in modality if i["dtype"] == "int64"]
    if len(tokens) != 1:
        raise UsageError(f"graph {graph!r} has {len(tokens)} int64 modality inputs {tokens}; "
                         f"cannot tell which takes the tokens")
    takes.update({i["name"]: i for i in modality if i["name"] != tokens[0]})
    return takes


def _ids(text: str, where: str, kind: type) -> list:
    """Space-separated numbers; a located usage error for anything else."""
    values = []
    for word in text.replace(",", " ").split():
        try:
            values.append(kind(word))
        except ValueError:
            raise UsageError(f"{where}: {word!r} is not {'a token id' if kind is int else 'a number'}") from None
    if not values:
        raise UsageError(f"{where}: no values in {text!r}")
    return values


# --- diffusion ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Diffusion:
    """The diffusion options of the command line."""

    sampler: Sampler
    sample: str | None
    timestep: str | None
    eps: str | None
    cond: list[str]
    uncond: list[str]
    guidance: float | None
    steps: int
    schedule: str
    train_steps: int
    eta: float
    seed: int
    batch: int


def _diffuse(graph: Any, d: _Diffusion, png: Path | None, npy: Path | None, console: Console) -> np.ndarray:
    """Sample d.batch images with the denoiser `graph`, write them, and return them [B, C, H, W]."""
    import numpy as np

    from mmspec.runtime import Denoiser, alphas_cumprod, betas, ddim_sample, ddpm_sample

    if png is None and npy is None:
        raise UsageError("diffusion writes its samples to a file: give --png FILE and/or --npy FILE")
    for flag, path in (("--png", png), ("--npy", npy)):
        if path is not None and not path.parent.is_dir():
            raise UsageError(f"{flag} {path}: no directory {path.parent}")
    inputs = {i.name: (ORT_DTYPES.get(i.type.removeprefix("tensor(").removesuffix(")"), i.type), i.shape)
              for i in graph.session.get_inputs()}
    cond = _conditions(d.cond, "--cond", inputs, d.batch)
    uncond = _conditions(d.uncond, "--uncond", inputs, d.batch)
    if (d.guidance is None) != (not uncond):
        raise UsageError("--guidance needs --uncond NAME=VALUE for every --cond, and --uncond needs --guidance")
    if uncond and set(uncond) != set(cond):
        raise UsageError(f"--uncond gives {sorted(uncond)}, --cond gives {sorted(cond)}: give the same inputs")
    left = {n: v for n, v in inputs.items() if n not in cond}
    sample = d.sample or _only([n for n, (t, s) in left.items() if t.startswith("float") and len(s) == 4],
                               "noisy-sample input (float, rank 4)", "--sample", inputs)
    left.pop(sample, None)
    timestep = d.timestep or _only([n for n, (t, s) in left.items() if t == "int64" and len(s) == 1],
                                   "timestep input (int64, rank 1)", "--timestep (or give the others with --cond)",
                                   inputs)
    for flag, name in (("--sample", sample), ("--timestep", timestep)):
        if name not in inputs:
            raise UsageError(f"{flag} {name!r}: the graph's inputs are {sorted(inputs)}")
        if name in cond:
            raise UsageError(f"{flag} {name!r} is also given by --cond")
    unfed = sorted(set(inputs) - {sample, timestep, *cond})
    if unfed:
        raise UsageError(f"no value for the graph input(s) {unfed}: give --cond {unfed[0]}=VALUE")
    outputs = [o.name for o in graph.session.get_outputs()]
    eps = d.eps or _only(outputs, "predicted-noise output", "--eps", {n: None for n in outputs})
    if eps not in outputs:
        raise UsageError(f"--eps {eps!r}: the graph's outputs are {outputs}")
    dims = inputs[sample][1][1:]
    if len(dims) != 3 or not all(isinstance(n, int) for n in dims):
        raise UsageError(f"--sample {sample!r} has shape {inputs[sample][1]}; diffusion needs [batch, C, H, W] "
                         f"with fixed C, H, W")
    if png is not None and dims[0] not in PNG_COLOR_TYPES:
        raise UsageError(f"--png: a {dims[0]}-channel sample is not an image (1 to 4 channels); use --npy")
    if d.sampler == Sampler.ddim and d.steps > d.train_steps:
        raise UsageError(f"--steps {d.steps} exceeds --train-steps {d.train_steps}")
    rng = np.random.default_rng(d.seed)
    noise = rng.standard_normal((d.batch, *dims), dtype=np.float32)  # B,C,H,W
    denoiser = Denoiser(graph, sample, timestep, eps, cond, uncond or None)
    alphas = alphas_cumprod(betas(d.schedule, d.train_steps))
    total = d.steps if d.sampler == Sampler.ddim else d.train_steps
    with _runtime_errors("denoiser"), _progress(console, d.sampler.value, total, 0) as progress:
        common = dict(schedule=alphas, seed=d.seed + 1, guidance_scale=d.guidance, progress=progress)
        if d.sampler == Sampler.ddim:
            x = ddim_sample(denoiser, noise, steps=d.steps, eta=d.eta, **common)
        else:
            x = ddpm_sample(denoiser, noise, **common)
    files = {}
    if png is not None:
        files[png] = png_bytes(grid(x))
    if npy is not None:
        import io

        buffer = io.BytesIO()
        np.save(buffer, x)
        files[npy] = buffer.getvalue()
    _write_all(files)
    console.print(f"wrote {printable(', '.join(map(str, files)))}: {d.batch} sample(s) {list(dims)}, {d.sampler.value} "
                  f"{total} steps", markup=False)
    return x


def _conditions(items: list[str], flag: str, inputs: dict, batch: int) -> dict[str, np.ndarray]:
    """{input: value broadcast to [batch, ...]} from NAME=VALUE items."""
    import numpy as np

    out = {}
    for i, item in enumerate(items, 1):
        name, eq, text = item.partition("=")
        if not eq:
            raise UsageError(f"{flag} #{i}: expected NAME=VALUE, got {item!r}")
        if name not in inputs:
            raise UsageError(f"{flag} #{i}: the graph has no input {name!r}; its inputs are {sorted(inputs)}")
        dtype, shape = inputs[name]
        if not all(isinstance(n, int) for n in shape[1:]):
            raise UsageError(f"{flag} {name}: input shape {shape} has free axes; a scalar cannot fill it")
        value = _ids(text, f"{flag} #{i} ({name})", float if "float" in dtype else int)
        if len(value) != 1:
            raise UsageError(f"{flag} #{i} ({name}): expected one value, got {len(value)}")
        out[name] = np.full((batch, *shape[1:]), value[0], dtype=dtype)
    return out


def _only(names: list[str], what: str, flag: str, among: dict) -> str:
    if len(names) != 1:
        raise UsageError(f"cannot tell the {what}: candidates {names}, among {sorted(among)}; name it with {flag}")
    return names[0]


def grid(x: np.ndarray) -> np.ndarray:
    """Samples [B, C, H, W] in [-1, 1] -> one uint8 image [rows*H, cols*W, C], cols = ceil(sqrt(B)), row-major,
    empty cells black; value v maps to round((v + 1) * 127.5) clipped to 0..255."""
    import numpy as np

    b, c, h, w = x.shape
    cols = math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    pixels = np.clip(np.round((x.astype(np.float64) + 1.0) * 127.5), 0, 255).astype(np.uint8)  # B,C,H,W
    canvas = np.zeros((rows * cols, h, w, c), np.uint8)  # R*K,H,W,C
    canvas[:b] = pixels.transpose(0, 2, 3, 1)
    return canvas.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


def png_bytes(image: np.ndarray) -> bytes:
    """A PNG file of uint8 [H, W, C] (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA): 8-bit, no filtering, no
    interlace, one zlib-compressed IDAT chunk."""
    h, w, c = image.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, PNG_COLOR_TYPES[c], 0, 0, 0)
    scanlines = b"".join(b"\x00" + image[y].tobytes() for y in range(h))  # filter type 0 before each row
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(scanlines, 9))
            + chunk(b"IEND", b""))


def _write_all(files: dict[Path, bytes]) -> None:
    """Write every file to a temporary name next to it, then rename them all: none is left half-written."""
    temps: list[str] = []
    umask = os.umask(0)
    os.umask(umask)
    try:
        for path, data in files.items():
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temps.append(temp)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(temp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        for temp, path in zip(temps, files, strict=True):
            os.replace(temp, path)
    finally:
        for temp in temps:
            if os.path.exists(temp):
                os.unlink(temp)


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
