"""unCLIP / DALL-E 2 (T2I-13): the decoder (adm_unet with unCLIP's conditioning) and the upsamplers (adm_unet
without attention, additive time embeddings) equal diffusers' UNet2DConditionModel + UnCLIPTextProjModel and
UNet2DModel at Karlo's configurations in parameter count, and, with random diffusers weights loaded through
`--weights` (layout diffusers) into the tiny specs, in outputs; the whole cascade (text encoder, guided prior,
guided decoder, super_res_first for all steps but the last and super_res_last for it) samples on ONNX Runtime as
on the eager models; the prior's x0 objective (checked against a hand computation) and the decoder's and
upsampler's noise objectives train."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import unclip_references as U
from references import reference_count
from safetensors.torch import save_file

from mmspec import api
from mmspec.runtime import Denoiser, OnnxGraph, alphas_cumprod, betas, ddim_sample, from_x0
from mmspec.train.data import synthetic_batch
from mmspec.train.trainer import Trainer

SPECS = Path(__file__).resolve().parents[2] / "specs"
PRIOR, DECODER, UPSAMPLER = (SPECS / f"{n}.yaml" for n in ("unclip", "unclip_decoder", "unclip_upsampler"))
PARITY_ATOL = 1e-5  # docs/contracts.md: imported weights against the reference, fp32
SAMPLE_ATOL = 1e-3  # the diffusion acceptance bound: a whole sampling loop, ONNX Runtime against eager


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _lively(*modules) -> None:
    """Random weights with the zero-initialised ones (the guidance embedding, biases) made non-zero."""
    torch.manual_seed(0)
    with torch.no_grad():
        for m in modules:
            for p in m.parameters():
                p.add_(0.1 * torch.randn_like(p))


def test_decoder_count_equals_karlo_unet_and_text_proj():
    counts = api.param_counts(api.build(api.load_spec(DECODER), device="meta"))
    with torch.device("meta"):
        unet, proj = U.unclip_decoder()
    assert counts["by_component"]["decoder"] == _count(unet) + _count(proj)
    assert counts["total"] == reference_count("unclip_decoder")[0]


def test_upsampler_counts_equal_karlo_super_res_unets():
    counts = api.param_counts(api.build(api.load_spec(UPSAMPLER), device="meta"))
    with torch.device("meta"):
        first, last = U.unclip_upsampler()
    assert counts["by_component"]["super_res_first"] == _count(first)
    assert counts["by_component"]["super_res_last"] == _count(last)
    assert counts["total"] == reference_count("unclip_upsampler")[0]


def _checkpoint(path: Path, **modules) -> Path:
    """One safetensors file holding each module's state dict under its prefix ('' for none)."""
    tensors = {f"{prefix}.{k}".lstrip("."): v.contiguous() for prefix, m in modules.items()
               for k, v in m.state_dict().items()}
    save_file(tensors, str(path))
    return path


def test_decoder_weights_reproduce_diffusers(tmp_path):
    loaded = api.load_spec(DECODER, "tiny")
    spec = loaded.spec
    cfg, m = spec.encoders["decoder"], spec.modalities
    dim, length, size = m["image_embed"].dim, m["text"].length, m["x_t"].height
    widths = tuple(cfg.width * k for k in cfg.mult)
    unet = U.decoder(sample_size=size, layers_per_block=cfg.depth, block_out_channels=widths,
                     down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
                     up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
                     norm_num_groups=cfg.groups, attention_head_dim=cfg.head_dim,
                     cross_attention_dim=cfg.context_width).eval()
    proj = U.text_proj(4 * cfg.width, cfg.context_width, clip_extra_context_tokens=cfg.context_tokens,
                       clip_embeddings_dim=dim).eval()
    _lively(unet, proj)
    model = api.build(loaded, weights=_checkpoint(tmp_path / "decoder.safetensors", **{"": unet, "text_proj": proj}))
    model.eval()
    assert not model.weights_report["new"] and not model.weights_report["ignored"]
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(3, 3, size, size, generator=g), torch.tensor([3, 500, 999])  # B,3,H,W; B
    image, text = torch.randn(3, dim, generator=g), torch.randn(3, dim, generator=g)  # B,E each
    image[2] = 0.0  # the null condition: the learned guidance embedding
    states = torch.randn(3, length, dim, generator=g)  # B,S,E
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])  # B,S: padding shows
    feeds = {"x_t": x, "timestep": t, "image_embed": image, "text_embed": text, "text_states": states,
             "text": mask, "text_mask": mask}
    ours = api.eager_graph(model, "decoder")({k: v.numpy() for k, v in feeds.items()})
    with torch.no_grad():
        cfg_image = torch.where((image == 0).all(-1, keepdim=True), proj.learned_classifier_free_guidance_embeddings,
                                image)  # B,E: diffusers swaps the null rows in when guidance doubles the batch
        context, added = proj(image_embeddings=cfg_image, prompt_embeds=text, text_encoder_hidden_states=states,
                              do_classifier_free_guidance=False)
        keys = F.pad(mask.bool(), (cfg.context_tokens, 0), value=True)  # B,K+S
        theirs = unet(x, t, encoder_hidden_states=context, class_labels=added, attention_mask=keys).sample
    assert theirs.abs().max() > 0.1
    got = np.concatenate([ours["decoder_eps"], ours["decoder_variance"]], 1)
    np.testing.assert_allclose(got, theirs.numpy(), atol=PARITY_ATOL, rtol=0)
    unmasked = api.eager_graph(model, "decoder")({**{k: v.numpy() for k, v in feeds.items()},
                                                  "text_mask": np.ones((3, length), np.int64)})
    assert np.abs(unmasked["decoder_eps"][0] - ours["decoder_eps"][0]).max() > 1e-4, "the mask does not reach"


