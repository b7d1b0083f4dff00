"""`mmspec` command line: a thin typer shell over `mmspec.api`.

Library errors map to exit codes in one place (`main`): SpecError/UsageError and command-line usage
errors -> 2, CompileError -> 1, Ctrl-C -> 130 (silently), an unexpected exception -> 1 with a one-line
message. Tracebacks only with MMSPEC_DEBUG=1. Every command imports its heavy dependencies lazily,
so `mmspec validate` never imports torch.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated, NoReturn

import typer

from mmspec.errors import MmspecError, SpecError, UsageError, WeightsError, printable

app = typer.Typer(
    name="mmspec", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Compile declarative multimodal model specs (YAML) to verified ONNX.\n\n"
         "Exit codes: 0 success; 1 compile, export or verification failure; 2 spec or usage error; "
         "130 interrupted. Set MMSPEC_DEBUG=1 for Python tracebacks.",
)


def _print_version(value: bool) -> None:
    if value:
        import mmspec

        print(f"mmspec {mmspec.__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", help="Show the version and exit.", is_eager=True, callback=_print_version)
    ] = False,
) -> None:
    pass


def _register() -> None:
    from mmspec.cli import bench, components, export_triton, fit, generate, graph, import_cmd, schema, summary, validate
    from mmspec.cli import compile as compile_cmd

    for module in (validate, compile_cmd, summary, schema, components, import_cmd, fit, generate, bench,
                   export_triton, graph):
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> NoReturn:
    """Console entry point: runs the command and exits (SystemExit) with the exit code of docs/contracts.md.
    SIGINT, SIGTERM and SIGHUP unwind the command like Ctrl-C (temporary files and half-published outputs are
    cleaned up) and exit with 128 + the signal number; signals that arrive during that cleanup are ignored."""
    previous = {signum: signal.getsignal(signum) for signum in _SIGNALS}
    _received.clear()
    _handle(_interrupted)
    code = run(argv)
    try:
        _handle(_ignored)  # a Python call: a signal still pending runs its handler first
    except KeyboardInterrupt:
        code = 130
    except Terminated as e:
        code = 128 + e.signum
    if not _received:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.exit(code)
    # Interrupted and cleaned up: leave now. A signal during the interpreter's shutdown would find its default
    # (fatal) action restored, and an interrupt that landed in Python code run from C (PyRun_*) makes CPython
    # kill itself with SIGINT at exit whatever the exit status.
    _handle(signal.SIG_IGN)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)
_received: list[int] = []
"""The signal that interrupted the command, if one did."""


def _handle(handler) -> None:
    for signum in _SIGNALS:
        signal.signal(signum, handler)


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised where the process was (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _interrupted(signum: int, frame) -> None:
    _received.append(signum)
    # The first signal wins; the cleanup runs undisturbed. A Python no-op, not SIG_IGN: signals already pending
    # (several can arrive while a C call runs) would otherwise print "Signal N ignored due to race condition".
    _handle(_ignored)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def _ignored(signum: int, frame) -> None:
    """A signal during the cleanup of an interrupted command."""


def run(argv: list[str] | None = None) -> int:
    """Run one command line and return its exit code; errors are printed to stderr, never raised
    (except with MMSPEC_DEBUG=1, where unexpected exceptions propagate with their traceback)."""
    debug = os.environ.get("MMSPEC_DEBUG") == "1"
    try:
        result = app(args=argv, prog_name="mmspec", standalone_mode=False)
        # Without standalone mode, typer returns the exit code of `--help`/`ctx.exit(n)` (130 for Ctrl-C
        # during argument parsing) and the command's return value otherwise (our commands return None).
        return result if isinstance(result, int) and not isinstance(result, bool) else 0
    except KeyboardInterrupt:
        return 130
    except Terminated as e:
        return 128 + e.signum
    except BrokenPipeError:  # `mmspec schema | head`: the reader left; stay quiet, as `cat` does
        _silence_stdout()
        return 1
    except MmspecError as e:
        if debug and not isinstance(e, SpecError | UsageError):
            raise
        _stderr(e.render() if isinstance(e, SpecError | WeightsError) else f"error: {_one_line(e)}")
        return e.exit_code
    except typer.Abort:  # EOF on a prompt, or an explicit abort
        _stderr("aborted")
        return 130
    except typer.Exit as e:
        return e.exit_code
    except typer.TyperException as e:  # click's usage errors: typo'd option, missing argument, ...
        _show_usage_error(e)
        return getattr(e, "exit_code", 2)
    except Exception as e:
        if debug:
            raise
        _stderr(f"internal error: {type(e).__name__}: {_one_line(e)} (set MMSPEC_DEBUG=1 for the traceback)")
        return 1


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return printable(text)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _stderr(text: str) -> None:
    sys.stdout.flush()
    print(text, file=sys.stderr, flush=True)


def _show_usage_error(e: typer.TyperException) -> None:
    """Usage line, help hint, then `error: ...` (click's own `show` writes a capitalised 'Error:')."""
    ctx = getattr(e, "ctx", None)
    message = e.format_message()
    if type(e).__name__ == "NoArgsIsHelpError":  # `mmspec` or `mmspec CMD` alone: the help text
        _stderr(message)
        return
    lines = []
    if ctx is not None:
        lines.append(ctx.get_usage())
        if ctx.command.get_help_option(ctx) is not None:
            lines.append(f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help.")
        lines.append("")
    lines.append(f"error: {message}")
    _stderr("\n".join(lines))
