"""`mmspec graph`: pictures that hold every component, arrow, shape and count of the spec, keep training-only
parts apart, lay boxes out without overlaps, and render in a real headless browser with every name visible."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from mmspec.api import build, load_spec, param_counts, picture
from mmspec.cli import run
from mmspec.graph.picture import FILL, layout, mermaid, svg

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
PICTURED = [("vilbert.yaml", None), ("clip.yaml", "towers"), ("t5.yaml", None), ("multisurv.yaml", None),
            ("latent_prediction.yaml", None)]


def _picture(spec: str, variant: str | None, lowered: bool = False):
    return picture(SPECS / spec, variant, lowered=lowered)


def test_spec_picture_has_every_node_reference_output_and_count():
    loaded = load_spec(SPECS / "vilbert.yaml")
    pic = _picture("vilbert.yaml", None)
    counts = param_counts(build(loaded, device="meta"))["by_component"]
    names = {b.name: b for b in pic.boxes}
    modalities = {g.modality for g in loaded.plan.graph_inputs}
    assert set(names) == modalities | {n.name for n in loaded.plan.nodes} | {
        f"output {o}" for o, _, _ in loaded.plan.outputs}
    assert len(pic.arrows) == sum(len(n.inputs) for n in loaded.plan.nodes) + len(loaded.plan.outputs)
    for n in loaded.plan.nodes:
        assert names[n.name].kind == n.section
        assert names[n.name].apart == (n.section == "objectives"), n.name  # only the losses are training-only here
        shown = names[n.name].lines[0]
        assert shown.startswith(f"{n.config.type} · ")
        figure = re.search(r"· ([\d.]+)([KMB]?) params", shown)
        scale = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9}[figure.group(2)]
        assert float(figure.group(1)) * scale == pytest.approx(counts[n.name], rel=5e-3), n.name
    coattn = loaded.plan.bundles["coattn"]["text"]
    assert ("coattn", "mlm", f"text [{', '.join(map(str, coattn.shape))}]") in pic.arrows


@pytest.mark.parametrize(("spec", "variant"), PICTURED)
def test_layout_has_no_overlaps_and_keeps_training_parts_in_their_frame(spec, variant):
    pic = _picture(spec, variant)
    placed, frame, width, height = layout(pic)
    boxes = list(placed.values())
    for i, p in enumerate(boxes):
        assert 0 <= p.x and p.x + p.w <= width and 0 <= p.y and p.y + p.h <= height, p.box.name
        for q in boxes[i + 1:]:
            apart = p.x + p.w <= q.x or q.x + q.w <= p.x or p.y + p.h <= q.y or q.y + q.h <= p.y
            assert apart, f"{p.box.name} overlaps {q.box.name}"
        if frame is not None:
            x, y, w, h = frame
            inside = x <= p.x and p.x + p.w <= x + w and y <= p.y and p.y + p.h <= y + h
            assert inside == p.box.apart, p.box.name
    assert (frame is None) == (not any(b.apart for b in pic.boxes))


def test_mermaid_defines_every_node_once_and_links_only_defined_ones():
    pic = _picture("vilbert.yaml", None)
    text = mermaid(pic)
    defined = re.findall(r"^\s+(n\d+)\[", text, re.M)
    links = re.findall(r"^\s+(n\d+) -->(?:\|\"[^\"]*\"\|)? (n\d+)$", text, re.M)
    assert len(defined) == len(set(defined)) == len(pic.boxes)
    assert len(links) == len(pic.arrows) and {a for link in links for a in link} <= set(defined)
    assert 'subgraph training_only["training only (not exported)"]' in text


def test_lowered_picture_groups_the_fx_graph_by_component():
    loaded = load_spec(SPECS / "clip.yaml", "tiny")
    pic = _picture("clip.yaml", "tiny", lowered=True)
    names = {b.name for b in pic.boxes}
    assert {n.name for n in loaded.plan.export_nodes} <= names
    assert {f"input {g.name}" for g in loaded.plan.graph_inputs} <= names
    assert ("vision", "image_proj", "") in pic.arrows and ("text_tower", "text_proj", "") in pic.arrows
    vision = next(b for b in pic.boxes if b.name == "vision")
    layers = load_spec(SPECS / "clip.yaml", "tiny").spec.encoders["vision"].layers
    assert f"Linear x{4 * layers + 2 * layers}" in vision.lines  # q, k, v, out and two FFN maps per layer


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.skip("no headless Chromium on this machine: install the system package `chromium` (.ci/run does)")


def _browser(chromium: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(tmp)}  # the browser's profile and caches stay in the test's directory
    return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={tmp / 'profile'}", *args], capture_output=True, text=True, timeout=120,
                          env=env)


@pytest.mark.parametrize(("spec", "variant", "lowered"), [("vilbert.yaml", None, False), ("clip.yaml", "tiny", True)])
def test_html_renders_in_a_headless_browser_with_every_name_visible(chromium, tmp_path, spec, variant, lowered):
    page = tmp_path / "picture.html"
    argv = ["graph", str(SPECS / spec), "-o", str(page), "-q", *(["--variant", variant] if variant else []),
            *(["--lowered"] if lowered else [])]
    assert run(argv) == 0
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text), "the page must not load anything"
    boxes = len(re.findall(r'<g class="node ', text))
    dom = _browser(chromium, tmp_path, "--dump-dom", page.as_uri())
    assert f'data-rendered="ok {boxes}"' in dom.stdout, re.findall(r'data-rendered="[^"]*"', dom.stdout) or dom.stderr
    shot = tmp_path / "shot.png"
    _browser(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1600,1200", page.as_uri())
    image = Image.open(shot).convert("RGB")
    colors = image.getcolors(maxcolors=1 << 20)
    inked = sum(n for n, c in colors if c != (255, 255, 255)) / (image.width * image.height)
    assert len(colors) > 50 and inked > 0.02, "the screenshot is blank"
    fills = {tuple(int(FILL[k][i:i + 2], 16) for i in (1, 3, 5)) for k in ("encoders", "heads")}
    assert fills <= {c for _, c in colors}, "the component boxes were not painted"


def test_svg_escapes_what_it_echoes():
    pic = _picture("vilbert.yaml", None)
    pic.boxes[0].lines.append('<script>alert("x")</script> & more')
    drawn = svg(pic)
    assert "<script>" not in drawn and "&lt;script&gt;" in drawn and "&amp; more" in drawn


@pytest.mark.parametrize(("out", "why"), [("picture.png", "suffix must be one of"), ("dir.svg", "is a directory")])
def test_bad_outputs_are_usage_errors_and_write_nothing(tmp_path, capsys, out, why):
    (tmp_path / "dir.svg").mkdir()
    before = sorted(tmp_path.iterdir())
    assert run(["graph", str(SPECS / "bow.yaml"), "-o", str(tmp_path / out)]) == 2
    assert why in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == before
