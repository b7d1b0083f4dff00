"""`mmspec import hf DIR -o SPEC`: write a spec from a Hugging Face checkpoint's config.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import_app = typer.Typer(
    name="import", no_args_is_help=True, help="Write an mmspec spec from another framework's model configuration."
)


@import_app.command("hf")
def import_hf(
    path: Annotated[
        Path,
        typer.Argument(help="Checkpoint directory (or its config.json).", metavar="DIR", show_default=False),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="SPEC", help="Spec file to write.")],
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="The spec's name (default: from the directory name).")
    ] = None,
) -> None:
    """Write SPEC from DIR/config.json (BERT, RoBERTa, XLM-R, data2vec text/audio/vision, GPT-1, GPT-2, T5, ViT,
    ViTMAE, Swin, CLIP, ALIGN, FLAVA, IDEFICS, Perceiver, ResNet, EfficientNet).

    The spec's `weights:` section names the checkpoint's tensors, so `mmspec compile SPEC --weights DIR`
    loads them. An unsupported model_type, architecture or option, a config whose values make no valid model,
    and an existing SPEC exit 2 and say which. A model past the default parameter budget imports, with the
    --max-params that validate and compile need.
    """
    from mmspec.errors import UsageError, printable
    from mmspec.importers.hf import import_hf as _import_hf
    from mmspec.importers.hf import write_spec
    from mmspec.spec.budget import DEFAULT_MAX_PARAMS

    if out.exists() or out.is_symlink():
        raise UsageError(f"-o {out}: already exists; import hf never replaces a file (remove it or pick a new name)")
    tree, arch = _import_hf(path, name)
    params = write_spec(tree, out)
    shown_out, shown_path = printable(str(out)), printable(str(path))
    big = params > DEFAULT_MAX_PARAMS
    limit = f" --max-params {params}" if big else ""
    typer.echo(f"wrote {shown_out} (transformers.{arch}); load its weights with: mmspec compile {shown_out}{limit} "
               f"--weights {shown_path}", err=True)
    if big:
        typer.echo(f"note: {params:,} estimated parameters, past the default budget of {DEFAULT_MAX_PARAMS:,}: "
                   f"validate, summary and compile need --max-params {params}", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(import_app)
