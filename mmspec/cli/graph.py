"""`mmspec graph SPEC -o FILE`: a picture of the spec (.svg, .html or .mmd), drawn without a browser."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmspec.cli._options import MaxActivationOpt, MaxParamsOpt, QuietOpt, SetOpt, SpecArg, VariantOpt


def graph(
    spec: SpecArg,
    out: Annotated[Path, typer.Option("--out", "-o", metavar="FILE",
                                      help="The picture: .svg, .html (self-contained) or .mmd (Mermaid).")],
    variant: VariantOpt = None,
    set_: SetOpt = None,
    lowered: Annotated[bool, typer.Option("--lowered", help="Draw the captured FX graph, grouped by component.")]
    = False,
    quiet: QuietOpt = False,
    max_params: MaxParamsOpt = None,
    max_activation_bytes: MaxActivationOpt = None,
) -> None:
    """Draw the spec: modalities -> encoders -> fusion -> heads -> objectives with tensor shapes and parameter
    counts, the training-only parts in a frame of their own; or, with --lowered, the FX graph by component.

    The format follows the file's suffix. The model is built on the meta device (no weights are allocated), and
    the file is written whole or not at all.
    """
    import tempfile

    from rich.console import Console

    from mmspec.api import picture
    from mmspec.errors import CompileError, UsageError, printable
    from mmspec.graph.picture import WRITERS
    from mmspec.spec.budget import budget_from_options
    from mmspec.spec.files import FileProblem, describe, publish_files, publish_problem

    writer = WRITERS.get(out.suffix.lower())
    if writer is None:
        raise UsageError(f"-o {printable(str(out))}: the suffix must be one of {', '.join(WRITERS)} "
                         f"(it chooses the format), not {printable(out.suffix) or 'none'}")
    problem = publish_problem(out)
    if problem:
        raise UsageError(f"-o {printable(str(out))}: {problem}")
    text = writer(picture(spec, variant, set_ or (), lowered, budget_from_options(max_params, max_activation_bytes)))
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".mmspec-", dir=parent) as staging:
            tmp = Path(staging) / "picture"
            tmp.write_text(text, encoding="utf-8")
            publish_files([(tmp, out)], Path(staging))
    except FileProblem as e:
        raise UsageError(f"-o {printable(str(out))}: {e}") from None
    except OSError as e:
        raise CompileError(f"cannot write {printable(str(out))}: {describe(e)}") from None
    Console(stderr=True, quiet=quiet, highlight=False).print(
        f"wrote {printable(str(out))} ({len(text.encode()):,} bytes)", markup=False)


def register(app: typer.Typer) -> None:
    app.command("graph")(graph)
