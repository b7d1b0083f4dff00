"""Error types and located diagnostics shared by every stage (no torch here).

A `Diagnostic` renders as ``FILE:LINE:COL: error[CODE]: message`` (docs/contracts.md). Exceptions map to CLI
exit codes: `SpecError`/`UsageError` -> 2, `CompileError` (build, capture, pass, export, verify) -> 1.
"""

from __future__ import annotations

import ast
import re
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
        return f"{self.file}:{self.line}:{self.col}: error[{self.code}]: {_printable(self.message)}"

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
        where = f"file={_gh(self.file, True)},line={self.line},col={self.col},title={_gh(f'mmspec {self.code}', True)}"
        return f"::error {where}::{_gh(_printable(self.message), False)}"


_DID_YOU_MEAN = re.compile(r"\(did you mean ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\?\)\s*$")


def _gh(text: str, prop: bool) -> str:
    """Escape for a workflow command: %, CR and LF always; `:` and `,` in properties too."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def _printable(text: str) -> str:
    """Escape control characters so hostile input never drives the terminal."""
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)


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
        shown = [d.render() for d in self.diagnostics[:MAX_PRINTED_DIAGNOSTICS]]
        hidden = len(self.diagnostics) - MAX_PRINTED_DIAGNOSTICS
        if hidden > 0:
            shown.append(f"...and {hidden} more")
        return "\n".join(shown)


class UsageError(MmspecError, ValueError):
    """A command-line argument is wrong (bad variant name, bad --set path, unreadable weights)."""

    exit_code = 2


class WeightsError(UsageError):
    """A `--weights` checkpoint cannot be used: unreadable, unsafe, or not the model's tensors. One diagnostic
    per problem (FILE is the checkpoint file, LINE:COL 0:0), every one of them; nothing was loaded."""

    def __init__(self, diagnostics: list[Diagnostic], summary: str = ""):
        self.diagnostics = list(diagnostics)
        self.summary = summary
        super().__init__(self.render())

    def render(self) -> str:
        lines = [d.render() for d in self.diagnostics]
        return "\n".join([*lines, f"error: {_printable(self.summary)}"] if self.summary else lines)


class CompileError(MmspecError):
    """Build, capture, a pass, export or verification failed; no artifact is left behind."""

    exit_code = 1


class TrainingError(MmspecError):
    """Training stopped (a loss that turned non-finite); nothing is written."""

    exit_code = 1


class VerificationError(CompileError):
    """ONNX Runtime disagreed with eager PyTorch beyond tolerance."""