def test_upsampler_weights_reproduce_diffusers(tmp_path):
    loaded = api.load_spec(UPSAMPLER, "tiny")
    spec = loaded.spec
    size, low = spec.modalities["x_t"].height, spec.modalities["low_res"].height
    unets = {}
    for node in ("super_res_first", "super_res_last"):
        cfg = spec.encoders[node]
        unets[node] = U.super_res(sample_size=size, layers_per_block=cfg.depth,
                                  block_out_channels=tuple(cfg.width * k for k in cfg.mult),
                                  down_block_types=("ResnetDownsampleBlock2D",) * len(cfg.mult),
                                  up_block_types=("ResnetUpsampleBlock2D",) * len(cfg.mult),
                                  norm_num_groups=cfg.groups).eval()
    _lively(*unets.values())
    model = api.build(loaded, weights=_checkpoint(tmp_path / "super_res.safetensors", **unets)).eval()
    assert not model.weights_report["new"] and not model.weights_report["ignored"]
    g = torch.Generator().manual_seed(2)
    x, t = torch.randn(2, 3, size, size, generator=g), torch.tensor([7, 940])  # B,3,H,W; B
    small = torch.randn(2, 3, low, low, generator=g)  # B,3,h,w
    for node, unet in unets.items():
        ours = api.eager_graph(model, node)({"x_t": x.numpy(), "timestep": t.numpy(), "low_res": small.numpy()})
        with torch.no_grad():  # UnCLIPPipeline's super-resolution input: bicubic, antialiased, then concatenated
            up = F.interpolate(small, size=[size, size], mode="bicubic", align_corners=False, antialias=True)
            theirs = unet(torch.cat([x, up], 1), t).sample
        assert theirs.abs().max() > 0.1
        np.testing.assert_allclose(ours[node], theirs.numpy(), atol=PARITY_ATOL, rtol=0, err_msg=node)


@pytest.mark.parametrize(("spec", "variant"), [(DECODER, "tiny"), (UPSAMPLER, "tiny"), (PRIOR, "tiny")])
def test_fit_lowers_the_loss(spec, variant):
    loaded = api.load_spec(spec, variant)
    history = Trainer(loaded, lr=3e-3).fit(synthetic_batch(loaded, 4, 0), 15, seed=0)
    first, last = history.losses[0], sum(history.losses[-3:]) / 3
    assert last < 0.9 * first, history.losses[::3]


def test_x0_target_regresses_the_clean_data():
    """diffusion_eps_mse with target x0: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps is fed, and the loss is
    mean (prediction - x_0)^2, computed here by hand from the drawn t and eps."""
    from mmspec.components.objectives.generative.loss import DiffusionEps
    from mmspec.components.objectives.runtime import Batch

    steps = 40
    x0 = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))  # B,D
    batch = Batch({"x": x0, "t": torch.zeros(5, dtype=torch.int64)}, {})
    module = DiffusionEps("x", "t", "squaredcos_cap_v2", steps, 1e-4, 0.02, {}, 0.0, target="x0")
    derived = module.corrupt(batch, torch.Generator().manual_seed(3))
    t, eps = derived["timestep"], derived["noise"]
    f = np.cos((np.arange(steps + 1) / steps + 0.008) / 1.008 * np.pi / 2) ** 2
    abar = np.cumprod(1 - np.minimum(1 - f[1:] / f[:-1], 0.999))  # T: improved DDPM's cosine schedule
    for i in range(5):
        a = float(abar[t[i]])
        np.testing.assert_allclose(batch.inputs["x"][i].numpy(), (a**0.5 * x0[i] + (1 - a) ** 0.5 * eps[i]).numpy(),
                                   atol=1e-5)
    pred = torch.randn(5, 6, generator=torch.Generator().manual_seed(4))  # B,D
    expected = float(((pred.numpy() - x0.numpy()) ** 2).mean())
    assert module({"input": {"x0": pred}}, derived).item() == pytest.approx(expected, rel=1e-6)
    eps_module = DiffusionEps("x", "t", "squaredcos_cap_v2", steps, 1e-4, 0.02, {}, 0.0)
    assert eps_module({"input": {"x0": pred}}, derived).item() == pytest.approx(
        float(((pred.numpy() - eps.numpy()) ** 2).mean()), rel=1e-6)


