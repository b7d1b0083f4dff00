"""Multipurpose models of the survey's Section 4.3 (issue 15): MP-07 PathNet (specs/pathnet.yaml): outputs against
a torch.nn rebuild that evaluates only the path's modules, ONNX against eager for several paths, the full count
against the rebuild, the tournament search and the end-of-task path fixing. MP-09 muNet (specs/munet.yaml): outputs
against transformers.ViTForImageClassification with its weights, counts, the mutations, weight inheritance and
parent sampling of the search. `mmspec fit` on both tiny variants."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import transformers as tf
import yaml
from multipurpose_references import PathNetReference
from references import reference_count

from mmspec import api
from mmspec.cli import run
from mmspec.components.encoders.pathnet import evolution
from mmspec.components.encoders.pathnet.module import fix_path
from mmspec.components.encoders.transformer import munet

SPECS = Path(__file__).resolve().parents[2] / "specs"
PATHNET, MUNET = SPECS / "pathnet.yaml", SPECS / "munet.yaml"
ATOL, RTOL = 1e-6, 1e-5
PATHS = ([[0], [2]], [[0, 1, 2], [1]], [[1, 2], [0, 1, 2]])  # tiny: 2 layers x 3 modules


def _tiny_pathnet() -> tuple[torch.nn.Module, PathNetReference]:
    """The tiny spec's model and the rebuild holding the same weights."""
    torch.manual_seed(0)
    model = api.build(api.load_spec(PATHNET, "tiny")).eval()
    ref = PathNetReference(dim=12, layers=2, modules=3, width=4, classes=2)
    theirs = [p for p in model.components["pathnet"].parameters()] + list(model.components["task"].parameters())
    with torch.no_grad():
        for mine, their in zip(ref.parameters(), theirs, strict=True):
            mine.copy_(their)
    return model, ref


def _mask(path: list[list[int]], batch: int) -> torch.Tensor:
    return torch.tensor(evolution.mask(path, 3)).expand(batch, -1, -1)  # B,L,M


@pytest.mark.parametrize("path", PATHS, ids=["one_each", "wide_first", "wide_last"])
def test_pathnet_equals_the_rebuild_that_runs_only_the_path(path):
    model, ref = _tiny_pathnet()
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(1))  # B,784 at full size
    with torch.no_grad():
        (logits,) = model({"image": x, "path": _mask(path, 5)})
        torch.testing.assert_close(logits, ref(x, path), atol=ATOL, rtol=RTOL)


