"""Error types and located diagnostics shared by every stage (no torch here).

A `Diagnostic` renders as ``FILE:LINE:COL: error[CODE]: message`` (docs/contracts.md). Exceptions map to CLI
exit codes: `SpecError`/`UsageError` -> 2, `CompileError` (build, capture, pass, export, verify) -> 1.
"""

from __future__ import annotations

import ast
import re
import unicodedata
from dataclasses import dataclass

MAX_PRINTED_DIAGNOSTICS = 50


@dataclass(frozen=True)
class Diagnostic:
    """One located problem in a spec file. `line`/`col` are 1-based; 0 means 'whole file'."""

    file: str
    line: int
    col: int
    code: str
    message: str

    def render(self) -> str:
        return f"{printable(self.file)}:{self.line}:{self.col}: error[{self.code}]: {printable(self.message)}"

    @property
    def suggestion(self) -> str | None:
        """The name a ` (did you mean 'x'?)` ending of the message proposes, if any."""
        m = _DID_YOU_MEAN.search(self.message)
        return ast.literal_eval(m[1]) if m else None

    def as_json(self) -> dict:
        """The diagnostic for tools (`mmspec validate --format json`): file, line, column, code, message and
        suggestion (null when none)."""
        return {"file": self.file, "line": self.line, "column": self.col, "code": self.code,
                "message": self.message, "suggestion": self.suggestion}

    def github(self) -> str:
        """A GitHub Actions `::error` workflow command (values escaped as the runner requires)."""
        title = _gh(f"mmspec {self.code}", True)
        where = f"file={_gh(printable(self.file), True)},line={self.line},col={self.col},title={title}"
        return f"::error {where}::{_gh(printable(self.message), False)}"


_DID_YOU_MEAN = re.compile(r"\(did you mean ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\?\)\s*$")


def _gh(text: str, prop: bool) -> str:
    """Escape for a workflow command: %, CR and LF always; `:` and `,` in properties too."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def printable(text: str) -> str:
    """Escape what must not reach a terminal raw: control and format characters (ANSI escapes, bidi overrides,
    zero-width characters), and the non-Latin letters of a word that mixes them with ASCII ones, so a look-alike
    shows as what it is ('he\\u0430ds' is not 'heads'). Words wholly in another script stay readable."""
    text = "".join(c if c.isprintable() or c == "\n" else _escape(c) for c in text)
    return _MIXED_WORD.sub(lambda m: "".join(c if _latin(c) else _escape(c) for c in m[0]), text)


def _latin(c: str) -> bool:
    """ASCII, a digit or `_`, or a Latin letter (accents are told apart by eye; Cyrillic 'а' is not)."""
    return c.isascii() or not c.isalpha() or unicodedata.name(c, "").startswith("LATIN ")


def _escape(c: str) -> str:
    """Python's escape of `c` (`\\r`, `\\x1b`, `\\u200b`), also for a printable look-alike (`\\u0430`)."""
    shown = repr(c)[1:-1]
    if shown.startswith("\\"):
        return shown
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}"


_MIXED_WORD = re.compile(r"\w*(?:[A-Za-z][^\W\d_A-Za-z]|[^\W\d_A-Za-z][A-Za-z])\w*")
"""A word with an ASCII letter next to a non-ASCII letter."""


def shorten(text: str, limit: int = 60) -> str:
    """`text` if it is at most `limit` characters, else its start, `...` and its length."""
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text)} characters)"


class MmspecError(Exception):
    """Root of every error mmspec raises on purpose."""

    exit_code = 1


class SpecError(MmspecError, ValueError):
    """The spec (or a CLI override) is invalid; carries every diagnostic found."""

    exit_code = 2

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.file, d.line, d.col, d.code))
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(_capped(self.diagnostics))


def _capped(diagnostics: list[Diagnostic], uncounted: int = 0) -> list[str]:
    """The first MAX_PRINTED_DIAGNOSTICS rendered, then how many more there are (with `uncounted` more that exist
    only as a count)."""
    shown = [d.render() for d in diagnostics[:MAX_PRINTED_DIAGNOSTICS]]
    hidden = len(diagnostics) - len(shown) + uncounted
    return [*shown, f"...and {hidden} more"] if hidden > 0 else shown


class UsageError(MmspecError, ValueError):
    """A command-line argument is wrong (bad variant name, bad --set path, unreadable weights)."""

    exit_code = 2


class ConfigError(SpecError, UsageError):
    """A Hugging Face `config.json` that `mmspec import hf` cannot import (a usage error, exit 2): located
    diagnostics (code `hf-config`) at the offending key, or at 0:0 for what concerns the whole file."""


class WeightsError(UsageError):
    """A `--weights` checkpoint cannot be used: unreadable, unsafe, or not the model's tensors. One diagnostic
    per problem (FILE is the checkpoint file, LINE:COL 0:0); `hidden` counts, by code, the problems past the
    first MAX_PRINTED_DIAGNOSTICS of their kind that were only counted (a hostile checkpoint may hold millions);
    the first 50 are printed, then a count. Nothing was loaded."""

    def __init__(self, diagnostics: list[Diagnostic], summary: str = "", hidden: dict[str, int] | None = None):
        self.diagnostics = list(diagnostics)
        self.summary = summary
        self.hidden = dict(hidden or {})
        super().__init__(self.render())

    def render(self) -> str:
        lines = _capped(self.diagnostics, sum(self.hidden.values()))
        return "\n".join([*lines, f"error: {printable(self.summary)}"] if self.summary else lines)


class CompileError(MmspecError):
    """Build, capture, a pass, export or verification failed; no artifact is left behind."""

    exit_code = 1


class TrainingError(MmspecError):
    """Training stopped (a loss that turned non-finite); nothing is written."""

    exit_code = 1


class VerificationError(CompileError):
    """ONNX Runtime disagreed with eager PyTorch beyond tolerance."""