class _Remembering:
    """A runtime Graph that keeps its last outputs (the prior's un-normalised embedding of the final step)."""

    def __init__(self, graph):
        self.graph, self.input_names, self.output_names, self.last = graph, graph.input_names, graph.output_names, {}

    def __call__(self, feeds):
        self.last = self.graph(feeds)
        return self.last


@pytest.fixture(scope="module")
def cascade_graphs(tmp_path_factory):
    """The tiny cascade's graphs {name: (eager graph, ONNX Runtime graph)}: text_encoder and prior (the prior's
    CLIP statistics made non-trivial: they are zero-initialised, which would zero every image embedding), decoder,
    super_res_first and super_res_last."""
    out, tmp = {}, tmp_path_factory.mktemp("unclip")
    for path in (PRIOR, DECODER, UPSAMPLER):
        loaded = api.load_spec(path, "tiny")
        model = api.build(loaded).eval()
        if path == PRIOR:
            prior = model.components["prior"]
            with torch.no_grad():
                prior.clip_std.copy_(1.0 + 0.1 * torch.randn_like(prior.clip_std))
                prior.clip_mean.copy_(0.1 * torch.randn_like(prior.clip_mean))
        views = api.graph_views(model)
        for graph in loaded.plan.graphs:
            gm, _ = api.optimize(api.capture(views[graph.name]))
            with torch.no_grad():
                api.export(gm, loaded, tmp / f"{graph.name}.onnx", graph=graph)
            out[graph.name] = (api.eager_graph(model, graph.name), OnnxGraph(tmp / f"{graph.name}.onnx"))
    return out