def test_pathnet_onnx_equals_eager_for_every_path(tmp_path):
    loaded = api.load_spec(PATHNET, "tiny")
    model, ref = _tiny_pathnet()
    onnx = tmp_path / "pathnet.onnx"
    api.export(api.optimize(api.capture(model))[0], loaded, onnx)
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    x = torch.randn(4, 12, generator=torch.Generator().manual_seed(2))  # B,D
    outputs = []
    for path in PATHS:
        (theirs,) = session.run(None, {"image": x.numpy(), "path": _mask(path, 4).numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(theirs, ref(x, path).numpy(), atol=1e-5, rtol=1e-4)
        outputs.append(theirs)
    assert not np.allclose(outputs[0], outputs[1])  # the path is an input, not a constant of the graph


def test_pathnet_count_equals_the_rebuild():
    loaded = api.load_spec(PATHNET)
    total = api.param_counts(api.build(loaded, device="meta"))["total"]
    assert total == loaded.estimate.params == reference_count("pathnet")[0]


def test_tournament_search_finds_the_fittest_path():
    target = [[1, 4, 7], [0, 2, 9], [3, 5, 8]]
    fitness = lambda path: sum(len(set(a) & set(b)) - 0.1 * len(a) for a, b in zip(path, target, strict=True))  # noqa: E731
    rng = random.Random(0)
    start = [evolution.random_path(3, 10, 3, rng) for _ in range(64)]
    best = evolution.evolve(fitness, 3, 10, 3, population=64, tournaments=3000, rng=random.Random(0))
    assert all(len(layer) <= 3 and all(0 <= m < 10 for m in layer) for layer in best)
    assert fitness(best) > max(fitness(p) for p in start)
    assert best == target  # the fittest genotype: the target's modules, no repeats


def test_mutation_moves_indices_by_at_most_two_modulo_modules():
    rng = random.Random(3)
    path = [[0, 5, 9], [2, 3, 4]]
    for _ in range(200):
        child = evolution.mutate(path, 10, rng, prob=1.0)
        for parent, layer in zip(path, child, strict=True):
            assert len(layer) == len(parent)
            assert all(min((m - p) % 10 for p in parent) <= 2 or min((p - m) % 10 for p in parent) <= 2
                       for m in layer)
    assert evolution.mutate(path, 10, rng, prob=0.0) == path


def test_fix_path_freezes_the_winner_and_reinitialises_the_rest():
    model, _ = _tiny_pathnet()
    net = model.components["pathnet"]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    path = [[0, 2], [1]]
    fix_path(net, path)
    for i, layer in enumerate(net.layers):
        for m, linear in enumerate(layer):
            kept = m in path[i]
            assert linear.weight.requires_grad is not kept
            assert torch.equal(linear.weight, before[f"layers.{i}.{m}.weight"]) is kept


@pytest.mark.parametrize("path", [PATHNET, MUNET], ids=["pathnet", "munet"])
def test_fit_lowers_the_loss(path, tmp_path):
    out = tmp_path / "fit.json"
    assert run(["fit", str(path), "--variant", "tiny", "--steps", "30", "--json", str(out), "-q"]) == 0
    losses = json.loads(out.read_text())["losses"]
    assert losses[-1] < losses[0], losses[::10]


def _tiny_vit_config(**extra) -> tf.ViTConfig:
    return tf.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, num_labels=10, **extra)


def test_munet_root_equals_vit_for_image_classification_with_its_weights(tmp_path):
    torch.manual_seed(3)
    reference = tf.ViTForImageClassification(_tiny_vit_config()).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.02 * torch.randn_like(p))  # no zero biases or unit norms
    reference.save_pretrained(tmp_path / "ckpt")
    model = api.build(api.load_spec(MUNET, "tiny"), weights=tmp_path / "ckpt").eval()
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))  # B,C,H,W
    with torch.no_grad():
        (logits,) = model({"image": pixels})
        torch.testing.assert_close(logits, reference(pixel_values=pixels).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("key", ["munet", "munet:res384"])
def test_munet_counts_equal_vit_large(key):
    variant = key.partition(":")[2] or None
    loaded = api.load_spec(MUNET, variant)
    total = api.param_counts(api.build(loaded, device="meta"))["total"]
    count, label = reference_count(key)
    assert total == loaded.estimate.params == count and label == "transformers.ViTForImageClassification"


def _tiny_tree() -> dict:
    tree = yaml.safe_load(MUNET.read_text())
    for key, value in tree.pop("variants")["tiny"].items():
        tree = munet.set_hyperparameter(tree, key, value)
    return tree


def _built(tree: dict, tmp_path: Path, name: str) -> torch.nn.Module:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tree))
    return api.build(api.load_spec(path)).eval()


