"""`mmspec fit SPEC --steps N`: train through the spec's objectives, in one process or, with --nproc K, in K
torchrun processes (DDP; FSDP with --fsdp)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from mmspec.cli._options import Device, QuietOpt, SetOpt, SpecArg, VariantOpt


def fit(
    spec: SpecArg,
    steps: Annotated[int, typer.Option(metavar="N", min=1, help="Optimizer steps.", show_default=False)],
    variant: VariantOpt = None,
    set_: SetOpt = None,
    batch: Annotated[int, typer.Option(metavar="B", min=1, help="Global batch rows of the synthetic batch.")] = 8,
    lr: Annotated[float, typer.Option(metavar="X", min=0.0, help="AdamW learning rate.")] = 3e-3,
    seed: Annotated[int, typer.Option(metavar="S", min=0, help="Seed of the batch and of its masks/noise.")] = 0,
    json_file: Annotated[
        Path | None, typer.Option("--json", metavar="FILE", help='Write {"steps", "losses", "objectives"}.')
    ] = None,
    batch_file: Annotated[
        Path | None,
        typer.Option(metavar="F", help="safetensors batch: graph inputs by name, targets as OBJECTIVE.TARGET."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", metavar="DIR", help="Write DIR/<stem>.safetensors + .spec.yaml.")
    ] = None,
    nproc: Annotated[int, typer.Option(metavar="K", min=1, help="Processes on this machine (torchrun).")] = 1,
    device: Annotated[Device, typer.Option(help="Train on this device.", case_sensitive=False)] = Device.cpu,
    fsdp: Annotated[bool, typer.Option("--fsdp", help="Shard parameters and optimizer state (FSDP2).")] = False,
    resample: Annotated[
        bool, typer.Option("--resample", help="Draw new views, masks, noise and negatives every step.")
    ] = False,
    weights: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="Start from these weights: a checkpoint for the spec's `weights:` "
                     "layouts (import hf), or one written by fit."),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="Continue a fit checkpoint's run: its weights, optimizer state and step "
                     "count; --steps more steps."),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Train a spec through its objectives on one batch: synthetic (from the modalities' shapes and the
    objectives' targets) or --batch-file.

    The batch's masks, noise, views and negatives are drawn once (the run overfits that batch, which shows that
    gradients reach every trainable part) unless --resample. Frozen components (`trainable: false`) do not
    change; EMA teachers follow their schedules; GAN objectives with different `updates:` alternate.
    --nproc K splits the global batch over K processes (gloo on CPU, nccl on CUDA); see docs/training.md.
    --out DIR writes a checkpoint that `compile --weights DIR`, `summary --weights` and `fit --weights/--resume`
    read as it is.
    """
    from rich.console import Console

    from mmspec import api
    from mmspec.errors import UsageError, printable

    console = Console(stderr=True, quiet=quiet or os.environ.get("RANK", "0") != "0", highlight=False, soft_wrap=True)
    if nproc > 1:
        from mmspec.train import distributed  # imports torch: only for the launcher

        if distributed.in_worker():
            raise UsageError("--nproc starts torchrun itself; under torchrun, leave it out")
        if device.value == "cuda":
            import torch

            if torch.cuda.device_count() < nproc:
                raise UsageError(
                    f"--nproc {nproc} --device cuda needs {nproc} CUDA devices; this machine has "
                    f"{torch.cuda.device_count()}"
                )
        if batch_file is None and batch % nproc:
            raise UsageError(f"--batch {batch} does not split evenly over --nproc {nproc}")
        loaded = api.load_spec(spec, variant, set_ or ())  # spec and batch errors: exit 2 here, not in the workers
        if batch_file is not None:
            from mmspec.train.data import read_batch_file

            rows = read_batch_file(batch_file, loaded).size
            if rows % nproc:
                raise UsageError(f"--batch-file {batch_file} has {rows} rows, which do not split over --nproc {nproc}")
        argv = [
            "fit",
            str(spec),
            "--steps",
            str(steps),
            "--batch",
            str(batch),
            "--lr",
            repr(lr),
            "--seed",
            str(seed),
            "--device",
            device.value,
        ]
        argv += [a for v in (set_ or ()) for a in ("--set", v)]
        for flag, value in (
            ("--variant", variant),
            ("--json", json_file),
            ("--batch-file", batch_file),
            ("--out", out),
            ("--weights", weights),
            ("--resume", resume),
        ):
            argv += [flag, str(value)] if value is not None else []
        argv += (["--fsdp"] if fsdp else []) + (["--resample"] if resample else []) + (["--quiet"] if quiet else [])
        raise typer.Exit(distributed.launch(argv, nproc))

    def run(on_step):
        return api.fit(spec, steps, variant, set_ or (), batch, lr, seed, batch_file, out, json_file, device.value,
                       fsdp, resample, on_step=on_step, weights=weights, resume=resume)

    if console.is_terminal and not console.quiet:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("fit"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                   TimeElapsedColumn())
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("fit", total=steps, loss="-")
            history = run(lambda k, v: bar.update(task, advance=1, loss=f"{v['total']:.4f}"))
    else:
        every = max(1, steps // 10)

        def line(k: int, values: dict) -> None:
            if (k + 1) % every == 0 or k == 0:
                console.print(f"step {k + 1}/{steps}: loss {values['total']:.4f}")

        history = run(line)
    first, last = history["losses"][0], history["losses"][-1]
    ratio = f" (x{last / first:.3f})" if first else ""
    console.print(f"{printable(str(spec))}: {steps} steps, loss {first:.4f} -> {last:.4f}{ratio}", markup=False)
    if out is not None:
        console.print(f"wrote checkpoint to {printable(str(out))}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("fit")(fit)
