"""Positions: sinusoidal table and timestep embeddings against the papers' formulas (diffusers is not installed),
rotary embeddings against transformers' Llama, T5 relative position buckets and bias against T5Attention;
fx tracing of each and ONNX export."""

from __future__ import annotations

import math

import pytest
import torch
import transformers as tf
from blockcheck import assert_onnx_matches, assert_traceable
from torch import nn
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb
from transformers.models.t5.modeling_t5 import T5Attention

from mmspec.blocks.positions import (
    RelativePositionBias,
    RotaryEmbedding,
    SinusoidalPositions,
    TimestepEmbedding,
    apply_rotary,
    position_ids,
    relative_position_bucket,
    sinusoidal_table,
    timestep_embedding,
)

TIMESTEPS = torch.tensor([0, 1, 7, 250, 999])


@pytest.mark.parametrize("dim", [8, 7])
def test_sinusoidal_table_matches_attention_is_all_you_need(dim):
    table = sinusoidal_table(40, dim)  # P,D
    expected = torch.tensor(
        [
            [
                math.sin(p / 10000 ** (i / dim)) if i % 2 == 0 else math.cos(p / 10000 ** ((i - 1) / dim))
                for i in range(dim)
            ]
            for p in range(40)
        ]
    )  # P,D
    torch.testing.assert_close(table, expected, atol=1e-6, rtol=0.0)


def test_sinusoidal_positions_look_up_rows_and_hold_no_state():
    emb = SinusoidalPositions(16, 6)
    assert emb.state_dict() == {}
    ids = torch.tensor([[3, 4, 5], [0, 1, 2]])  # B,T
    assert torch.equal(emb(ids), sinusoidal_table(16, 6)[ids])
    x = torch.zeros(2, 3, 6)  # B,T,D
    assert torch.equal(position_ids(x, 3), torch.tensor([3, 4, 5]))
    assert_traceable(emb, ids)


