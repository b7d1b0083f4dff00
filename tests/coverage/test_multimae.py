"""MultiMAE (FM-05): the spec's count equals a torch.nn rebuild of the official pre-training model
(tests/multimae_references.py) on the meta device; the tiny variant, given the rebuild's weights, reproduces its
encoder tokens and all four decoders' outputs, at inference and under the same training-time masking; the
masking keeps `visible` tokens split at random over the inputs; `fit` on the tiny variant lowers the loss."""

from __future__ import annotations

from pathlib import Path

import multimae_references as MMAE
import torch

from mmspec.api import build, load_spec, param_counts
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPEC = Path(__file__).resolve().parents[2] / "specs" / "multimae.yaml"
ATOL, RTOL = 1e-5, 1e-5
DECODERS = {"rgb": "rgb_decoder", "norm_rgb": "norm_rgb_decoder", "depth": "depth_decoder",
            "semseg": "semseg_decoder"}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_count_matches_the_official_modules():
    with torch.device("meta"):
        reference = MMAE.MultiMAE()
    counts = param_counts(build(load_spec(SPEC), device="meta"))
    encoder = _count(reference.input_adapters) + _count(reference.encoder) + reference.global_tokens.numel()
    assert counts["by_component"]["encoder"] == encoder
    for task, node in DECODERS.items():
        assert counts["by_component"][node] == _count(reference.output_adapters[task])
    assert counts["total"] == _count(reference)


def _tiny_reference() -> MMAE.MultiMAE:
    spec = load_spec(SPEC, "tiny").spec
    enc, dec = spec.encoders["encoder"], spec.heads["rgb_decoder"]
    image = spec.modalities["rgb"].height
    torch.manual_seed(0)
    reference = MMAE.MultiMAE(enc.width, enc.layers, enc.heads, enc.patch_size, image,
                              spec.modalities["semseg"].vocab_size, enc.class_dim, 4, dec.width, dec.layers,
                              dec.heads, enc.global_tokens, enc.ffn / enc.width)
    assert dec.ffn / dec.width == enc.ffn / enc.width  # one MLP ratio for the rebuild
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_(0.0, 0.2)
    return reference.eval()


def _block(ours: dict, theirs: dict, dst: str, src: str) -> None:
    q, k, v = theirs.pop(f"{src}.attn.qkv.weight").chunk(3)
    qb, kb, vb = theirs.pop(f"{src}.attn.qkv.bias").chunk(3)
    ours.update({f"{dst}.attn.q.weight": q, f"{dst}.attn.k.weight": k, f"{dst}.attn.v.weight": v,
                 f"{dst}.attn.q.bias": qb, f"{dst}.attn.k.bias": kb, f"{dst}.attn.v.bias": vb})
    for a, b in (("attn.proj", "attn.out"), ("norm1", "attn_res.norm"), ("mlp.fc1", "ffn.fc1"),
                 ("mlp.fc2", "ffn.fc2"), ("norm2", "ffn_res.norm")):
        for p in ("weight", "bias"):
            ours[f"{dst}.{b}.{p}"] = theirs.pop(f"{src}.{a}.{p}")