def test_munet_mutations_build_and_inherit_the_parent_weights(tmp_path):
    torch.manual_seed(5)
    tree = _tiny_tree()
    parent = _built(tree, tmp_path, "parent")
    state = parent.components.state_dict()
    children = {
        "shallower": munet.remove_layer(tree, "vit"),
        "dropout": munet.set_hyperparameter(tree, "encoders.vit.dropout", 0.1),
        "new_task": munet.new_head(tree, "task", 7),
        "res48": munet.set_hyperparameter(munet.set_hyperparameter(tree, "modalities.image.height", 48),
                                          "modalities.image.width", 48),
    }
    for name, child_tree in children.items():
        child = _built(child_tree, tmp_path, name)
        fresh = child.components.state_dict()
        inherited = munet.inherit(state, fresh)
        child.components.load_state_dict(inherited)
        shared = [k for k in fresh if k in state and state[k].shape == fresh[k].shape]
        assert all(torch.equal(child.components.state_dict()[k], state[k]) for k in shared), name
        own = {"shallower": set(), "dropout": set(), "new_task": {"task.mlp.0.weight", "task.mlp.0.bias"},
               "res48": {"vit.embed.position"}}[name]
        assert set(fresh) - set(shared) == own, name  # a new head, a resized position table
    assert len(_built(children["shallower"], tmp_path, "shallower").components["vit"].layers) == 1
    assert tree["encoders"]["vit"]["layers"] == 2  # mutations copy the tree
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))  # B,C,H,W
    same = _built(children["dropout"], tmp_path, "dropout_eval")
    same.components.load_state_dict(munet.inherit(state, same.components.state_dict()))
    with torch.no_grad():
        torch.testing.assert_close(same({"image": x})[0], parent({"image": x})[0])  # dropout acts in training only
    with pytest.raises(ValueError, match="one layer"):
        munet.remove_layer(munet.remove_layer(tree, "vit"), "vit")


def test_munet_adapter_child_starts_as_its_parent_then_exports_what_it_computes(tmp_path):
    torch.manual_seed(8)
    tree = _tiny_tree()
    parent = _built(tree, tmp_path, "parent")
    child_tree = munet.insert_adapter(tree, "vit", 0, hidden=4)
    child = _built(child_tree, tmp_path, "child")
    child.components.load_state_dict(munet.inherit(parent.components.state_dict(), child.components.state_dict()))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(9))  # B,C,H,W
    adapter = child.components["vit"].adapters["0"]
    with torch.no_grad():
        torch.testing.assert_close(child({"image": x})[0], parent({"image": x})[0], atol=0.0, rtol=0.0)
        adapter.fc2.weight.normal_()
        adapter.fc2.bias.normal_()
        eager = child({"image": x})[0]
    assert not torch.allclose(eager, parent({"image": x})[0])
    loaded = api.load_spec(tmp_path / "child.yaml")
    onnx = tmp_path / "child.onnx"
    api.export(api.optimize(api.capture(child))[0], loaded, onnx)
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"image": x.numpy()})[0], eager.numpy(), atol=1e-5, rtol=1e-4)
    assert munet.remove_layer(munet.insert_adapter(tree, "vit", 1, hidden=4), "vit")["encoders"]["vit"].get(
        "adapters") is None  # the adapter after the removed layer goes with it
    with pytest.raises(ValueError, match="already"):
        munet.insert_adapter(child_tree, "vit", 0, hidden=4)


def test_a_vit_checkpoint_loads_into_an_adapter_child_that_then_computes_the_vit(tmp_path):
    torch.manual_seed(10)
    reference = tf.ViTForImageClassification(_tiny_vit_config()).eval()
    reference.save_pretrained(tmp_path / "ckpt")
    tree = munet.insert_adapter(_tiny_tree(), "vit", 1, hidden=4)
    tree["weights"]["new"] = ["vit.adapters.*"]  # initialised here: the checkpoint has no adapters
    (tmp_path / "child.yaml").write_text(yaml.safe_dump(tree))
    model = api.build(api.load_spec(tmp_path / "child.yaml"), weights=tmp_path / "ckpt").eval()
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(11))  # B,C,H,W
    with torch.no_grad():
        torch.testing.assert_close(model({"image": pixels})[0], reference(pixel_values=pixels).logits,
                                   atol=1e-5, rtol=1e-5)


