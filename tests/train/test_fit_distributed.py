"""torch.distributed: 2 processes (gloo, CPU) give the losses of 1 process on the same global batch, and
contrastive objectives see the negatives of every process."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmspec.blocks import distributed as mdist
from mmspec.cli import run
from mmspec.components.objectives.contrastive.loss import NTXent
from mmspec.components.objectives.supervised.loss import SymmetricInfoNCE

ROOT = Path(__file__).resolve().parents[2]
NO_DROPOUT = ["--set", "encoders.bert.dropout=0", "--set", "encoders.bert.attention_dropout=0"]


def test_two_processes_match_one_on_bert_tiny(tmp_path):
    """Dropout off: its random masks are per process. Everything else is split exactly (global token counts)."""
    runs = {}
    for k in (1, 2):
        out = tmp_path / f"{k}.json"
        args = [
            "fit",
            str(ROOT / "specs" / "bert.yaml"),
            "-v",
            "tiny",
            "--steps",
            "10",
            "--batch",
            "8",
            "--json",
            str(out),
            "--out",
            str(tmp_path / str(k)),
            "-q",
            *NO_DROPOUT,
        ]
        assert run([*args, "--nproc", str(k)] if k > 1 else args) == 0
        runs[k] = json.loads(out.read_text())
    from safetensors import safe_open

    with safe_open(str(tmp_path / "2" / "bert-tiny.safetensors"), "pt") as f:
        assert f.metadata()["processes"] == "2"
    one, two = runs[1], runs[2]
    assert max(abs(a - b) for a, b in zip(one["losses"], two["losses"], strict=True)) < 1e-5
    for name in one["objectives"]:
        diffs = [abs(a - b) for a, b in zip(one["objectives"][name], two["objectives"][name], strict=True)]
        assert max(diffs) < 1e-5, name
    assert one["losses"][-1] < one["losses"][0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _embeddings(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(rows, 5, generator=g), torch.randn(rows, 5, generator=g)
    return a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)


def _losses(a: torch.Tensor, b: torch.Tensor) -> dict:
    """InfoNCE and NT-Xent on rows a, b (and a as 2 views per example), with gradients."""
    a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    scale = torch.nn.Parameter(torch.tensor(0.7))
    clip = SymmetricInfoNCE("a", "b", scale, None)
    info = clip({"input": {"a_embeds": a, "b_embeds": b}}, {})
    views = NTXent(0.5, names=[], image=False, flip=False, crop=1.0, brightness=0.0, noise=0.0)
    simclr = views({"input": {"z": a}}, {})
    (info + simclr).backward()
    return {
        "infonce": info.item(),
        "nt_xent": simclr.item(),
        "negatives": (clip.negatives, views.negatives),
        "grad_a": a.grad,
        "grad_b": b.grad,
        "grad_scale": scale.grad,
    }


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        a, b = _embeddings(4 * world)
        rows = slice(4 * rank, 4 * (rank + 1))
        torch.save(_losses(a[rows], b[rows]), f"{out}/{rank}.pt")
    finally:
        mdist.set_group(None)
        dist.destroy_process_group()


def test_contrastive_objectives_gather_negatives_across_processes(tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    ranks = [torch.load(tmp_path / f"{r}.pt") for r in range(world)]
    a, b = _embeddings(4 * world)
    whole = _losses(a, b)  # one process, the whole global batch
    assert whole["negatives"] == (7, 6)
    assert all(r["negatives"] == (7, 6) for r in ranks)  # 2 x 4 rows: twice the 3 negatives of a 4-row batch
    for key in ("infonce", "nt_xent"):  # the mean over processes is the loss of the whole batch
        assert sum(r[key] for r in ranks) / world == pytest.approx(whole[key], abs=1e-6)
    for key in ("grad_a", "grad_b"):  # DDP averages: each process holds world x its rows' share
        got = torch.cat([r[key] for r in ranks]) / world
        torch.testing.assert_close(got, whole[key], atol=1e-6, rtol=1e-5)
    mean_scale = sum(r["grad_scale"] for r in ranks) / world
    torch.testing.assert_close(mean_scale, whole["grad_scale"], atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_two_processes_match_one_on_clip_tiny_and_fsdp(tmp_path):
    runs = {}
    for name, extra in (("one", []), ("ddp", ["--nproc", "2"]), ("fsdp", ["--nproc", "2", "--fsdp"])):
        out = tmp_path / f"{name}.json"
        assert (
            run(
                [
                    "fit",
                    str(ROOT / "specs" / "clip.yaml"),
                    "-v",
                    "tiny",
                    "--steps",
                    "10",
                    "--json",
                    str(out),
                    "-q",
                    *extra,
                ]
            )
            == 0
        )
        runs[name] = json.loads(out.read_text())["losses"]
    for name in ("ddp", "fsdp"):
        assert max(abs(a - b) for a, b in zip(runs["one"], runs[name], strict=True)) < 1e-5, name
