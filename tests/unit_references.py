"""UniT (MP-03, ISL-11) composed from transformers blocks, module by module as mmf's `unit` model builds it
(facebookresearch/mmf, mmf/models/unit, config all_8_datasets/shared_dec_without_task_embedding), so that
tests/references.py can compare the spec's parameter count and tests/coverage/test_multipurpose_unit_ofa.py its
outputs. mmf's UniT does not install (mmf pins torch 1.5); its pieces are DETR's and BERT's."""

from __future__ import annotations

import torch
import transformers as tf
from torch import nn
from transformers.models.bert.modeling_bert import BertPredictionHeadTransform
from transformers.models.detr.modeling_detr import DetrDecoder, DetrMLPPredictionHead

DETECTION = {"coco": 91, "visual_genome": 1601}
"""Detection tasks and their object classes (the heads add "no object")."""
CLASSIFICATION = {"vqa2": 3129, "snli_ve": 3, "qnli": 2, "mnli": 3, "qqp": 2, "sst2": 2}
"""The other tasks and their labels."""
QUERIES = {"coco": 100, "visual_genome": 100, **dict.fromkeys(CLASSIFICATION, 25)}
IMAGE_TASKS = ("coco", "visual_genome", "vqa2", "snli_ve")
TEXT_TASKS = ("vqa2", "snli_ve", "qnli", "mnli", "qqp", "sst2")
CLS_ONLY = ("snli_ve", "qnli", "mnli", "qqp", "sst2")
"""Tasks whose text memory is BERT's [CLS] state only (mmf's keep_only_bert_cls)."""


def detr_config(backbone: tf.ResNetConfig | None = None, **kw) -> tf.DetrConfig:
    """DETR with transformers' own ResNet backbone (timm is not installed); defaults: R50, 256 wide, 6 + 6 layers,
    8 heads, FFN 2048."""
    backbone = backbone or tf.ResNetConfig(out_features=["stage4"])
    return tf.DetrConfig(use_timm_backbone=False, backbone_config=backbone, use_pretrained_backbone=False, **kw)


class UniTReference(nn.Module):
    """mmf's UniT without its losses: DETR's backbone (frozen BatchNorm), input projection and encoder, BERT (no
    pooler: UniT calls only its embeddings and encoder), a shared DETR decoder of its own width with its final
    LayerNorm, projections of both memories and their positions into it, per-task queries and heads."""

    def __init__(self, decoder: dict | None = None, bert: tf.BertConfig | None = None, detection=DETECTION,
                 classification=CLASSIFICATION, queries=QUERIES, **detr):
        super().__init__()
        bert = bert or tf.BertConfig()
        decoder = {"d_model": 768, **(decoder or {})}
        detr_model = tf.DetrForObjectDetection(detr_config(**detr)).model
        self.backbone = detr_model.backbone
        self.position_embedding = detr_model.position_embedding
        self.input_projection = detr_model.input_projection
        self.encoder = detr_model.encoder
        d, w = detr_model.config.d_model, decoder["d_model"]
        self.decoder = DetrDecoder(detr_config(**{**detr, **decoder}))
        self.enc2dec_proj = nn.Linear(d, w)
        self.pos_embed_proj = nn.Linear(d, w)
        self.bert = tf.BertModel(bert, add_pooling_layer=False)
        self.bert_projection = nn.Linear(bert.hidden_size, w)
        self.bert_pos_projection = nn.Linear(bert.hidden_size, w)
        self.query_embeds = nn.ModuleDict({t: nn.Embedding(n, w) for t, n in queries.items()})
        self.class_embeds = nn.ModuleDict({t: nn.Linear(w, n + 1) for t, n in detection.items()})
        self.bbox_embeds = nn.ModuleDict({t: DetrMLPPredictionHead(w, w, 4, 3) for t in detection})
        head = tf.BertConfig(hidden_size=w)
        self.classifiers = nn.ModuleDict(
            {t: nn.Sequential(BertPredictionHeadTransform(head), nn.Linear(w, n)) for t, n in classification.items()})

    def forward(self, task: str, image: torch.Tensor | None = None, ids: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, segments: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """mmf's UniT.forward for one task (eval): detection -> (class logits, pre-sigmoid boxes); otherwise the
        classifier's logits on query 0 of the last layer."""
        memories, positions, masks = [], [], []
        if task in IMAGE_TASKS:
            b, _, h, w = image.shape
            fmap, fmask = self.backbone(image, torch.ones(b, h, w))[-1]
            src = self.input_projection(fmap).flatten(2).transpose(1, 2)  # B,N,d
            pos = self.position_embedding(shape=fmap.shape, device=image.device, dtype=image.dtype,
                                          mask=fmask).flatten(2).transpose(1, 2)  # B,N,d
            flat = fmask.flatten(1).long()  # B,N
            memory = src + self.encoder(inputs_embeds=src, attention_mask=flat,
                                        spatial_position_embeddings=pos).last_hidden_state  # residual_in_encoder
            memories.append(self.enc2dec_proj(memory))
            positions.append(self.pos_embed_proj(pos))
            masks.append(flat)
        if task in TEXT_TASKS:
            text = self.bert(input_ids=ids, attention_mask=mask, token_type_ids=segments).last_hidden_state  # B,S,D
            pos = self.bert.embeddings.position_embeddings(torch.arange(ids.shape[1]))  # S,D
            if task in CLS_ONLY:
                text, pos, mask = text[:, :1], pos[:1], mask[:, :1]
            memories.append(self.bert_projection(text))
            positions.append(self.bert_pos_projection(pos)[None].expand(text.shape[0], -1, -1))
            masks.append(mask.long())
        queries = self.query_embeds[task].weight.unsqueeze(0).repeat(memories[0].shape[0], 1, 1)  # B,Q,W
        hs = self.decoder(inputs_embeds=torch.zeros_like(queries), encoder_hidden_states=torch.cat(memories, 1),
                          encoder_attention_mask=torch.cat(masks, 1),
                          spatial_position_embeddings=torch.cat(positions, 1),
                          object_queries_position_embeddings=queries).last_hidden_state  # B,Q,W
        if task in self.class_embeds:
            return self.class_embeds[task](hs), self.bbox_embeds[task](hs)
        return (self.classifiers[task](hs[:, 0]),)


def unit() -> nn.Module:
    """The canonical UniT (shared decoder, 8 datasets, no task embeddings)."""
    return UniTReference()


def tiny_unit() -> UniTReference:
    """specs/unit.yaml's tiny variant as the reference composition."""
    backbone = tf.ResNetConfig(embedding_size=4, hidden_sizes=[8, 16], depths=[1, 1], layer_type="bottleneck",
                               out_features=["stage2"])
    bert = tf.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=8)
    decoder = {"d_model": 12, "decoder_layers": 2, "decoder_attention_heads": 2, "decoder_ffn_dim": 24}
    return UniTReference(decoder, bert, {"coco": 4, "visual_genome": 6},
                         {"vqa2": 10, "snli_ve": 3, "qnli": 2, "mnli": 3, "qqp": 2, "sst2": 2},
                         {"coco": 5, "visual_genome": 5, **dict.fromkeys(CLASSIFICATION, 3)}, backbone=backbone,
                         d_model=8, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=16)
