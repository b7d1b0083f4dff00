"""Pictures of a spec: its component DAG (modalities -> encoders -> fusion -> heads -> objectives, with tensor
shapes and parameter counts) or its captured FX graph grouped by component, as Mermaid, SVG or self-contained
HTML (`mmspec graph`).

`spec_picture` and `lowered_picture` describe what to draw (`Picture`: boxes and arrows); `layout` places it
in layers, top to bottom, with the training-only parts (objectives, `training_only` components) in a frame of
their own to the right; `mermaid`, `svg` and `html` write it. Nothing here needs a browser or a layout engine.
"""

from __future__ import annotations

import html as html_lib
import re
from collections import Counter
from dataclasses import dataclass, field

KINDS = ("modality", "input", "encoders", "fusion", "heads", "objectives", "component", "output")
FILL = {"modality": "#e8f0fe", "encoders": "#e6f4ea", "fusion": "#fef7e0", "heads": "#fce8e6",
        "objectives": "#f3e8fd", "output": "#eeeeee", "input": "#e8f0fe", "component": "#e6f4ea"}


@dataclass
class Box:
    """One box: `name` is shown in bold, `lines` under it; `apart` boxes are drawn in the training-only frame."""

    name: str
    kind: str
    lines: list[str] = field(default_factory=list)
    apart: bool = False


@dataclass
class Picture:
    title: str
    boxes: list[Box]
    arrows: list[tuple[str, str, str]]
    """(from box, to box, label)."""


def _shape(info) -> str:
    return "[" + ", ".join(str(d) for d in info.shape) + "]"


def _count(n: int) -> str:
    for unit, size in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:.3g}{unit} params"
    return f"{n} params"


def spec_picture(loaded, counts: dict[str, int]) -> Picture:
    """The component DAG of a loaded spec; `counts` are parameters by component (`param_counts` of a build)."""
    plan = loaded.plan
    boxes = [Box(m, "modality", [_shape(g.info) if g.name == m else f"{g.name} {_shape(g.info)}"
                                 for g in plan.graph_inputs if g.modality == m])
             for m in dict.fromkeys(g.modality for g in plan.graph_inputs)]
    exported = {n.name for n in plan.export_nodes}
    arrows = []
    for n in plan.nodes:
        outs = [f"{f} {_shape(t)}" for f, t in plan.bundles.get(n.name, {}).items()][:4]
        apart = n.section == "objectives" or n.config.training_only or n.name not in exported
        boxes.append(Box(n.name, n.section, [f"{n.config.type} · {_count(counts.get(n.name, 0))}", *outs], apart))
        for port, (src, fld) in n.inputs.items():
            bundle = plan.bundles.get(src, {})
            shown = fld or (next(iter(bundle)) if len(bundle) == 1 else None)
            label = f"{fld or ''} {_shape(bundle[shown])}".strip() if shown in bundle else (fld or "")
            arrows.append((src, n.name, label if port in ("input", "inputs") or port.isdigit()
                           else f"{port}: {label}".rstrip(": ")))
    for name, node, fld in plan.outputs:
        boxes.append(Box(f"output {name}", "output", [_shape(plan.bundles[node][fld])]))
        arrows.append((node, f"output {name}", fld))
    variant = f" (variant {loaded.variant})" if loaded.variant else ""
    return Picture(f"{loaded.spec.name}{variant}", boxes, arrows)


_COMPONENT = re.compile(r"components\.([^.]+)")


def _owner(node, owners: dict) -> str | None:
    for path in [*(node.meta.get("nn_module_stack") or {}).values(), str(node.target)]:
        text = path[0] if isinstance(path, tuple) else str(path)
        m = _COMPONENT.search(text) or _COMPONENT.search(text.replace("components_", "components.", 1))
        if m:
            return m.group(1)
    parents = [owners.get(a.name) for a in node.all_input_nodes if owners.get(a.name)]
    return parents[0] if parents else None


def _op_name(node, gm) -> str:
    """What an FX node does, as a box line counts it: a module's class, "parameter", or the function's name."""
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)).__name__
    if node.op == "get_attr":
        return "parameter"
    return getattr(node.target, "__name__", str(node.target))


