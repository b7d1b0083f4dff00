"""`mmspec generate`: the command line gives exactly what calling `mmspec.runtime` with the same arguments gives
(token for token, sample for sample), writes a valid PNG, stays torch-free on a build, and rejects bad arguments
with one line and exit 2."""

from __future__ import annotations

import fcntl
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from mmspec import api, cli
from mmspec.cli.generate import _token_feeds, grid, png_bytes
from mmspec.runtime import Denoiser, OnnxGraph, alphas_cumprod, beam_search, betas, ddim_sample, ddpm_sample, greedy
from mmspec.runtime import sample as sample_tokens
from mmspec.runtime.decoding import Pipeline
from mmspec.runtime.images import generate_image

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "tests" / "generation" / "specs"
PROMPTS = [[1, 2, 3], [7, 0, 5]]


@pytest.fixture(scope="session")
def builds(tmp_path_factory, worker_id) -> dict[str, Path]:
    """{spec stem: build directory}, compiled once per run and shared by the xdist workers under a lock
    (exporting dominates this module's time; verification is other tests' business)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if worker_id != "master" else base) / "cli_generate_builds"
    root.mkdir(exist_ok=True)
    out = {stem: root / stem for stem in ("tiny_gpt", "tiny_seq2seq", "tiny_diffusion", "tiny_dalle")}
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stem, build in out.items():
            if not any(build.glob("*.onnx")):  # compile publishes all files or none
                api.compile(SPECS / f"{stem}.yaml", build, verify_export=False)
    return out


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("MMSPEC_DEBUG", raising=False)


def generate(capsys, *args: str | Path) -> tuple[int, str, str]:
    """Run `mmspec generate ARGS` in-process; (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        cli.main(["generate", *map(str, args)])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def prompt_args(prompts: list[list[int]]) -> list[str]:
    return [a for p in prompts for a in ("--prompt", " ".join(map(str, p)))]


# --- token decoding ------------------------------------------------------------------------------------------------

STRATEGIES = {
    "greedy": ([], lambda d, p: greedy(d, p, 8)),
    "greedy-eos": (["--eos-id", "3", "--pad-id", "0"], lambda d, p: greedy(d, p, 8, eos_id=3, pad_id=0)),
    "beam": (["--strategy", "beam", "--beams", "3", "--length-penalty", "0.5", "--eos-id", "3"],
             lambda d, p: beam_search(d, p, 8, beams=3, length_penalty=0.5, eos_id=3)),
    "sample": (["--strategy", "sample", "--top-k", "7", "--top-p", "0.9", "--temperature", "1.5", "--seed", "11"],
               lambda d, p: sample_tokens(d, p, 8, top_k=7, top_p=0.9, temperature=1.5, seed=11)),
}


@pytest.mark.parametrize("case", STRATEGIES)
def test_decoding_equals_the_runtime(builds, capsys, case):
    flags, direct = STRATEGIES[case]
    code, out, err = generate(capsys, builds["tiny_gpt"], *prompt_args(PROMPTS), "--max-new-tokens", "8", *flags,
                              "--json")
    assert code == 0, err
    result = json.loads(out)
    expected = direct(Pipeline.open(builds["tiny_gpt"]).decoder(), np.array(PROMPTS)).tolist()
    assert result == {"tokens": expected, "strategy": case.split("-")[0], "graph": "decoder_step"}
    assert [row[:3] for row in expected] == PROMPTS
    if case == "greedy-eos":  # the first row ends early and is padded
        assert expected[0][-4:] == [3, 0, 0, 0]
    code, out, _ = generate(capsys, builds["tiny_gpt"], *prompt_args(PROMPTS), "--max-new-tokens", "8", *flags)
    assert code == 0
    assert out.splitlines() == [" ".join(map(str, row)) for row in expected]


def test_seq2seq_takes_the_source_and_fills_its_mask(builds, capsys):
    source = [[3, 4, 5, 6], [9, 8, 7, 1]]
    args = [builds["tiny_seq2seq"], "--prompt", "1", "--prompt", "2", "--max-new-tokens", "6", "--json"]
    inputs = [a for row in source for a in ("--input", "source=" + " ".join(map(str, row)))]
    code, out, err = generate(capsys, *args, *inputs)
    assert code == 0, err
    feeds = {"source": np.array(source), "source_mask": np.ones((2, 4), np.int64)}
    expected = greedy(Pipeline.open(builds["tiny_seq2seq"]).decoder(feeds), np.array([[1], [2]]), 6)
    assert json.loads(out)["tokens"] == expected.tolist()
    # all-zero and all-one masks attend alike, so check the filled mask itself
    manifest = json.loads(next(builds["tiny_seq2seq"].glob("*.manifest.json")).read_text())
    filled = _token_feeds(manifest, "decoder_step", ["source=3 4 5"], 1)
    assert filled["source_mask"].tolist() == [[1, 1, 1]] and filled["source_mask"].dtype == np.int64
    # one --input row serves every prompt; an explicit mask is used as given
    code, out, err = generate(capsys, builds["tiny_seq2seq"], "--prompt", "1", "--prompt", "2", "--json",
                              "--max-new-tokens", "6", "--input", "source=3 4 5 6", "--input", "source_mask=1 1 0 0")
    assert code == 0, err
    feeds = {"source": np.array([[3, 4, 5, 6]]), "source_mask": np.array([[1, 1, 0, 0]])}
    expected = greedy(Pipeline.open(builds["tiny_seq2seq"]).decoder(feeds), np.array([[1], [2]]), 6)
    assert json.loads(out)["tokens"] == expected.tolist()


def test_quiet_prints_only_the_tokens(builds, capsys):
    code, out, err = generate(capsys, builds["tiny_gpt"], "--prompt", "1 2", "--max-new-tokens", "3")
    assert code == 0 and len(out.split()) == 5
    assert "greedy on graph 'decoder_step', 1 row(s), 3 new token(s)" in err
    code, out2, err = generate(capsys, builds["tiny_gpt"], "--prompt", "1 2", "--max-new-tokens", "3", "-q")
    assert (code, out2, err) == (0, out, "")


# --- diffusion -----------------------------------------------------------------------------------------------------


def read_png(data: bytes) -> tuple[int, int, int, np.ndarray]:
    """(width, height, colour type, uint8 [H, W, C]) of an 8-bit unfiltered, non-interlaced PNG; checks the chunks."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + body)
        chunks.append((kind, body))
        pos += 12 + length
    assert [k for k, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, color, *_ = struct.unpack(">IIBBBBB", chunks[0][1])
    channels = {0: 1, 4: 2, 2: 3, 6: 4}[color]
    raw = zlib.decompress(chunks[1][1])
    assert depth == 8 and len(raw) == height * (1 + width * channels)
    rows = np.frombuffer(raw, np.uint8).reshape(height, 1 + width * channels)
    assert (rows[:, 0] == 0).all()  # filter type 0
    return width, height, color, rows[:, 1:].reshape(height, width, channels)


def test_ddim_with_guidance_writes_the_runtime_sample(builds, capsys, tmp_path):
    png, npy = tmp_path / "grid.png", tmp_path / "x.npy"
    code, _, err = generate(capsys, builds["tiny_diffusion"], "--sampler", "ddim", "--cond", "label=2", "--uncond",
                            "label=4", "--guidance", "3", "--steps", "10", "--eta", "0.5", "--seed", "5", "--batch",
                            "3", "--schedule", "cosine", "--png", png, "--npy", npy)
    assert code == 0, err
    graph = OnnxGraph(builds["tiny_diffusion"] / "tiny_diffusion.onnx")
    denoiser = Denoiser(graph, "x_t", "timestep", "eps", {"label": np.full(3, 2)}, {"label": np.full(3, 4)})
    noise = np.random.default_rng(5).standard_normal((3, 3, 8, 8), dtype=np.float32)
    expected = ddim_sample(denoiser, noise, schedule=alphas_cumprod(betas("cosine", 1000)), steps=10, eta=0.5,
                           seed=6, guidance_scale=3.0)
    x = np.load(npy)
    assert x.dtype == np.float32 and x.shape == (3, 3, 8, 8)
    np.testing.assert_array_equal(x, expected)
    width, height, color, image = read_png(png.read_bytes())
    assert (width, height, color) == (16, 16, 2)  # a 2x2 grid of 8x8 RGB, the 4th cell empty
    pixels = np.clip(np.round((x.astype(np.float64) + 1) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    for i, cell in enumerate([image[:8, :8], image[:8, 8:], image[8:, :8]]):
        np.testing.assert_array_equal(cell, pixels[i])
    assert (image[8:, 8:] == 0).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "x.npy"]


@pytest.mark.parametrize("flags", [[], ["--strategy", "sample", "--top-k", "5", "--seed", "3"]])
def test_image_tokens_equal_the_runtime(builds, capsys, tmp_path, flags):
    """A DALL-E-shaped build: codes sampled after the text prompt, decoded by the vq_decoder graph."""
    png, npy = tmp_path / "grid.png", tmp_path / "x.npy"
    code, out, err = generate(capsys, builds["tiny_dalle"], *prompt_args(PROMPTS), "--image-graph", "vq_decoder",
                              "--image-offset", "20", *flags, "--png", png, "--npy", npy, "--json")
    assert code == 0, err
    pipeline = Pipeline.open(builds["tiny_dalle"])
    kwargs = {"strategy": "sample", "top_k": 5, "seed": 3} if flags else {}
    expected = generate_image(pipeline.decoder({}, "prior_step"), pipeline.graphs["vq_decoder"], np.array(PROMPTS),
                              16, offset=20, entry=pipeline.manifest["graphs"]["vq_decoder"], **kwargs)
    assert json.loads(out)["codes"] == expected.codes.tolist()
    np.testing.assert_array_equal(np.load(npy), expected.pixels)
    width, height, _, _ = read_png(png.read_bytes())
    assert (width, height) == (16, 8)  # two 8x8 images side by side


def test_ddpm_equals_the_runtime(builds, capsys, tmp_path):
    npy = tmp_path / "x.npy"
    code, out, err = generate(capsys, builds["tiny_diffusion"], "--sampler", "ddpm", "--train-steps", "20",
                              "--timestep", "timestep", "--cond", "label=1", "--npy", npy, "--json")
    assert code == 0, err
    assert json.loads(out) == {"shape": [1, 3, 8, 8], "sampler": "ddpm", "graph": "tiny_diffusion", "png": None,
                               "npy": str(npy)}
    graph = OnnxGraph(builds["tiny_diffusion"] / "tiny_diffusion.onnx")
    denoiser = Denoiser(graph, "x_t", "timestep", "eps", {"label": np.ones(1, np.int64)})
    noise = np.random.default_rng(0).standard_normal((1, 3, 8, 8), dtype=np.float32)
    expected = ddpm_sample(denoiser, noise, schedule=alphas_cumprod(betas("linear", 20)), seed=1)
    np.testing.assert_array_equal(np.load(npy), expected)


def test_an_interrupted_sampler_leaves_no_file(builds, capsys, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("mmspec.runtime.ddim_sample", interrupted)
    code, _, _ = generate(capsys, builds["tiny_diffusion"], "--sampler", "ddim", "--cond", "label=1", "--png",
                          tmp_path / "a.png", "--npy", tmp_path / "a.npy")
    assert code == 130
    assert list(tmp_path.iterdir()) == []


def test_a_spec_target_is_compiled_first(capsys, tmp_path):
    out = tmp_path / "build"
    code, _, err = generate(capsys, SPECS / "tiny_diffusion.yaml", "-o", out, "--set", "encoders.cnn.stem=4",
                            "--sampler", "ddim", "--steps", "2", "--cond", "label=0", "--npy", tmp_path / "x.npy")
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {"tiny_diffusion.onnx", "tiny_diffusion.report.json"}
    assert json.loads((out / "tiny_diffusion.report.json").read_text())["params"]["by_component"]["cnn"] < 2376
    assert np.load(tmp_path / "x.npy").shape == (1, 3, 8, 8)


def test_a_build_runs_without_torch(builds, tmp_path):
    script = ("import sys; from mmspec import cli; "
              "codes = [cli.run(a) for a in (sys.argv[1:4], sys.argv[4:])]; "
              "print(codes, sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    argv = ["generate", str(builds["tiny_gpt"]), "--prompt=1 2", "generate", str(builds["tiny_diffusion"]),
            "--sampler=ddim", "--steps=2", "--cond=label=1", f"--npy={tmp_path / 'x.npy'}", "-q"]
    env = {k: v for k, v in os.environ.items() if k != "MMSPEC_DEBUG"}
    proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[0, 0] []"
    assert np.load(tmp_path / "x.npy").shape == (1, 3, 8, 8)


def test_the_png_writer_handles_every_channel_count():
    for channels, color in ((1, 0), (2, 4), (3, 2), (4, 6)):
        x = np.linspace(-1.2, 1.2, 5 * channels * 2 * 3, dtype=np.float32).reshape(5, channels, 2, 3)
        image = grid(x)
        assert image.shape == (2 * 2, 3 * 3, channels)  # 5 samples: 3 columns, 2 rows
        assert image.min() == 0 and image.max() == 255
        width, height, got, decoded = read_png(png_bytes(image))
        assert (width, height, got) == (9, 4, color)
        np.testing.assert_array_equal(decoded, image)


# --- errors --------------------------------------------------------------------------------------------------------

ERRORS = [
    ("tiny_gpt", [], "give the prompt's token ids with --prompt"),
    ("tiny_gpt", ["--prompt", "1 40"], "--prompt #1: token id 40 is outside the vocabulary 0..39"),
    ("tiny_gpt", ["--prompt", "1 -2"], "--prompt #1: token id -2 is outside the vocabulary"),
    ("tiny_gpt", ["--prompt", "1 2", "--prompt", "3"], "the prompts have different lengths [2, 1]"),
    ("tiny_gpt", ["--prompt", "1 two"], "--prompt #1: 'two' is not a token id"),
    ("tiny_gpt", ["--prompt", "1", "--input", "source=1"], "--input #1: graph 'decoder_step' does not take 'source'"),
    ("tiny_gpt", ["--prompt", "1", "--beams", "2"], "--beams cannot be used here: --strategy is greedy"),
    ("tiny_gpt", ["--prompt", "1", "--sampler", "ddim"], "--sampler cannot be used here: graph 'decoder_step' "
                                                         "decodes tokens"),
    ("tiny_gpt", ["--prompt", "1", "--eos-id", "40"], "--eos-id 40 is outside the vocabulary 0..39"),
    ("tiny_gpt", ["--prompt", " ".join(["1"] * 17)], "the prompt has 17 tokens; graph 'decoder_step' has 16 positions"),
    ("tiny_gpt", ["--prompt", "1 2", "--max-new-tokens", "16"], "graph 'decoder_step' has 16 (use --max-new-tokens "
                                                                "15 or less)"),
    ("tiny_gpt", ["--prompt", "1", "--strategy", "sample", "--top-p", "0"], "--top-p must be in (0, 1]"),
    ("tiny_gpt", ["--prompt", "1", "--graph", "encoder"], "no graph 'encoder'"),
    ("tiny_gpt", ["--prompt", "1", "--variant", "tiny"], "--variant: only for a spec TARGET"),
    ("tiny_gpt", ["--prompt", "1", "--png", "x.png"], "--png cannot be used here: graph 'decoder_step' decodes "
                                                      "tokens"),
    ("tiny_gpt", ["--prompt", "1", "--image-offset", "3"], "--image-offset cannot be used here: there is no "
                                                           "--image-graph"),
    ("tiny_dalle", ["--prompt", "1", "--image-graph", "vq_decoder", "--strategy", "beam", "--png", "x.png"],
     "not beam"),
    ("tiny_dalle", ["--prompt", "1", "--image-graph", "prior_step", "--png", "x.png"], "--image-graph 'prior_step': "
                                                                                       "not a graph"),
    ("tiny_dalle", ["--prompt", "1", "--image-graph", "vq_decoder"], "give --png FILE and/or --npy FILE"),
    ("tiny_dalle", ["--prompt", "1", "--image-graph", "vq_decoder", "--image-offset", "40", "--png", "x.png"],
     "--image-graph 'vq_decoder':"),
    ("tiny_seq2seq", ["--prompt", "1"], "graph 'decoder_step' needs source, source_mask: give --input source="),
    ("tiny_seq2seq", ["--prompt", "1", "--input", "source"], "--input #1: expected NAME=VALUES"),
    ("tiny_seq2seq", ["--prompt", "1", "--input", "source=1 99"], "ONNX Runtime failed"),
    ("tiny_diffusion", ["--npy", "x.npy"], "graph 'tiny_diffusion' is a denoiser (no step graph with a cache); "
                                           "choose --sampler ddim or --sampler ddpm"),
    ("tiny_diffusion", ["--sampler", "ddim", "--npy", "x.npy"], "cannot tell the timestep input"),
    ("tiny_diffusion", ["--sampler", "ddim", "--cond", "label=1"], "give --png FILE and/or --npy FILE"),
    ("tiny_diffusion", ["--sampler", "ddim", "--cond", "colour=1", "--npy", "x.npy"], "the graph has no input "
                                                                                     "'colour'"),
    ("tiny_diffusion", ["--sampler", "ddim", "--cond", "label=1", "--guidance", "2", "--npy", "x.npy"],
     "--guidance needs --uncond"),
    ("tiny_diffusion", ["--sampler", "ddpm", "--cond", "label=1", "--steps", "5", "--npy", "x.npy"],
     "--steps cannot be used here"),
    ("tiny_diffusion", ["--sampler", "ddim", "--cond", "label=1", "--steps", "2000", "--npy", "x.npy"],
     "--steps 2000 exceeds --train-steps 1000"),
    ("tiny_diffusion", ["--sampler", "ddim", "--prompt", "1"], "--prompt cannot be used here"),
    ("tiny_diffusion", ["--sampler", "ddim", "--cond", "label=1", "--png", "no/such/dir/a.png"],
     "--png no/such/dir/a.png: no directory no/such/dir"),
]


@pytest.mark.parametrize(("stem", "args", "message"), ERRORS, ids=[f"{s}-{m[:40]}" for s, _, m in ERRORS])
def test_usage_errors_exit_2_with_one_line(builds, capsys, tmp_path, monkeypatch, stem, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = generate(capsys, builds[stem], *args)
    assert (code, out) == (2, ""), err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("target", "message"), [
    ("missing", "missing: no such file or directory"),
    ("empty", "empty: no *.manifest.json or *.onnx in this directory"),
    ("notes.txt", "notes.txt: not a build directory"),
    (str(SPECS / "tiny_gpt.yaml") + " --variant nope", "nope"),
])
def test_bad_targets_exit_2(capsys, tmp_path, monkeypatch, target, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("")
    code, _, err = generate(capsys, *target.split(), "--prompt", "1")
    assert code == 2 and message in err and "Traceback" not in err, err
