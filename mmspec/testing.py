"""Checks every registered component passes, driven by its registry examples (timm's test_models, as a library).

`check_example(component, example, workdir)` turns one `registry.Example` into a spec and checks, in order:
1. it validates and plans (torch-free), and the example is legal for the component;
2. the captured torch.fx graph equals eager bit for bit;
3. the parameter formula (`estimate_params`, where the component has one) equals the meta-device count;
4. exportable components: the spec compiles to ONNX and passes verification on ONNX Runtime;
5. objectives: `mmspec fit` runs training steps with finite losses and changes the trainable parameters;
6. every weight layout the component declares round-trips on the examples whose tensors it names
   (`covered_layouts`).
A failed check raises AssertionError naming the component, the example and the step. `tests/components` runs it
for every (component, example) of the registry; a component registered in user code is checked the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mmspec import api
from mmspec.registry import PROBE, Component, Example
from mmspec.spec.model import SLOTS
from mmspec.spec.yaml_safe import dump_spec


@dataclass
class ExampleReport:
    """What `check_example` did, for tests that look closer."""

    spec_path: Path
    checked: list[str] = field(default_factory=list)
    compile_report: dict | None = None
    fit: dict | None = None
    layouts: list[str] = field(default_factory=list)


def write_example(component: Component, example: Example, workdir: str | Path) -> Path:
    """The example as a YAML spec file in `workdir`."""
    path = Path(workdir) / f"{component.slot}-{component.name}-{example.name}.yaml"
    path.write_text(dump_spec(example.spec(component)))
    return path


def check_example(component: Component, example: Example, workdir: str | Path) -> ExampleReport:
    """Run every check that applies to `component` on `example` (see the module docstring)."""
    import torch

    from mmspec.graph.capture import example_call
    from mmspec.graph.inputs import make_inputs, trace_sizes

    where = f"{component.slot}/{component.name} example {example.name!r}"
    path = write_example(component, example, workdir)
    report = ExampleReport(path)
    loaded = api.load_spec(path)
    assert PROBE in loaded.spec.model_dump()[component.slot], f"{where}: the probe is not in the spec"
    report.checked.append("plan")

    model = api.build(loaded)
    inputs = make_inputs(loaded.plan, trace_sizes(loaded.plan), seed=1)
    with torch.no_grad():
        eager = model(inputs)
        traced = example_call(api.capture(model), inputs)
    for name, a, b in zip(model.output_names, eager, traced, strict=True):
        assert torch.equal(a, b), f"{where}: captured output {name!r} differs from eager"
    report.checked.append("capture")

    if hasattr(component.config, "estimate_params"):
        counted = api.param_counts(api.build(loaded, device="meta"))["by_component"][PROBE]
        formula = loaded.estimate.by_node[PROBE]
        assert formula == counted, f"{where}: estimate_params gives {formula:,}, the built module has {counted:,}"
        report.checked.append("params")

    if component.exportable and PROBE in {n.name for n in loaded.plan.export_nodes}:
        report.compile_report = api.compile(path, out_dir=Path(workdir) / "build")
        assert report.compile_report["verification"]["passed"], f"{where}: ONNX Runtime verification failed"
        report.checked.append("export")

    if component.slot == "objectives":
        report.fit = _train(loaded, where)
        report.checked.append("fit")

    report.layouts = covered_layouts(component, example, workdir)
    return report


def covered_layouts(component: Component, example: Example, workdir: str | Path) -> list[str]:
    """The component's weight layouts that round-trip on this example: the probe's tensors, written under the
    layout's names, load back through `--weights` into a differently seeded model exactly. A layout that names
    only some of this example's tensors is left out (another example must cover it)."""
    where = f"{component.slot}/{component.name} example {example.name!r}"
    path = write_example(component, example, workdir)
    return [layout for layout in sorted(component.config.weight_layouts)
            if _round_trip(path, layout, Path(workdir), where)]


def _train(loaded, where: str) -> dict:
    """Two training steps through the spec's objectives: finite losses, and some trainable parameter changed."""
    import math

    import torch

    from mmspec.train.data import synthetic_batch
    from mmspec.train.trainer import Trainer

    torch.manual_seed(0)
    trainer = Trainer(loaded)
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters() if v.requires_grad}
    history = trainer.fit(synthetic_batch(loaded, 4, 0), 2, 0).as_dict()
    assert all(math.isfinite(x) for x in history["losses"]), f"{where}: non-finite loss {history['losses']}"
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(v, after[k]) for k, v in before.items()), f"{where}: training changed no parameter"
    return history


def _round_trip(path: Path, layout: str, workdir: Path, where: str) -> bool:
    """Write the probe's tensors under `layout`'s names and load them into a differently seeded model.

    False when this example's probe has tensors the layout does not name (another example covers the layout)."""
    import torch
    from safetensors.torch import save_file

    from mmspec.weights.keymap import KeyMap

    tree = yaml.safe_load(path.read_text())
    others = [n for slot in SLOTS for n in tree.get(slot, {}) if n != PROBE]
    tree["weights"] = {"nodes": {PROBE: {"prefix": "ref", "layout": layout}}, "new": others}
    spec_path = workdir / f"{path.stem}.{layout}.yaml"
    spec_path.write_text(dump_spec(tree))
    with_layout = api.load_spec(spec_path)
    keymap = KeyMap(with_layout.spec, {n.name: n.config for n in with_layout.plan.nodes})
    source = api.build(with_layout)
    state = {f"{PROBE}.{k}": v for k, v in source.components[PROBE].state_dict().items()}
    names: dict[str, list[str]] = {}
    for param in state:
        ckpt = keymap.source(param)
        if ckpt is None:
            return False
        names.setdefault(ckpt, []).append(param)
    checkpoint = {}
    for ckpt, params in names.items():
        targets = keymap.targets(ckpt, lambda p: p in state)
        assert targets and {t.param for t in targets} == set(params), f"{where}: layout {layout!r} maps {ckpt!r} " \
            f"to {[t.param for t in targets]} but {params} map back to it"
        tensor = torch.cat([state[t.param] for t in sorted(targets, key=lambda t: t.part)]) if len(targets) > 1 \
            else state[targets[0].param]
        tensor = tensor.t() if targets[0].transpose else tensor
        checkpoint[ckpt] = (tensor[None] if targets[0].squeeze else tensor).contiguous()
    file = workdir / f"{path.stem}.{layout}.safetensors"
    save_file(checkpoint, str(file))
    reseeded = api.load_spec(spec_path, sets=[f"seed={with_layout.spec.seed + 7}"])
    target = api.build(reseeded)
    api.load_weights(target, reseeded, file)
    loaded_state = target.components[PROBE].state_dict()
    for k, v in state.items():
        assert torch.equal(loaded_state[k.removeprefix(f"{PROBE}.")], v), f"{where}: layout {layout!r}: {k} differs"
    return True
