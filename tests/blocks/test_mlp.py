"""Feed-forward layers: default FeedForward unchanged, bias-free/dropout variant against T5DenseActDense, gated
variant against T5DenseGatedActDense (GeGLU) and LlamaMLP (SwiGLU), fx tracing."""

from __future__ import annotations

import pytest
import torch
import transformers as tf
from blockcheck import assert_traceable, seeded
from torch import nn
from transformers.models.llama.modeling_llama import LlamaMLP
from transformers.models.t5.modeling_t5 import T5DenseActDense, T5DenseGatedActDense

from mmspec.blocks.mlp import FeedForward, GatedFeedForward

ATOL, RTOL = 1e-6, 1e-5
D, F = 12, 20



def copy_linears(pairs: list[tuple[nn.Linear, nn.Linear]]) -> None:
    with torch.no_grad():
        for ours, ref in pairs:
            ours.weight.copy_(ref.weight)


def test_default_feed_forward_is_unchanged():
    ffn = seeded(FeedForward(D, F, "gelu", out=8))
    assert [n for n, _ in ffn.named_parameters()] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    x = torch.randn(2, 5, D)  # B,S,D
    assert torch.equal(ffn(x), ffn.fc2(ffn.act(ffn.fc1(x))))
    gm = assert_traceable(ffn, x)
    assert [n.target for n in gm.graph.nodes if n.op == "call_module"] == ["fc1", "fc2"]  # no dropout node


def test_bias_free_feed_forward_matches_t5_dense_act_dense():
    config = tf.T5Config(d_model=D, d_ff=F, dense_act_fn="relu", dropout_rate=0.1)
    ref = seeded(T5DenseActDense(config))
    ours = FeedForward(D, F, "relu", bias=False, dropout=0.1).eval()
    assert [n for n, _ in ours.named_parameters()] == ["fc1.weight", "fc2.weight"]
    copy_linears([(ours.fc1, ref.wi), (ours.fc2, ref.wo)])
    x = torch.randn(2, 5, D)  # B,S,D
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=RTOL)
    assert_traceable(ours, x)
    assert ours.train()(x).ne(ours.eval()(x)).any()  # the inner dropout is live in training


@pytest.mark.parametrize("reference", ["t5_geglu", "llama_swiglu"])
def test_gated_feed_forward_matches_transformers(reference):
    if reference == "t5_geglu":
        ref = seeded(T5DenseGatedActDense(tf.T5Config(d_model=D, d_ff=F, feed_forward_proj="gated-gelu")))
        ours = GatedFeedForward(D, F, "gelu_tanh").eval()  # T5 v1.1 "gated-gelu" is gelu_new (tanh)
        copy_linears([(ours.gate, ref.wi_0), (ours.fc1, ref.wi_1), (ours.fc2, ref.wo)])
    else:
        config = tf.LlamaConfig(hidden_size=D, intermediate_size=F, num_attention_heads=4, hidden_act="silu")
        ref = seeded(LlamaMLP(config))
        ours = GatedFeedForward(D, F, "silu").eval()
        copy_linears([(ours.gate, ref.gate_proj), (ours.fc1, ref.up_proj), (ours.fc2, ref.down_proj)])
    assert [n for n, _ in ours.named_parameters()] == ["gate.weight", "fc1.weight", "fc2.weight"]
    x = torch.randn(2, 5, D)  # B,S,D
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=RTOL)
    assert_traceable(ours, x)