def _grid(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(2).transpose(1, 2)[0]  # 1,D,h,w -> h*w,D


def _weights(reference: MMAE.MultiMAE, patches: dict[str, tuple[int, int]]) -> dict[str, torch.Tensor]:
    """The rebuild's state dict under the spec's names (`components.<node>.`); per-patch output rows go from the
    official (channel, row, column) order to the spec's (row, column, channel) one."""
    theirs, ours = dict(reference.state_dict()), {}
    e = "components.encoder"
    ours[f"{e}.global_tokens"] = theirs.pop("global_tokens")[0]
    for task in ("rgb", "depth"):
        ours[f"{e}.adapters.{task}.position"] = _grid(theirs.pop(f"input_adapters.{task}.pos_emb"))
        for p in ("weight", "bias"):
            ours[f"{e}.adapters.{task}.proj.{p}"] = theirs.pop(f"input_adapters.{task}.proj.{p}")
    ours[f"{e}.adapters.semseg.classes.weight"] = theirs.pop("input_adapters.semseg.class_emb.weight")
    ours[f"{e}.adapters.semseg.patches.position"] = _grid(theirs.pop("input_adapters.semseg.pos_emb"))
    for p in ("weight", "bias"):
        ours[f"{e}.adapters.semseg.patches.proj.{p}"] = theirs.pop(f"input_adapters.semseg.proj.{p}")
    for i in range(len(reference.encoder)):
        _block(ours, theirs, f"{e}.layers.{i}", f"encoder.{i}")
    for task, node in DECODERS.items():
        d, s = f"components.{node}", f"output_adapters.{task}"
        ours[f"{d}.mask_token"] = theirs.pop(f"{s}.mask_token")[0, 0]
        ours[f"{d}.position"] = _grid(theirs.pop(f"{s}.pos_emb"))
        ours[f"{d}.domain_embed"] = torch.cat([theirs.pop(f"{s}.task_embeddings.{t}")[0] for t in reference.tasks])
        k, v = theirs.pop(f"{s}.decoder.kv.weight").chunk(2)
        kb, vb = theirs.pop(f"{s}.decoder.kv.bias").chunk(2)
        ours.update({f"{d}.cross.k.weight": k, f"{d}.cross.v.weight": v, f"{d}.cross.k.bias": kb,
                     f"{d}.cross.v.bias": vb})
        for a, b in (("proj_context", "project"), ("decoder.q", "cross.q"), ("decoder.proj", "cross.out"),
                     ("query_norm", "query_norm"), ("context_norm", "context_norm"), ("out_norm", "out_norm"),
                     ("mlp.fc1", "ffn.fc1"), ("mlp.fc2", "ffn.fc2")):
            for p in ("weight", "bias"):
                ours[f"{d}.{b}.{p}"] = theirs.pop(f"{s}.{a}.{p}")
        for i in range(len(reference.output_adapters[task].decoder_transformer)):
            _block(ours, theirs, f"{d}.layers.{i}", f"{s}.decoder_transformer.{i}")
        c, p = patches[task]
        w, b = theirs.pop(f"{s}.out_proj.weight"), theirs.pop(f"{s}.out_proj.bias")
        ours[f"{d}.head.weight"] = w.reshape(c, p, p, -1).permute(1, 2, 0, 3).reshape(w.shape)
        ours[f"{d}.head.bias"] = b.reshape(c, p, p).permute(1, 2, 0).reshape(b.shape)
    assert not theirs, sorted(theirs)
    return ours


def _run(training: bool, seed: int) -> None:
    loaded = load_spec(SPEC, "tiny")
    spec = loaded.spec
    reference = _tiny_reference()
    p, classes = spec.encoders["encoder"].patch_size, spec.modalities["semseg"].vocab_size
    patches = {"rgb": (3, p), "norm_rgb": (3, p), "depth": (1, p), "semseg": (classes, p // 4)}
    model = build(loaded)
    missing, unexpected = model.load_state_dict(_weights(reference, patches), strict=False)
    assert not unexpected and not [m for m in missing if m.startswith("components.")], missing
    model.train(training)
    g = torch.Generator().manual_seed(seed)
    h = spec.modalities["rgb"].height
    rgb, depth = torch.randn(2, 3, h, h, generator=g), torch.randn(2, 1, h, h, generator=g)
    semseg = torch.randint(0, classes, (2, h // 4, h // 4), generator=g)
    torch.manual_seed(seed)
    enc = model.components["encoder"]({"rgb": {"pixels": rgb}, "depth": {"pixels": depth},
                                       "semseg": {"ids": semseg.flatten(1)}})
    visible = enc["sequence"].shape[1] - spec.encoders["encoder"].global_tokens
    with torch.no_grad():
        tokens, preds = reference({"rgb": rgb, "depth": depth, "semseg": semseg}, torch.argsort(enc["restore"], 1),
                                  visible)
        torch.testing.assert_close(enc["sequence"], tokens, atol=ATOL, rtol=RTOL)
        for task, node in DECODERS.items():
            ours = model.components[node]({"input": enc})["pixels"]  # B,N,(p p c)
            c, q = patches[task]
            theirs = preds[task].unflatten(2, (c, q, q)).permute(0, 1, 3, 4, 2).flatten(2)  # B,N,(c p p) -> (p p c)
            torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=RTOL)


def test_tiny_equals_the_official_modules_at_inference():
    _run(training=False, seed=1)


def test_tiny_equals_the_official_modules_under_the_same_masking():
    _run(training=True, seed=2)


def test_masking_keeps_visible_tokens_split_at_random_over_the_inputs():
    loaded = load_spec(SPEC, "tiny")
    enc_cfg = loaded.spec.encoders["encoder"]
    model = build(loaded).train()
    batch = synthetic_batch(loaded, 64, 0)
    torch.manual_seed(0)
    enc = model.components["encoder"]({n: {f: batch.inputs[n]} for n, f in
                                       (("rgb", "pixels"), ("depth", "pixels"), ("semseg", "ids"))})
    assert enc["sequence"].shape[1] == enc_cfg.visible + enc_cfg.global_tokens
    seen = 1 - enc["dropped"]  # B,N
    assert (seen.sum(1) == enc_cfg.visible).all()
    per_input = seen.reshape(64, 3, -1).sum(2)  # B,3
    assert per_input.float().std(0).min() > 1.0  # the split differs from example to example
    model.eval()
    enc = model.components["encoder"]({n: {f: batch.inputs[n]} for n, f in
                                       (("rgb", "pixels"), ("depth", "pixels"), ("semseg", "ids"))})
    assert enc["sequence"].shape[1] == 48 + enc_cfg.global_tokens and not enc["dropped"].any()


def test_fit_lowers_the_loss_of_the_tiny_variant():
    loaded = load_spec(SPEC, "tiny")
    history = Trainer(loaded, lr=3e-3).fit(synthetic_batch(loaded, 4, 0), 30, seed=0)
    first, last = sum(history.losses[:3]) / 3, sum(history.losses[-3:]) / 3  # a fresh masking every step
    assert last < 0.9 * first, history.losses[::3]
