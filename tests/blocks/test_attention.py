"""Attention: unchanged default numerics, KV cache (self and cross), mask helpers, bias-free/unscaled variant,
parity with transformers' GPT-2 and T5 attention, fx tracing and ONNX export of a decoder-with-past step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import transformers as tf
from blockcheck import assert_onnx_matches, assert_traceable, seeded
from torch import nn
from transformers.models.gpt2.modeling_gpt2 import GPT2Attention
from transformers.models.t5.modeling_t5 import T5Attention

from mmspec.blocks.attention import (
    MASKED,
    Attention,
    KVCache,
    cached_causal_bias,
    causal_bias,
    combine_biases,
    padding_bias,
)
from mmspec.blocks.positions import RelativePositionBias

ATOL, RTOL = 1e-6, 1e-5
B, T, D, H = 2, 7, 16, 4



def left_padded_mask() -> torch.Tensor:
    mask = torch.ones(B, T)  # B,T
    mask[1, :2] = 0
    return mask


def test_default_forward_is_the_original_formula():
    attn = seeded(Attention(D, 12, 24, H, 10))
    x, ctx = torch.randn(B, T, D), torch.randn(B, 5, 12)  # B,T,D / B,S,12
    bias = padding_bias(torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]), x)  # B,1,1,S
    q = attn.q(x).view(B, T, H, -1).transpose(1, 2)  # B,H,T,d
    k = attn.k(ctx).view(B, 5, H, -1).transpose(1, 2)  # B,H,S,d
    v = attn.v(ctx).view(B, 5, H, -1).transpose(1, 2)  # B,H,S,d
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(B, T, -1)  # B,T,inner
    assert torch.equal(attn(x, ctx, bias), attn.out(y))
    assert [n for n, _ in attn.named_parameters()] == [f"{p}.{w}" for p in "qkv" for w in ("weight", "bias")] + [
        "out.weight",
        "out.bias",
    ]


def test_cached_causal_bias_is_a_slice_of_the_full_causal_bias():
    x = torch.randn(1, T, D)  # B,T,D
    full = causal_bias(x)  # T,T
    for past in range(T):
        got = cached_causal_bias(x[:, past:], past)  # T-P,T
        assert torch.equal(got, full[past:])
    assert torch.equal(cached_causal_bias(x, 0), full)


def test_combine_biases_sums_and_broadcasts():
    x = torch.randn(B, T, D)  # B,T,D
    pad, causal = padding_bias(left_padded_mask(), x), causal_bias(x)  # B,1,1,T / T,T
    assert combine_biases(None, None) is None
    assert combine_biases(None, causal) is causal
    combined = combine_biases(pad, None, causal)  # B,1,T,T
    assert combined.shape == (B, 1, T, T)
    assert torch.equal(combined, pad + causal)
    assert combined[1, 0, 3, 0] == MASKED and combined[1, 0, 0, 1] == 2 * MASKED


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left_padded"])
@pytest.mark.parametrize("chunks", [[7], [3, 1, 1, 2], [1] * 7])
def test_incremental_decoding_equals_full_causal_attention(chunks, padded):
    attn = seeded(Attention(D, D, D, H, D))
    x, mask = torch.randn(B, T, D), left_padded_mask() if padded else torch.ones(B, T)  # B,T,D / B,T
    full = attn(x, bias=combine_biases(padding_bias(mask, x), causal_bias(x)))  # B,T,D
    cache, start, outs = attn.empty_cache(x), 0, []
    assert cache.key.shape == (B, H, 0, D // H)
    for n in chunks:
        step = x[:, start : start + n]  # B,n,D
        bias = combine_biases(padding_bias(mask[:, : start + n], step), cached_causal_bias(step, cache.length))
        y, cache = attn(step, bias=bias, cache=cache)  # B,n,D
        start += n
        assert cache.key.shape == cache.value.shape == (B, H, start, D // H)
        outs.append(y)
    # A padded query blocks every key, so its (meaningless) row is uniform over the keys visible at that step:
    # it differs between full and cached decoding by design (as in transformers); every real query matches.
    real = mask.bool()  # B,T
    torch.testing.assert_close(torch.cat(outs, dim=1)[real], full[real], atol=ATOL, rtol=RTOL)
    assert torch.equal(cache.key, attn.project_kv(x).key) and torch.equal(cache.value, attn.project_kv(x).value)


def test_cross_attention_cache_equals_recomputation():
    attn = seeded(Attention(D, 12, 24, H, D))
    x, ctx = torch.randn(B, T, D), torch.randn(B, 5, 12)  # B,T,D / B,S,12
    bias = padding_bias(torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]), x)  # B,1,1,S
    kv = attn.project_kv(ctx)  # computed once
    assert kv.key.shape == kv.value.shape == (B, H, 5, 24 // H)
    for start in range(T):  # one decoding step at a time, the same static K/V each step
        step = x[:, start : start + 1]  # B,1,D
        assert torch.equal(attn.attend(step, kv, bias), attn(step, ctx, bias))
    with pytest.raises(ValueError, match="cross-attention"):
        attn(x, ctx, bias, cache=kv)


def test_bias_free_unscaled_variant_matches_hand_computation():
    attn = seeded(Attention(D, D, 12, 3, 10, bias=False, scale=1.0))
    assert all(not n.endswith("bias") for n, _ in attn.named_parameters())
    x = torch.randn(B, T, D)  # B,T,D
    bias = causal_bias(x)  # T,T
    wq, wk, wv, wo = (attn.q.weight, attn.k.weight, attn.v.weight, attn.out.weight)
    q = (x @ wq.T).view(B, T, 3, 4).permute(0, 2, 1, 3)  # B,H,T,d
    k = (x @ wk.T).view(B, T, 3, 4).permute(0, 2, 1, 3)  # B,H,T,d
    v = (x @ wv.T).view(B, T, 3, 4).permute(0, 2, 1, 3)  # B,H,T,d
    weights = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1)  # B,H,T,T  (no 1/sqrt(d))
    expected = (weights @ v).permute(0, 2, 1, 3).reshape(B, T, 12) @ wo.T  # B,T,10
    torch.testing.assert_close(attn(x, bias=bias), expected, atol=ATOL, rtol=RTOL)
    gm = assert_traceable(attn, x, None, bias, concrete_args={"context": None, "cache": None})
    assert any(n.kwargs.get("scale") == 1.0 for n in gm.graph.nodes if n.target is F.scaled_dot_product_attention)


def gpt2_attention() -> tuple[GPT2Attention, Attention]:
    """A tiny GPT-2 attention with random weights and an mmspec Attention holding the same weights."""
    config = tf.GPT2Config(n_embd=D, n_head=H, n_layer=1, attn_pdrop=0.0, resid_pdrop=0.0, attn_implementation="eager")
    ref = seeded(GPT2Attention(config, layer_idx=0))
    ours = Attention(D, D, D, H, D).eval()
    with torch.no_grad():  # GPT-2's Conv1D computes x @ W + b with W [in, out]; c_attn holds q|k|v
        for i, proj in enumerate((ours.q, ours.k, ours.v)):
            proj.weight.copy_(ref.c_attn.weight[:, i * D : (i + 1) * D].T)
            proj.bias.copy_(ref.c_attn.bias[i * D : (i + 1) * D])
        ours.out.weight.copy_(ref.c_proj.weight.T)
        ours.out.bias.copy_(ref.c_proj.bias)
    return ref, ours


def gpt2_mask(t: int, past: int) -> torch.Tensor:
    """transformers-style additive causal mask [1, 1, t, past + t] (finfo.min above the shifted diagonal)."""
    blocked = torch.ones(t, past + t, dtype=torch.bool).triu(past + 1)  # t,P+t
    return torch.zeros(1, 1, t, past + t).masked_fill(blocked, torch.finfo(torch.float32).min)


def test_gpt2_attention_parity_full_and_cached():
    ref, ours = gpt2_attention()
    x = torch.randn(B, T, D)  # B,T,D
    with torch.no_grad():
        expected, _ = ref(x, attention_mask=gpt2_mask(T, 0))
        torch.testing.assert_close(ours(x, bias=causal_bias(x)), expected, atol=ATOL, rtol=RTOL)
        # prefill 4 tokens, then one at a time, with transformers' DynamicCache against ours
        cache_ref, cache, start = tf.DynamicCache(config=ref.config), ours.empty_cache(x), 0
        for n in (4, 1, 1, 1):
            step = x[:, start : start + n].contiguous()  # B,n,D  (GPT-2's Conv1D views its input)
            expected, _ = ref(step, cache=cache_ref, attention_mask=gpt2_mask(n, start))
            got, cache = ours(step, bias=cached_causal_bias(step, cache.length), cache=cache)  # B,n,D
            torch.testing.assert_close(got, expected, atol=ATOL, rtol=RTOL)
            start += n
        torch.testing.assert_close(cache.key, cache_ref.layers[0].keys, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(cache.value, cache_ref.layers[0].values, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("decoder", [False, True], ids=["encoder", "decoder"])
def test_t5_attention_parity_with_relative_position_bias(decoder):
    config = tf.T5Config(
        d_model=D,
        d_kv=4,
        num_heads=H,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=20,
        is_decoder=decoder,
        dropout_rate=0.0,
        attn_implementation="eager",
    )
    ref = seeded(T5Attention(config, has_relative_attention_bias=True, layer_idx=0))
    ours, rel = Attention(D, D, 16, H, D, bias=False, scale=1.0).eval(), RelativePositionBias(H, 8, 20, not decoder)
    with torch.no_grad():
        for a, b in ((ours.q, ref.q), (ours.k, ref.k), (ours.v, ref.v), (ours.out, ref.o)):
            a.weight.copy_(b.weight)
        rel.relative_attention_bias.weight.copy_(ref.relative_attention_bias.weight)
    x = torch.randn(B, T, D)  # B,T,D
    mask = causal_bias(x) if decoder else None  # T,T
    with torch.no_grad():
        expected, position_bias, _ = ref(x, mask=mask)
        got = ours(x, bias=combine_biases(rel(T, T), mask))  # B,T,D
    torch.testing.assert_close(rel(T, T), position_bias, atol=0.0, rtol=0.0)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=RTOL)


class DecoderStep(nn.Module):
    """One decoder-with-past step: (x [B,T,D], past key/value [B,H,P,d], attention mask [B,P+T]) ->
    (y [B,T,D], present key/value [B,H,P+T,d]), the Optimum/onnxruntime-genai graph contract."""

    def __init__(self, attn: Attention):
        super().__init__()
        self.attn = attn

    def forward(self, x, past_key, past_value, mask):
        past = KVCache(past_key, past_value)
        bias = combine_biases(padding_bias(mask, x), cached_causal_bias(x, past.length))  # B,1,T,P+T
        y, present = self.attn(x, bias=bias, cache=past)  # B,T,D
        return y, present.key, present.value


class CrossStep(nn.Module):
    """Cross-attention over a static cache: (x [B,T,D], memory key/value [B,H,S,d], memory mask [B,S]) -> y."""

    def __init__(self, attn: Attention):
        super().__init__()
        self.attn = attn

    def forward(self, x, memory_key, memory_value, memory_mask):
        return self.attn.attend(x, KVCache(memory_key, memory_value), padding_bias(memory_mask, x))  # B,T,D


def step_inputs(b: int, t: int, past: int) -> tuple[torch.Tensor, ...]:
    mask = torch.ones(b, past + t)  # B,P+T
    mask[0, 0] = 0  # left padding in the first row
    d = D // H
    return torch.randn(b, t, D), torch.randn(b, H, past, d), torch.randn(b, H, past, d), mask


def test_decoder_step_traces_and_exports_with_explicit_past(tmp_path):
    step = DecoderStep(seeded(Attention(D, D, D, H, D)))
    for past in (0, 3):
        assert_traceable(step, *step_inputs(B, 2, past))
    dynamic = {
        "x": {0: "batch", 1: "seq"},
        "past_key": {0: "batch", 2: "past"},
        "past_value": {0: "batch", 2: "past"},
        "attention_mask": {0: "batch", 1: "total"},
    }
    cases = [step_inputs(B, 2, 3), step_inputs(B, 3, 0), step_inputs(3, 1, 5), step_inputs(1, 4, 1)]
    names = ["x", "past_key", "past_value", "attention_mask"]
    assert_onnx_matches(step, step_inputs(B, 2, 3), names, dynamic, tmp_path / "step.onnx", cases, {"past": 0})


def test_cross_step_traces_and_exports_with_static_cache(tmp_path):
    step = CrossStep(seeded(Attention(D, 12, D, H, D)))
    memory = step.attn.project_kv(torch.randn(B, 5, 12))
    inputs = (torch.randn(B, 2, D), memory.key.detach(), memory.value.detach(), torch.ones(B, 5))
    assert_traceable(step, *inputs)
    dynamic = {"x": {0: "batch", 1: "seq"}, "memory_key": {0: "batch", 2: "source"}}
    dynamic |= {"memory_value": {0: "batch", 2: "source"}, "memory_mask": {0: "batch", 1: "source"}}
    names = ["x", "memory_key", "memory_value", "memory_mask"]
    other = (torch.randn(3, 1, D), torch.randn(3, H, 7, 4), torch.randn(3, H, 7, 4), torch.ones(3, 7))
    assert_onnx_matches(step, inputs, names, dynamic, tmp_path / "cross.onnx", [inputs, other])