def ddpm_reference(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Ho et al. 2020, diffusion_utils `get_timestep_embedding` (sin first, log(10000) / (half - 1))."""
    half = dim // 2
    step = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float64) * -step)  # D/2
    args = t.double()[:, None] * freqs[None, :]  # B,D/2
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # B,2*(D/2)
    return torch.nn.functional.pad(emb, (0, dim % 2)).float()  # B,D


def adm_reference(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Nichol & Dhariwal (improved DDPM/ADM, GLIDE) `timestep_embedding`: cos first, max_period^(-i/half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / half)  # D/2
    args = t.double()[:, None] * freqs[None, :]  # B,D/2
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # B,2*(D/2)
    return torch.nn.functional.pad(emb, (0, dim % 2)).float()  # B,D


# fp32 frequencies and products against the float64 reference: ~1 ulp of t * f at t = 999 (measured 2.7e-5)
TIMESTEP_ATOL = 1e-4


@pytest.mark.parametrize("dim", [16, 9])
def test_timestep_embedding_matches_ddpm_and_adm(dim):
    ddpm = timestep_embedding(TIMESTEPS, dim)  # B,D  (defaults: sin first, shift 1)
    torch.testing.assert_close(ddpm, ddpm_reference(TIMESTEPS, dim), atol=TIMESTEP_ATOL, rtol=0.0)
    adm = timestep_embedding(TIMESTEPS, dim, flip_sin_to_cos=True, downscale_freq_shift=0.0)  # B,D
    torch.testing.assert_close(adm, adm_reference(TIMESTEPS, dim), atol=TIMESTEP_ATOL, rtol=0.0)
    small = TIMESTEPS[:3]  # exact arguments for small t
    torch.testing.assert_close(timestep_embedding(small, dim), ddpm_reference(small, dim), atol=1e-6, rtol=0.0)


def test_timestep_embedding_module_is_sinusoid_then_mlp():
    emb = TimestepEmbedding(8, 20).eval()
    assert [n for n, _ in emb.named_parameters()] == [f"linear_{i}.{w}" for i in (1, 2) for w in ("weight", "bias")]
    sinusoid = adm_reference(TIMESTEPS, 8)  # B,8
    expected = emb.linear_2(torch.nn.functional.silu(emb.linear_1(sinusoid)))  # B,20
    torch.testing.assert_close(emb(TIMESTEPS), expected, atol=1e-5, rtol=1e-5)
    assert_traceable(emb, TIMESTEPS)


def test_rotary_matches_llama():
    config = tf.LlamaConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64)
    ref = LlamaRotaryEmbedding(config)
    ours = RotaryEmbedding(8, base=config.rope_parameters["rope_theta"])
    q, k = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8)  # B,H,T,d
    ids = torch.tensor([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11]])  # B,T  (second row: after 7 cached positions)
    cos_ref, sin_ref = ref(q, ids)  # B,T,d
    cos, sin = ours(ids)  # B,1,T,d
    torch.testing.assert_close(cos[:, 0], cos_ref, atol=1e-6, rtol=0.0)
    torch.testing.assert_close(sin[:, 0], sin_ref, atol=1e-6, rtol=0.0)
    q_ref, k_ref = apply_rotary_pos_emb(q, k, cos_ref, sin_ref)
    torch.testing.assert_close(apply_rotary(q, cos, sin), q_ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(apply_rotary(k, cos, sin), k_ref, atol=1e-6, rtol=1e-6)
    shared_cos, shared_sin = ours(torch.arange(5))  # 1,T,d  (positions shared by the batch)
    torch.testing.assert_close(apply_rotary(q, shared_cos, shared_sin)[0], q_ref[0], atol=1e-6, rtol=1e-6)


def test_rotary_scores_depend_only_on_relative_position():
    rot = RotaryEmbedding(8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)  # B,H,1,d

    def score(m: int, n: int) -> torch.Tensor:
        cq, sq = rot(torch.tensor([m]))
        ck, sk = rot(torch.tensor([n]))
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum()

    torch.testing.assert_close(score(3, 1), score(12, 10), atol=1e-5, rtol=0.0)
    assert not torch.allclose(score(3, 1), score(3, 2), atol=1e-3)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize(("num_buckets", "max_distance"), [(32, 128), (8, 20)])
def test_relative_position_bucket_matches_t5(bidirectional, num_buckets, max_distance):
    relative = torch.arange(-300, 301)[None, :] + torch.arange(3)[:, None]  # 3,601
    expected = T5Attention._relative_position_bucket(relative, bidirectional, num_buckets, max_distance)
    assert torch.equal(relative_position_bucket(relative, bidirectional, num_buckets, max_distance), expected)


@pytest.mark.parametrize("decoder", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("past", [0, 3])
def test_relative_position_bias_matches_t5_compute_bias(decoder, past):
    config = tf.T5Config(
        d_model=16, d_kv=4, num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=20
    )
    config.is_decoder = decoder
    ref = T5Attention(config, has_relative_attention_bias=True, layer_idx=0)
    ours = RelativePositionBias(4, 8, 20, bidirectional=not decoder)
    with torch.no_grad():
        ref.relative_attention_bias.weight.normal_()
        ours.relative_attention_bias.weight.copy_(ref.relative_attention_bias.weight)
    expected = ref.compute_bias(5, past + 5, past_seen_tokens=past)  # 1,H,T,P+T
    assert torch.equal(ours(5, past + 5, past), expected)


class PositionsProbe(nn.Module):
    """Every position block in one traced/exported graph: rotary q, relative bias for cached decoding,
    sinusoidal rows and a timestep embedding."""

    def __init__(self):
        super().__init__()
        self.rotary = RotaryEmbedding(8)
        self.relative = RelativePositionBias(4, 8, 20, bidirectional=False)
        self.table = SinusoidalPositions(64, 6)
        self.time = TimestepEmbedding(8, 12)

    def forward(self, q: torch.Tensor, past_key: torch.Tensor, timesteps: torch.Tensor):
        past, t = past_key.shape[2], q.shape[2]
        ids = position_ids(q.transpose(1, 2), past)  # T
        cos, sin = self.rotary(ids)  # 1,T,d
        bias = self.relative(t, past + t, past)  # 1,H,T,P+T
        return apply_rotary(q, cos, sin), bias, self.table(ids), self.time(timesteps)


def test_position_blocks_trace_and_export(tmp_path):
    probe = PositionsProbe().eval()
    with torch.no_grad():
        probe.relative.relative_attention_bias.weight.normal_()
    inputs = (torch.randn(2, 4, 3, 8), torch.randn(2, 4, 5, 8), torch.tensor([3, 900]))
    assert_traceable(probe, *inputs)
    dynamic = {"q": {0: "batch", 2: "seq"}, "past_key": {0: "batch", 2: "past"}, "timesteps": {0: "batch"}}
    other = (torch.randn(3, 4, 2, 8), torch.randn(3, 4, 0, 8), torch.tensor([0, 1, 500]))
    names = ["q", "past_key", "timesteps"]
    assert_onnx_matches(probe, inputs, names, dynamic, tmp_path / "pos.onnx", [inputs, other], {"past": 0})
