"""Reference networks of the grounded language specs (ISL-12 ...), rebuilt from installable parts with the
official configurations (the authors' code is not installable), so that tests/references.py can compare the
specs' parameter counts and the coverage tests their outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import transformers as tf
from torch import nn


class VokenHead(nn.Module):
    """Vokenization's voken-classification head (vlm/model.py BertVLMClassificationHead): dense -> GELU ->
    LayerNorm -> one logit per image of the voken set."""

    def __init__(self, width: int, vokens: int, eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(width, width)
        self.layer_norm = nn.LayerNorm(width, eps=eps)
        self.decoder = nn.Linear(width, vokens)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(F.gelu(self.dense(h))))  # B,S,vokens


class VokenLM(tf.BertForMaskedLM):
    """CoLwithBert with do_voken_cls: BertForMaskedLM (no pooler, MLM decoder tied to the word table) plus the
    voken head `visual_cls_head`; forward returns (MLM logits, voken logits)."""

    def __init__(self, config: tf.BertConfig, vokens: int = 50000):
        super().__init__(config)
        self.visual_cls_head = VokenHead(config.hidden_size, vokens, config.layer_norm_eps)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):  # noqa: D102
        h = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]  # B,S,D
        return self.cls(h), self.visual_cls_head(h)


def vokenization(width: int = 768, layers: int = 12, heads: int = 12, ffn: int = 3072, vokens: int = 50000,
                 vocab: int = 30522, positions: int = 512) -> VokenLM:
    """The official LM configuration (vlm/configs/bert-12L-768H.json and bert-6L-512H.json) with 50,000 vokens."""
    return VokenLM(tf.BertConfig(vocab_size=vocab, hidden_size=width, num_hidden_layers=layers,
                                 num_attention_heads=heads, intermediate_size=ffn, max_position_embeddings=positions),
                   vokens)


class _AttOutput(nn.Module):
    """LXMERT's attention output: dense, dropout, LayerNorm(residual)."""

    def __init__(self, width: int, eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(width, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(h) + residual)


class _Attention(nn.Module):
    """LXMERT's BertAttention with a context width: query from `width`, key/value from `context`, `heads` heads."""

    def __init__(self, width: int, context: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(width, width), nn.Linear(context, width), nn.Linear(context, width)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        b, s, d = x.shape
        split = lambda t: t.view(b, t.shape[1], self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(ctx)), split(self.value(ctx))  # B,H,*,d/H
        scores = q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5  # B,H,S,T
        if bias is not None:
            scores = scores + bias
        return (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, s, d)  # B,S,D


class _AttLayer(nn.Module):
    """BertCrossattLayer / BertSelfattLayer: attention `att` + `output`."""

    def __init__(self, width: int, context: int, heads: int):
        super().__init__()
        self.att, self.output = _Attention(width, context, heads), _AttOutput(width)

    def forward(self, x, ctx, bias):
        return self.output(self.att(x, ctx, bias), x)


class _FFN(nn.Module):
    """BertIntermediate + BertOutput: dense -> GELU -> dense, LayerNorm(residual)."""

    def __init__(self, width: int, ffn: int):
        super().__init__()
        self.inter, self.out = nn.Linear(width, ffn), nn.Linear(ffn, width)
        self.LayerNorm = nn.LayerNorm(width, eps=1e-12)

    def forward(self, x):
        return self.LayerNorm(self.out(F.gelu(self.inter(x))) + x)


class CrossModalityLayer(nn.Module):
    """XDBERT's LXRTXLayer (src/models/utils_model.py): language/visual cross-attention (each in its own width and
    heads, reading the other stream's input), then self-attention and feed-forward per stream."""

    def __init__(self, lang: int, lang_heads: int, visn: int, visn_heads: int, ffn: int):
        super().__init__()
        self.language_attention = _AttLayer(lang, visn, lang_heads)
        self.visual_attention = _AttLayer(visn, lang, visn_heads)
        self.lang_self_att = _AttLayer(lang, lang, lang_heads)
        self.visn_self_att = _AttLayer(visn, visn, visn_heads)
        self.lang_ffn, self.visn_ffn = _FFN(lang, ffn), _FFN(visn, ffn)

    def forward(self, lang, lang_bias, visn, visn_bias):
        lang2 = self.language_attention(lang, visn, visn_bias)  # B,S,Dl
        visn2 = self.visual_attention(visn, lang, lang_bias)  # B,T,Dv
        lang2, visn2 = self.lang_self_att(lang2, lang2, lang_bias), self.visn_self_att(visn2, visn2, visn_bias)
        return self.lang_ffn(lang2), self.visn_ffn(visn2)


def _prediction_transform(width: int) -> list[nn.Module]:
    """BertPredictionHeadTransform: dense + LayerNorm."""
    return [nn.Linear(width, width), nn.LayerNorm(width, eps=1e-12)]


def xdbert(width: int = 768, layers: int = 12, heads: int = 12, ffn: int = 3072, xlayers: int = 2) -> nn.ModuleList:
    """XDBERT's XATTNBERTModel (scripts/pretrain/xattn_pretrain.sh: bert-base-uncased, CLIP ViT-B/32, --xlayers 2)
    counted over the parts its forward uses: BertModel without its pooler, the CLIP text transformer
    (CLIPTextModel), the cross-modality layers (the visual stream 512 wide with 8 heads and BERT's 3,072-wide
    feed-forward), the pooler, the MLM transform and bias of each stream (decoders tied to the word tables) and
    the MATCH classifier."""
    bert = tf.BertModel(tf.BertConfig(hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
                                      intermediate_size=ffn), add_pooling_layer=False)
    clip = tf.CLIPTextModel(tf.CLIPTextConfig())
    visn = clip.config.hidden_size
    cross = [CrossModalityLayer(width, heads, visn, 8, ffn) for _ in range(xlayers)]
    biases = nn.ParameterList([nn.Parameter(torch.zeros(30522)), nn.Parameter(torch.zeros(clip.config.vocab_size))])
    return nn.ModuleList([bert, clip, *cross, nn.Linear(width, width), *_prediction_transform(width),
                          *_prediction_transform(visn), biases, nn.Linear(width, 2)])


class LanguageAndVisionConcat(nn.Module):
    """iACE's imagination classifier (CME/model/langvis.py): ReLU on both 512-d CLIP vectors, concatenated,
    fusion -> ReLU -> dense -> fc -> tanh (dropout is inactive in eval)."""

    def __init__(self, width: int = 512, hidden: int = 512, classes: int = 2):
        super().__init__()
        self.fusion, self.dense = nn.Linear(2 * width, hidden), nn.Linear(hidden, hidden)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        fused = F.relu(self.fusion(torch.cat([F.relu(image), F.relu(text)], dim=1)))  # B,H
        return torch.tanh(self.fc(self.dense(fused)))  # B,C


class IACE(tf.BertForSequenceClassification):
    """iACE fine-tuning (CME/model/run_glue_ima.py --unifylangvis): the visually supervised LM as
    BertForSequenceClassification plus LanguageAndVisionConcat as `langvis`; forward returns the evaluation's
    prediction (LM logits + mean of both imagination orders) / 2."""

    def __init__(self, config: tf.BertConfig, clip: int = 512, hidden: int = 512):
        super().__init__(config)
        self.langvis = LanguageAndVisionConcat(clip, hidden, config.num_labels)

    def forward(self, input_ids, attention_mask, token_type_ids, image, text):  # noqa: D102
        lm = super().forward(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits  # B,C
        return (lm + (self.langvis(image, text) + self.langvis(text, image)) / 2) / 2  # B,C


def iace(**bert) -> IACE:
    """The official fine-tuning configuration: BERT-base, two GLUE labels, 512-d CLIP vectors, fusion width 512."""
    return IACE(tf.BertConfig(num_labels=2, **bert))