def test_munet_clone_child_trains_its_copy_of_the_layer_and_shares_the_rest_bitwise(tmp_path):
    """Layer cloning: the parent trains, the child that cloned layer 1 starts from the parent's checkpoint and
    trains; only its copy of layer 1 and its head moved, every other tensor is bitwise the parent's."""
    from safetensors.torch import load_file

    tree = _tiny_tree()
    (tmp_path / "parent.yaml").write_text(yaml.safe_dump(tree))
    api.fit(tmp_path / "parent.yaml", 2, out_dir=tmp_path / "parent")
    child_tree = munet.clone_layers(tree, "vit", [1])
    (tmp_path / "child.yaml").write_text(yaml.safe_dump(child_tree))
    api.fit(tmp_path / "child.yaml", 3, seed=1, weights=tmp_path / "parent" / "munet.safetensors",
            out_dir=tmp_path / "child")
    parent, child = (load_file(tmp_path / name / "munet.safetensors") for name in ("parent", "child"))
    model = {k: v for k, v in parent.items() if k.startswith("components.")}
    changed = {k for k in model if not torch.equal(parent[k], child[k])}
    cloned = {k for k in model if k.startswith("components.vit.layers.1.")}
    head = {k for k in model if k.startswith("components.task.")}
    assert changed <= cloned | head and changed & cloned and head <= changed
    shared = {".".join(k.split(".")[2:4]) for k in set(model) - cloned - head}  # kept bitwise (above)
    assert {s for s in shared if not s.startswith("embed.")} == {"layers.0", "final_norm.weight", "final_norm.bias"}
    assert any(s.startswith("embed.") for s in shared)
    counts = api.param_counts(api.build(api.load_spec(tmp_path / "child.yaml"), device="meta"))
    assert counts["trainable"] == sum(model[k].numel() for k in cloned | head) < counts["total"]


def test_munet_clone_variant_keeps_the_root_count_and_trains_one_layer_and_the_head():
    counts = api.param_counts(api.build(api.load_spec(MUNET, "clone"), device="meta"))
    width, ffn, classes = 1024, 4096, 1000
    layer = 4 * (width * width + width) + 2 * width * ffn + ffn + width + 4 * width
    assert counts["total"] == reference_count("munet")[0]
    assert counts["trainable"] == layer + width * classes + classes


def test_munet_mutations_keep_the_cloned_parts_consistent():
    tree = munet.clone_layers(_tiny_tree(), "vit", [1, "embed"])
    assert tree["encoders"]["vit"]["trainable_layers"] == [1, "embed"]
    with_adapter = munet.insert_adapter(tree, "vit", 1, hidden=4)
    assert with_adapter["encoders"]["vit"]["trainable_layers"] == [1, "embed", "adapter.1"]
    assert munet.remove_layer(with_adapter, "vit")["encoders"]["vit"]["trainable_layers"] == ["embed"]
    assert munet.clone_layers(tree, "vit", [0])["encoders"]["vit"]["trainable_layers"] == [0]  # the parent's: shared
    assert "trainable_layers" not in _tiny_tree()["encoders"]["vit"]


def test_munet_adapter_variant_counts_the_root_plus_two_linear_maps():
    loaded = api.load_spec(MUNET, "adapter")
    total = api.param_counts(api.build(loaded, device="meta"))["total"]
    width, hidden = 1024, 128
    assert total == loaded.estimate.params == reference_count("munet")[0] + 2 * width * hidden + hidden + width


def test_munet_parent_sampling_prefers_rarely_selected_good_models():
    scores = {"a": 0.9, "b": 0.8, "c": 0.1}
    selected = {"a": 2, "b": 1}
    rng = random.Random(7)
    draws = [munet.sample_parent(scores, selected, rng) for _ in range(20000)]
    # one walk: a with 1/4, else b with 1/2, else c always: 1/4, 3/8, 3/8
    for name, p in {"a": 0.25, "b": 0.375, "c": 0.375}.items():
        assert draws.count(name) / len(draws) == pytest.approx(p, abs=0.015), name
    assert munet.sample_parent(scores, {}, rng) == "a"
