"""Opening checkpoints without running their code.

safetensors is read with the official library (one file, a Hugging Face directory with
`model.safetensors`, or shards listed in `model.safetensors.index.json`); names, shapes and dtypes come
from the headers and tensors are read one at a time. PyTorch pickles (`.bin`, `.pt`, `.pth`, `.ckpt`) are
refused unless the caller opts in, and then read with `torch.load(weights_only=True)` only: a pickle
that needs anything but tensors is refused, never retried unsafely.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch

from mmspec.errors import Diagnostic, WeightsError
from mmspec.spec.files import is_dir, kind_problem

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
INDEX_MAX_BYTES = 64 << 20
"""A shard index (`*.index.json`) larger than this is refused before it is parsed."""
HEADER_MAX_BYTES = 64 << 20
"""A safetensors JSON header larger than this (or than the file) is refused before the library reads it."""
TENSORS_MAX = 100_000
"""A safetensors file that declares more tensors than this is refused before the library parses its header
(which costs about 1 KiB of memory per tensor). Published checkpoints hold at most a few ten thousand per file."""
FIT_MARKER = "spec_sha256"
"""The metadata key every `mmspec fit` checkpoint carries (the trained spec's hash)."""
_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2", "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
    "BOOL": "bool",
}  # fmt: skip
_SAFE_HINT = "convert it to .safetensors (pickles can run code)"


def fail(file: Path | str, code: str, message: str) -> WeightsError:
    return WeightsError([Diagnostic(str(file), 0, 0, code, message)])


@dataclass(frozen=True, slots=True)
class Entry:
    """Where one tensor lives and what its header says."""

    file: Path
    shape: tuple[int, ...]
    dtype: str
    """torch dtype name: float32, bfloat16, int64, ..."""


class Checkpoint:
    """The tensors of a checkpoint by name (`entries`, from headers); `read(name)` loads one on the CPU.

    Use as a context manager: open safetensors files are closed on exit.
    """

    def __init__(
        self, path: Path, format: str, entries: dict[str, Entry], stack: ExitStack, handles: dict, metadata: dict
    ):
        self.path = path
        self.format = format
        self.entries = entries
        self._stack = stack
        self._handles = handles
        """file -> safe_open handle (safetensors) or the loaded state dict (torch)."""
        self.metadata = metadata
        """The first safetensors file's header metadata ({} for pickles)."""

    @property
    def native(self) -> bool:
        """Written by `mmspec fit`: mmspec's own tensor names (`components.*`, `objectives.*`, `optimizer.*`)."""
        return FIT_MARKER in self.metadata

    @property
    def files(self) -> list[Path]:
        return sorted({e.file for e in self.entries.values()})

    def read(self, name: str) -> torch.Tensor:
        entry = self.entries[name]
        handle = self._handles[entry.file]
        return handle[name] if isinstance(handle, dict) else handle.get_tensor(name)

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()


def open_checkpoint(path: str | Path, allow_torch_load: bool = False) -> Checkpoint:
    """Open a safetensors file or directory (or, with `allow_torch_load`, a PyTorch pickle); WeightsError otherwise."""
    root = Path(path)
    if is_dir(root):
        files, fmt = _resolve_dir(root)
    elif not kind_problem(root):
        files, fmt = [root], _format_of(root)
    else:  # missing, a FIFO or device (never opened: reading one could block or never end), unreadable, ...
        raise fail(root, "weights-read", kind_problem(root) or "not a file or directory")
    if fmt == "torch" and not allow_torch_load:
        raise fail(
            files[0],
            "unsafe-pickle",
            f"refusing to unpickle a PyTorch checkpoint; {_SAFE_HINT}, or pass --allow-torch-load to read plain "
            "tensors only (torch.load with weights_only=True)",
        )
    return _open_safetensors(root, files) if fmt == "safetensors" else _open_torch(root, files)


def _format_of(file: Path) -> str:
    if file.name.endswith(".safetensors"):
        return "safetensors"
    if file.name.endswith(PICKLE_SUFFIXES):
        return "torch"
    raise fail(file, "weights-read", "unknown weights format: expected a .safetensors file or a checkpoint directory")


def _resolve_dir(root: Path) -> tuple[list[Path], str]:
    """The weight files of a Hugging Face checkpoint directory, safetensors first."""
    for single, index, fmt in (
        ("model.safetensors", "model.safetensors.index.json", "safetensors"),
        ("pytorch_model.bin", "pytorch_model.bin.index.json", "torch"),
    ):
        if (root / single).is_file():
            return [root / single], fmt
        if (root / index).is_file():
            return _shards(root / index), fmt
    found = sorted(p.name for p in root.iterdir() if p.name.endswith((".safetensors", *PICKLE_SUFFIXES)))
    fits = [root / f for f in found if f.endswith(".safetensors") and (root / f"{f[:-12]}.spec.yaml").is_file()]
    if len(fits) == 1:  # an `mmspec fit --out DIR` directory: <stem>.safetensors next to <stem>.spec.yaml
        return fits, "safetensors"
    hint = f"; it has {', '.join(found)} (pass one file)" if found else ""
    raise fail(root, "weights-read", f"no model.safetensors or model.safetensors.index.json in this directory{hint}")


