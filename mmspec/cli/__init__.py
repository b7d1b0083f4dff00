"""`mmspec` command line: a thin typer shell over `mmspec.api`.

Library errors map to exit codes in one place (`main`): SpecError/UsageError -> 2, CompileError -> 1,
Ctrl-C -> 130, an unexpected exception -> 1 with a one-line message. Tracebacks only with MMSPEC_DEBUG=1.
"""

from __future__ import annotations

import os
import sys

import typer

from mmspec.errors import MmspecError, SpecError

app = typer.Typer(
    name="mmspec", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Compile declarative multimodal model specs to verified ONNX.",
)


def _register() -> None:
    from mmspec.cli import compile as compile_cmd
    from mmspec.cli import components, schema, summary, validate

    for module in (validate, compile_cmd, summary, schema, components):
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns (and exits with) the DESIGN.md exit code."""
    debug = os.environ.get("MMSPEC_DEBUG") == "1"
    try:
        app(args=argv, standalone_mode=False)
        code = 0
    except KeyboardInterrupt:
        code = 130
    except MmspecError as e:
        if debug:
            raise
        print(e.render() if isinstance(e, SpecError) else f"error: {e}", file=sys.stderr)
        code = e.exit_code
    except typer.Abort:
        code = 130
    except Exception as e:  # click usage errors carry their own exit code
        import click

        if isinstance(e, click.ClickException):
            e.show()
            code = e.exit_code
        elif isinstance(e, click.exceptions.Exit):
            code = e.exit_code
        elif debug:
            raise
        else:
            print(f"internal error: {type(e).__name__}: {e} (MMSPEC_DEBUG=1 shows the traceback)", file=sys.stderr)
            code = 1
    if __name__ != "__main__":
        sys.exit(code)
    return code
