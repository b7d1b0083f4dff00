"""transformers reference models for parity tests, built from small configurations with random weights.

Nothing is downloaded. `randomize` perturbs every floating tensor (LayerNorm scales and biases, BatchNorm
statistics, biases initialised to zero, ...) so that a name mapped to the wrong place cannot hide behind
identical initial values. `FROM_SPEC` builds each spec's reference implementation from the spec's own sizes.
"""

from __future__ import annotations

import numpy as np
import torch
import transformers as tf

from mmspec.graph.inputs import make_inputs, verification_shapes

PARITY_ATOL = 1e-5
"""Fidelity contract (docs/contracts.md): max abs difference to the reference in fp32, eval mode."""


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Add N(0, 0.02) noise to every floating parameter and buffer (BatchNorm variances: U(0.5, 1.5)); eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.add_(torch.randn(t.shape, generator=g) * 0.02)
    return model.eval()


def bert(spec) -> torch.nn.Module:
    text, enc = spec.modalities["text"], spec.encoders["bert"]
    config = tf.BertConfig(
        vocab_size=text.vocab_size,
        hidden_size=enc.width,
        num_hidden_layers=enc.layers,
        num_attention_heads=enc.heads,
        intermediate_size=enc.ffn,
        max_position_embeddings=enc.embed.positions,
        type_vocab_size=enc.embed.segments,
        layer_norm_eps=enc.eps,
    )
    return tf.BertForPreTraining(config)


def clip(spec) -> torch.nn.Module:
    image, text = spec.modalities["image"], spec.modalities["text"]
    vision, tower = spec.encoders["vision"], spec.encoders["text_tower"]
    assert image.height == image.width
    text_config = {
        "vocab_size": text.vocab_size,
        "hidden_size": tower.width,
        "intermediate_size": tower.ffn,
        "num_hidden_layers": tower.layers,
        "num_attention_heads": tower.heads,
        "max_position_embeddings": tower.embed.positions,
        "layer_norm_eps": tower.eps,
        # The spec pools at the highest id: transformers does that for eos_token_id 2 (openai checkpoints).
        "bos_token_id": 0,
        "pad_token_id": 1,
        "eos_token_id": 2,
    }
    vision_config = {
        "hidden_size": vision.width,
        "intermediate_size": vision.ffn,
        "num_hidden_layers": vision.layers,
        "num_attention_heads": vision.heads,
        "image_size": image.height,
        "patch_size": vision.embed.patch_size,
        "layer_norm_eps": vision.eps,
    }
    dim = spec.heads["image_proj"].dim
    return tf.CLIPModel(tf.CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=dim))


def resnet(spec) -> torch.nn.Module:
    backbone = spec.encoders["backbone"]
    config = tf.ResNetConfig(
        num_channels=spec.modalities["image"].channels,
        embedding_size=backbone.stem,
        hidden_sizes=backbone.widths,
        depths=backbone.depths,
        layer_type=backbone.block,
        num_labels=spec.heads["classifier"].num_classes,
    )
    return tf.ResNetForImageClassification(config)


FROM_SPEC = {
    "transformers.BertForPreTraining": bert,
    "transformers.CLIPModel": clip,
    "transformers.ResNetForImageClassification": resnet,
}
"""reference.implementation -> the reference model built with the spec's sizes."""

CALLS = {
    "transformers.BertForPreTraining": (
        lambda x: {"input_ids": x["text"], "attention_mask": x["text_mask"], "token_type_ids": x["text_segments"]},
        {"mlm": "prediction_logits", "nsp": "seq_relationship_logits"},
    ),
    "transformers.CLIPModel": (
        lambda x: {"input_ids": x["text"], "pixel_values": x["image"]},
        {
            "clip_logits_per_image": "logits_per_image",
            "clip_logits_per_text": "logits_per_text",
            "clip_image_embeds": "image_embeds",
            "clip_text_embeds": "text_embeds",
        },
    ),
    "transformers.ResNetForImageClassification": (
        lambda x: {"pixel_values": x["image"]},
        {"classifier": "logits"},
    ),
}
"""reference.implementation -> (our inputs -> its keyword arguments, our output name -> its output field)."""


def cases(loaded) -> list[dict[str, torch.Tensor]]:
    """The verification shapes' inputs (trace shape, batch 1, an odd batch, other sizes of each dynamic axis)."""
    batch_axes = {m.batch for m in loaded.spec.modalities.values()}
    shapes = verification_shapes(loaded.plan, batch_axes)
    return [make_inputs(loaded.plan, sizes, seed=100 + i) for i, sizes in enumerate(shapes)]


def run_reference(model, implementation: str, inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The reference's outputs under our output names."""
    kwargs, names = CALLS[implementation]
    with torch.no_grad():
        out = model(**kwargs(inputs))
    return {ours: getattr(out, theirs).numpy() for ours, theirs in names.items()}


def max_abs_diff(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> dict[str, float]:
    assert set(ours) == set(theirs), (sorted(ours), sorted(theirs))
    return {k: float(np.abs(ours[k].reshape(theirs[k].shape) - theirs[k]).max()) for k in theirs}