def _shards(index: Path) -> list[Path]:
    """Shard files named by an index's `weight_map`; each must be a plain file name next to the index."""
    try:
        size = index.stat().st_size
    except OSError as e:
        raise fail(index, "weights-read", f"cannot read the index ({_one_line(e)})") from None
    if size > INDEX_MAX_BYTES:
        raise fail(index, "weights-read", f"index of {size} bytes is larger than the limit of {INDEX_MAX_BYTES} bytes")
    try:
        weight_map = json.loads(index.read_bytes())["weight_map"]
        names = set(weight_map.values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise fail(index, "weights-read", f"not a checkpoint index with a 'weight_map': {_one_line(e)}") from None
    for name in sorted(names, key=str):
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise fail(index, "weights-read", f"shard {name!r} is not a file name in {index.parent}")
        if not (index.parent / name).is_file():
            raise fail(index, "weights-read", f"shard {name!r} does not exist")
    return [index.parent / name for name in sorted(names)]


def _open_safetensors(root: Path, files: list[Path]) -> Checkpoint:
    from safetensors import SafetensorError, safe_open

    stack = ExitStack()
    entries: dict[str, Entry] = {}
    handles = {}
    metadata: dict = {}
    try:
        for file in files:
            _check_header(file)
            try:
                handle = stack.enter_context(safe_open(str(file), framework="pt"))
                if not handles:
                    metadata = handle.metadata() or {}
                for name in handle.keys():
                    view = handle.get_slice(name)
                    if name in entries:
                        raise fail(file, "weights-read", f"tensor {name!r} is also in {entries[name].file.name}")
                    dtype = _SAFETENSORS_DTYPES.get(view.get_dtype(), view.get_dtype())
                    entries[name] = Entry(file, tuple(view.get_shape()), dtype)
            except (SafetensorError, OSError) as e:
                raise fail(
                    file,
                    "weights-read",
                    f"not a readable safetensors file ({_one_line(e)}); is it truncated or corrupt?",
                ) from None
            handles[file] = handle
    except BaseException:
        stack.close()
        raise
    return Checkpoint(root, "safetensors", entries, stack, handles, metadata)


def _check_header(file: Path) -> None:
    """The 8-byte little-endian header length must fit HEADER_MAX_BYTES and the file itself, and the header may
    declare at most TENSORS_MAX tensors (counted in the raw JSON, a chunk at a time)."""
    try:
        size = file.stat().st_size
        with file.open("rb") as f:
            head = f.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else 0
            tensors = _count_tensors(f, length) if 0 < length <= min(HEADER_MAX_BYTES, size - 8) else 0
    except OSError as e:
        raise fail(file, "weights-read", f"cannot read the file ({_one_line(e)})") from None
    if len(head) < 8:
        raise fail(file, "weights-read", f"not a safetensors file: {size} bytes, shorter than the 8-byte header length")
    length = int.from_bytes(head, "little")
    if length > HEADER_MAX_BYTES:
        raise fail(
            file,
            "weights-read",
            f"safetensors header of {length} bytes is larger than the limit of {HEADER_MAX_BYTES} bytes",
        )
    if length > size - 8:
        raise fail(file, "weights-read", f"safetensors header of {length} bytes runs past the end of the file "
                   f"({size} bytes); is it truncated?")  # fmt: skip
    if tensors > TENSORS_MAX:
        raise fail(file, "weights-read", f"the header declares {tensors:,} tensors, more than the limit of "
                   f"{TENSORS_MAX:,}; no model has that many tensors in one file")  # fmt: skip


def _count_tensors(f, length: int, chunk: int = 1 << 20) -> int:
    """How many tensor entries the next `length` bytes of JSON declare (occurrences of "data_offsets")."""
    key, count, tail, left = b'"data_offsets"', 0, b"", length
    while left > 0:
        block = f.read(min(chunk, left))
        if not block:
            break
        left -= len(block)
        data = tail + block
        count += data.count(key)
        tail = data[-(len(key) - 1):]  # too short to hold a key: one split across two chunks counts once
    return count


def _open_torch(root: Path, files: list[Path]) -> Checkpoint:
    """torch.load(weights_only=True), which allows tensors and plain containers only; torch >= 2.10 (CVE-2025-32434,
    CVE-2026-24747 broke that guarantee before)."""
    if tuple(int(x) for x in re.findall(r"\d+", torch.__version__)[:2]) < (2, 10):
        raise fail(files[0], "unsafe-pickle", f"torch {torch.__version__} cannot load pickles safely; {_SAFE_HINT}")
    entries: dict[str, Entry] = {}
    handles = {}
    for file in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                state = torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            needs = ", ".join(dict.fromkeys(re.findall(r"GLOBAL ([\w.]+)", str(e)))) or "objects other than tensors"
            raise fail(
                file, "unsafe-pickle", f"refused: the pickle needs {needs}, not just tensors; {_SAFE_HINT}"
            ) from None
        except Exception as e:  # not a pickle at all, a damaged zip, ...
            raise fail(
                file, "weights-read", f"not a readable PyTorch checkpoint ({type(e).__name__}: {_one_line(e)})"
            ) from None
        if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
            raise fail(file, "weights-read", "expected a flat mapping of tensor names to tensors (a state_dict)")
        for name, t in state.items():
            if name in entries:
                raise fail(file, "weights-read", f"tensor {name!r} is also in {entries[name].file.name}")
            entries[name] = Entry(file, tuple(t.shape), str(t.dtype).removeprefix("torch."))
        handles[file] = state
    return Checkpoint(root, "torch", entries, ExitStack(), handles, {})


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