def _cascade(graphs: dict, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Caption -> (image embedding, 8x8 decoder sample, 16x16 upsampled sample) with DDIM on every stage."""
    schedule = alphas_cumprod(betas("squaredcos_cap_v2"))
    rng = np.random.default_rng(0)
    ids, mask = np.array([[4, 17, 9, 2, 0], [8, 3, 2, 0, 0]]), np.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    empty_ids, empty_mask = np.array([[2, 0, 0, 0, 0]] * 2), np.array([[1, 0, 0, 0, 0]] * 2)
    text = graphs["text_encoder"]({"text": ids, "text_mask": mask})
    empty = graphs["text_encoder"]({"text": empty_ids, "text_mask": empty_mask})
    prior = _Remembering(graphs["prior"])
    cond = {"text_proj": text["text_proj"], "text_tower_sequence": text["text_tower_sequence"], "text": ids,
            "text_mask": mask}
    uncond = {"text_proj": empty["text_proj"], "text_tower_sequence": empty["text_tower_sequence"],
              "text": empty_ids, "text_mask": empty_mask}
    den = Denoiser(prior, sample="x_t", timestep="timestep", eps="prior_x0", cond=cond, uncond=uncond)
    ddim_sample(from_x0(den, schedule), rng.standard_normal((2, 8), dtype=np.float32), schedule=schedule, steps=5,
                guidance_scale=scale)
    emb = prior.last["prior_image_embedding"]  # 2B,E: the last step's x0 = the sample, un-normalised
    image_embed = emb[2:] + np.float32(scale) * (emb[:2] - emb[2:])  # B,E
    decoder = Denoiser(graphs["decoder"], sample="x_t", timestep="timestep", eps="decoder_eps",
                       cond={"image_embed": image_embed, "text_embed": text["text_proj"],
                             "text_states": text["text_tower_sequence"], "text": ids, "text_mask": mask},
                       uncond={"image_embed": np.zeros_like(image_embed), "text_embed": empty["text_proj"],
                               "text_states": empty["text_tower_sequence"], "text": empty_ids,
                               "text_mask": empty_mask})
    small = ddim_sample(decoder, rng.standard_normal((2, 3, 8, 8), dtype=np.float32), schedule=schedule, steps=5,
                        eta=0.5, seed=1, guidance_scale=scale)
    first, last = (Denoiser(graphs[n], sample="x_t", timestep="timestep", eps=n, cond={"low_res": small})
                   for n in ("super_res_first", "super_res_last"))

    def upsampler(x, t, guidance_scale=None):  # Karlo's improved SR: its own model for the last step
        return (last if t[0] == 0 else first)(x, t, guidance_scale)

    large = ddim_sample(upsampler, rng.standard_normal((2, 3, 16, 16), dtype=np.float32), schedule=schedule,
                        steps=5, eta=0.5, seed=2)
    return image_embed, small, large


def test_cascade_on_ort_equals_eager(cascade_graphs):
    eager = {name: pair[0] for name, pair in cascade_graphs.items()}
    ort = {name: pair[1] for name, pair in cascade_graphs.items()}
    on_ort, on_eager = _cascade(ort, 2.0), _cascade(eager, 2.0)
    for name, a, b in zip(("image embedding", "64x64 stage", "upsampled"), on_ort, on_eager, strict=True):
        assert np.isfinite(a).all(), name
        np.testing.assert_allclose(a, b, atol=SAMPLE_ATOL, rtol=0, err_msg=name)
    unguided = _cascade(ort, 1.0)
    assert np.abs(on_ort[0] - unguided[0]).max() > 10 * SAMPLE_ATOL, "guidance does not change the prior's sample"
    assert np.abs(on_ort[2] - unguided[2]).max() > 10 * SAMPLE_ATOL, "the embedding does not reach the image"


def test_prior_stage_weights_reproduce_clip_text_and_prior_transformer(tmp_path):
    """One checkpoint with CLIPTextModelWithProjection's tensors and PriorTransformer's (under prior.) loads
    through --weights; the caption's embedding, its token states and the prior's x0 equal the references'."""
    import transformers as tf
    from diffusers import PriorTransformer

    loaded = api.load_spec(PRIOR, "tiny")
    spec = loaded.spec
    tower, prior_cfg, m = spec.encoders["text_tower"], spec.encoders["prior"], spec.modalities
    length, dim = m["text"].length, m["x_t"].dim
    text = tf.CLIPTextModelWithProjection(tf.CLIPTextConfig(
        vocab_size=m["text"].vocab_size, hidden_size=tower.width, num_hidden_layers=tower.layers,
        num_attention_heads=tower.heads, intermediate_size=tower.ffn, max_position_embeddings=length,
        projection_dim=dim, bos_token_id=0, eos_token_id=2)).eval()  # eos id 2: pooled at the highest id
    prior = PriorTransformer(num_attention_heads=prior_cfg.heads, attention_head_dim=prior_cfg.head_dim,
                             num_layers=prior_cfg.layers, embedding_dim=dim, num_embeddings=length).eval()
    _lively(text, prior)
    model = api.build(loaded, weights=_checkpoint(tmp_path / "prior.safetensors", **{"": text, "prior": prior}))
    model.eval()
    assert not model.weights_report["new"] and not model.weights_report["ignored"]
    ids = np.array([[4, 17, 9, 49, 0], [8, 3, 49, 0, 0]])  # B,S: the end token has the highest id (CLIP's pooling)
    mask = (np.arange(length) <= np.argmax(ids, 1)[:, None]).astype(np.int64)  # B,S
    ours = api.eager_graph(model, "text_encoder")({"text": ids, "text_mask": mask})
    x, t = np.random.default_rng(0).standard_normal((2, dim), dtype=np.float32), np.array([3, 870])
    step = api.eager_graph(model, "prior")({"x_t": x, "timestep": t, "text": ids, "text_mask": mask,
                                            "text_proj": ours["text_proj"],
                                            "text_tower_sequence": ours["text_tower_sequence"]})
    with torch.no_grad():
        theirs = text(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        states = theirs.last_hidden_state  # B,S,D
        x0 = prior(torch.from_numpy(x), torch.from_numpy(t), theirs.text_embeds, encoder_hidden_states=states,
                   attention_mask=torch.from_numpy(mask).bool()).predicted_image_embedding  # B,D
    np.testing.assert_allclose(ours["text_proj"], theirs.text_embeds.numpy(), atol=PARITY_ATOL, rtol=0)
    real = mask.astype(bool)  # padded positions' states are masked out of every use
    np.testing.assert_allclose(ours["text_tower_sequence"][real], states.numpy()[real], atol=PARITY_ATOL, rtol=0)
    assert x0.abs().max() > 0.1
    np.testing.assert_allclose(step["prior_x0"], x0.numpy(), atol=PARITY_ATOL, rtol=0)