def lowered_picture(loaded, gm) -> Picture:
    """The captured FX graph `gm` grouped by component: one box per component listing the operations inside it
    (`linear x12`), one per graph input and output, and an arrow wherever tensors flow from one group to another
    (labelled with how many)."""
    owners: dict[str, str] = {}
    ops: dict[str, Counter] = {}
    flows: Counter = Counter()
    boxes: dict[str, Box] = {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            owners[node.name] = f"input {node.name}"
            boxes[owners[node.name]] = Box(owners[node.name], "input")
            continue
        if node.op == "output":
            for i, arg in enumerate(node.all_input_nodes):
                name = f"output {loaded.plan.outputs[i][0] if i < len(loaded.plan.outputs) else i}"
                boxes[name] = Box(name, "output")
                flows[owners.get(arg.name, "model"), name] += 1
            continue
        owner = _owner(node, owners) or "model"
        owners[node.name] = owner
        kind = _op_name(node, gm)
        if kind not in ("getattr", "getitem"):
            ops.setdefault(owner, Counter())[kind] += 1
        for arg in node.all_input_nodes:
            src = owners.get(arg.name)
            if src is not None and src != owner:
                flows[src, owner] += 1
    sections = {n.name: n.section for n in loaded.plan.nodes}
    for owner, counted in ops.items():
        lines = [f"{op} x{k}" if k > 1 else op for op, k in counted.most_common(6)]
        lines += [f"... {len(counted) - 6} more kinds"] if len(counted) > 6 else []
        boxes.setdefault(owner, Box(owner, sections.get(owner, "component"), lines))
    for src, dst in flows:
        for name in (src, dst):
            boxes.setdefault(name, Box(name, sections.get(name, "component")))
    arrows = [(src, dst, f"{k} tensors" if k > 1 else "") for (src, dst), k in flows.items()]
    variant = f" (variant {loaded.variant})" if loaded.variant else ""
    return Picture(f"{loaded.spec.name}{variant}: FX graph by component", list(boxes.values()), arrows)


# -- layout -------------------------------------------------------------------------------------------------------

BOLD_W, CHAR_W, LINE_H, PAD, GAP_X, GAP_Y, FRAME = 8.2, 7.2, 16, 10, 28, 56, 24


@dataclass
class Placed:
    box: Box
    x: float
    y: float
    w: float
    h: float


def layout(picture: Picture) -> tuple[dict[str, Placed], tuple[float, float, float, float] | None, float, float]:
    """Positions of every box (layered by longest path from a source, ordered by barycenters to cut crossings);
    the training-only frame (x, y, w, h) or None; and the canvas width and height."""
    boxes = {b.name: b for b in picture.boxes}
    preds: dict[str, list[str]] = {n: [] for n in boxes}
    succs: dict[str, list[str]] = {n: [] for n in boxes}
    for a, b, _ in picture.arrows:
        if a in boxes and b in boxes and a != b:
            preds[b].append(a)
            succs[a].append(b)
    layer: dict[str, int] = {}
    for name in boxes:  # boxes come in evaluation order, so predecessors are mostly placed first
        layer[name] = 1 + max((layer.get(p, 0) for p in preds[name]), default=-1)
    for _ in range(len(boxes)):  # settle any box listed before one of its predecessors
        changed = False
        for name in boxes:
            want = 1 + max((layer[p] for p in preds[name]), default=-1)
            if want > layer[name]:
                layer[name], changed = want, True
        if not changed:
            break
    rows: dict[tuple[bool, int], list[str]] = {}
    for name, b in boxes.items():
        rows.setdefault((b.apart, layer[name]), []).append(name)
    order = {n: i for row in rows.values() for i, n in enumerate(row)}
    for sweep in range(6):
        for key in sorted(rows, key=lambda k: k[1], reverse=sweep % 2 == 1):
            near = preds if sweep % 2 == 0 else succs
            rows[key].sort(key=lambda n: (sum(order[m] for m in near[n]) / len(near[n])) if near[n] else order[n])
            order.update({n: i for i, n in enumerate(rows[key])})
    size = {n: (max([len(n) * BOLD_W, *(len(t) * CHAR_W for t in b.lines)]) + 2 * PAD,
                (1 + len(b.lines)) * LINE_H + 2 * PAD) for n, b in boxes.items()}
    depth = max(layer.values(), default=0) + 1
    heights = [max((size[n][1] for (apart, i), row in rows.items() if i == r for n in row), default=0)
               for r in range(depth)]
    tops = [FRAME + sum(heights[:r]) + GAP_Y * r for r in range(depth)]

    def width(apart: bool, r: int) -> float:
        row = rows.get((apart, r), [])
        return sum(size[n][0] for n in row) + GAP_X * max(len(row) - 1, 0)

    placed: dict[str, Placed] = {}
    main_w = max((width(False, r) for r in range(depth)), default=0)
    apart_w = max((width(True, r) for r in range(depth)), default=0)
    for apart, left, span in ((False, FRAME, main_w), (True, FRAME * 3 + main_w, apart_w)):
        for r in range(depth):
            x = left + (span - width(apart, r)) / 2
            for n in rows.get((apart, r), []):
                w, h = size[n]
                placed[n] = Placed(boxes[n], x, tops[r] + (heights[r] - h) / 2, w, h)
                x += w + GAP_X
    total_h = (tops[-1] + heights[-1] if depth else 0) + FRAME
    frame = None
    if apart_w:
        ys = [p.y for p in placed.values() if p.box.apart] + [p.y + p.h for p in placed.values() if p.box.apart]
        frame = (FRAME * 2 + main_w, min(ys) - FRAME, apart_w + FRAME * 2, max(ys) - min(ys) + FRAME * 2)
    canvas_w = FRAME * 2 + main_w + ((apart_w + FRAME * 3) if apart_w else 0)
    return placed, frame, canvas_w, total_h + LINE_H


def _ports(arrows: list, placed: dict[str, Placed]) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Where each arrow leaves its source (bottom edge) and enters its target (top edge): the arrows of one box
    spread evenly along the edge, in the order of the boxes at their other ends, so they neither start nor end
    in one point."""
    outs: dict[str, list[int]] = {}
    ins: dict[str, list[int]] = {}
    for i, (a, b, _) in enumerate(arrows):
        outs.setdefault(a, []).append(i)
        ins.setdefault(b, []).append(i)
    start: dict[int, tuple[float, float]] = {}
    end: dict[int, tuple[float, float]] = {}
    for name, idx in outs.items():
        p = placed[name]
        for k, i in enumerate(sorted(idx, key=lambda i: placed[arrows[i][1]].x)):
            start[i] = (p.x + p.w * (k + 1) / (len(idx) + 1), p.y + p.h)
    for name, idx in ins.items():
        q = placed[name]
        for k, i in enumerate(sorted(idx, key=lambda i: placed[arrows[i][0]].x)):
            end[i] = (q.x + q.w * (k + 1) / (len(idx) + 1), q.y)
    return [(start[i], end[i]) for i in range(len(arrows))]


# -- writers ------------------------------------------------------------------------------------------------------

def _esc(text: str) -> str:
    return html_lib.escape(text, quote=True)


def svg(picture: Picture) -> str:
    """A standalone SVG document (fonts and styles inline)."""
    placed, frame, w, h = layout(picture)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" viewBox="0 0 {w:.0f} {h:.0f}" '
           f'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
           f"<title>{_esc(picture.title)}</title>",
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#5f6368"/></marker></defs>',
           f'<rect width="{w:.0f}" height="{h:.0f}" fill="#ffffff"/>']
    if frame:
        x, y, fw, fh = frame
        out.append(f'<g class="training-only"><rect x="{x:.1f}" y="{y:.1f}" width="{fw:.1f}" height="{fh:.1f}" '
                   'rx="8" fill="#fafafa" stroke="#9aa0a6" stroke-dasharray="6 4"/>'
                   f'<text x="{x + 8:.1f}" y="{y + 15:.1f}" fill="#5f6368" font-style="italic">training only '
                   '(not exported)</text></g>')
    drawn = [(a, b, label) for a, b, label in picture.arrows if a in placed and b in placed]
    ports = _ports(drawn, placed)
    for i, (a, b, label) in enumerate(drawn):
        q = placed[b]
        (x1, y1), (x2, y2) = ports[i]
        mid = (y1 + y2) / 2
        dash = ' stroke-dasharray="4 3"' if q.box.apart else ""
        out.append(f'<g class="edge" data-from="{_esc(a)}" data-to="{_esc(b)}"><path d="M {x1:.1f} {y1:.1f} C '
                   f'{x1:.1f} {mid:.1f}, {x2:.1f} {mid:.1f}, {x2:.1f} {y2 - 1:.1f}" fill="none" stroke="#5f6368"'
                   f'{dash} marker-end="url(#arrow)"/>')
        if label:
            lx, ly = (x1 + x2) / 2, mid + 4
            out.append(f'<rect x="{lx - len(label) * 3.1:.1f}" y="{ly - 10:.1f}" width="{len(label) * 6.2:.1f}" '
                       f'height="13" fill="#ffffff" opacity="0.85"/><text x="{lx:.1f}" y="{ly:.1f}" '
                       f'text-anchor="middle" font-size="10" fill="#3c4043">{_esc(label)}</text>')
        out.append("</g>")
    for name, p in placed.items():
        b = p.box
        style = ' stroke-dasharray="5 3"' if b.apart else ""
        bold = ' stroke-width="2"' if b.kind == "output" else ""
        out.append(f'<g class="node {b.kind}" data-name="{_esc(name)}"><rect x="{p.x:.1f}" y="{p.y:.1f}" '
                   f'width="{p.w:.1f}" height="{p.h:.1f}" rx="6" fill="{FILL.get(b.kind, "#ffffff")}" '
                   f'stroke="#3c4043"{style}{bold}/>')
        out.append(f'<text class="label" x="{p.x + PAD:.1f}" y="{p.y + PAD + 12:.1f}" font-weight="bold">'
                   f"{_esc(name)}</text>")
        for i, line in enumerate(b.lines):
            out.append(f'<text x="{p.x + PAD:.1f}" y="{p.y + PAD + 12 + LINE_H * (i + 1):.1f}" fill="#3c4043">'
                       f"{_esc(line)}</text>")
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


_CHECK = """<script>
// Set data-rendered on <body> once every box's name is laid out inside the picture (tests read it back).
window.addEventListener("load", () => {
  const svg = document.querySelector("svg"), box = svg.getBoundingClientRect();
  const nodes = [...svg.querySelectorAll("g.node")];
  const bad = nodes.filter(g => { const r = g.querySelector("text.label").getBoundingClientRect();
    return r.width <= 0 || r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 ||
           r.bottom > box.bottom + 1; });
  document.body.dataset.rendered = bad.length ? "missing: " + bad.map(g => g.dataset.name).join(", ")
                                              : "ok " + nodes.length;
});
</script>"""


def html(picture: Picture) -> str:
    """A self-contained HTML page: the SVG inline, a legend, no external resources (opens offline)."""
    legend = " ".join(f'<span class="key" style="background:{FILL[k]}">{k}</span>'
                      for k in KINDS if any(b.kind == k for b in picture.boxes))
    return (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{_esc(picture.title)}</title>\n'
            "<style>body{font-family:'DejaVu Sans',Arial,sans-serif;margin:16px;color:#202124}"
            ".key{display:inline-block;padding:2px 8px;margin-right:6px;border:1px solid #3c4043;border-radius:4px;"
            "font-size:12px}</style>\n</head>\n<body>\n"
            f"<h1 style=\"font-size:18px\">{_esc(picture.title)}</h1>\n<p>{legend} <span class=\"key\" "
            "style=\"border-style:dashed\">training only</span></p>\n"
            f"{svg(picture)}{_CHECK}\n</body>\n</html>\n")


def mermaid(picture: Picture) -> str:
    """A Mermaid flowchart (renders on GitHub, in mkdocs-material and in the Mermaid live editor)."""
    ids = {b.name: f"n{i}" for i, b in enumerate(picture.boxes)}

    def text(s: str) -> str:
        return s.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")

    def node(b: Box) -> str:
        return f'    {ids[b.name]}["<b>{text(b.name)}</b>' + "".join(f"<br/>{text(t)}" for t in b.lines) + \
            f'"]:::{b.kind}'

    out = [f"%% {text(picture.title)}", "flowchart TB"]
    out += [node(b) for b in picture.boxes if not b.apart]
    apart = [b for b in picture.boxes if b.apart]
    if apart:
        out += ['    subgraph training_only["training only (not exported)"]', *("  " + node(b) for b in apart),
                "    end", "    style training_only stroke-dasharray: 5 5"]
    for a, b, label in picture.arrows:
        if a in ids and b in ids:
            out.append(f'    {ids[a]} -->|"{text(label)}"| {ids[b]}' if label else f"    {ids[a]} --> {ids[b]}")
    out += [f"    classDef {k} fill:{FILL[k]},stroke:#3c4043" for k in sorted({b.kind for b in picture.boxes})]
    return "\n".join(out) + "\n"


WRITERS = {".svg": svg, ".html": html, ".mmd": mermaid}
