"""OFA's model rebuilt from torch.nn with the official code's structure, sizes and parameter names (OFA-Sys/OFA:
models/ofa/ofa.py, unify_transformer.py, unify_transformer_layer.py, unify_multihead_attention.py, resnet.py),
for parameter counts and output parity; the official model needs fairseq and the authors' fork, nothing pip
installs. It follows fairseq's conventions on purpose, unlike specs/ofa.yaml's modules: [T, B, C] activations,
bmm attention over B*H rows with -inf key padding, the full [M, M] text bucket table and the [G*G+1, G*G+1] image
bucket table gathered at the patches' grid ids, biases added into slices of a cloned absolute bias. Inference
only (dropout, stochastic depth and patch sampling are training-time); decoding either text (no code_masks) or
image codes (code_masks everywhere, text-to-image generation), from an encoder with or without an image."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

VOCAB = 4 + 50_260 + 1 + 8_192 + 1_000
"""fairseq specials + GPT-2 BPE dict.txt + <mask> + image codes + location bins (tasks/ofa_task.py)."""


@dataclass(frozen=True)
class OFAConfig:
    """ofa_*_architecture defaults with the pre-training scripts' flags."""

    embed_dim: int = 768
    ffn_dim: int = 3072
    encoder_layers: int = 6
    decoder_layers: int = 6
    heads: int = 12
    resnet_layers: tuple[int, int, int] = (3, 4, 23)
    vocab: int = VOCAB
    max_positions: int = 1024
    token_bucket_size: int = 256
    image_bucket_size: int = 42
    attn_scale_factor: float = 2.0
    padding_idx: int = 1
    code_image_size: int = 128


SIZES = {  # the paper's Table 1, in models/ofa/ofa.py's architecture functions
    "ofa_tiny": OFAConfig(256, 1024, 4, 4, 4, (3, 4, 6)),
    "medium": OFAConfig(512, 2048, 4, 4, 8, (3, 4, 23)),
    "base": OFAConfig(768, 3072, 6, 6, 12, (3, 4, 23)),
    "large": OFAConfig(1024, 4096, 12, 12, 16, (3, 8, 36)),
    "huge": OFAConfig(1280, 5120, 24, 12, 16, (3, 8, 36)),
}


def token_bucket_positions(bucket_size: int, max_position: int) -> torch.Tensor:
    """make_token_bucket_position: [M, M] bucket of query i against key j."""
    rel = torch.arange(max_position)[:, None] - torch.arange(max_position)[None, :]
    mid = bucket_size // 2
    abs_pos = torch.where((rel < mid) & (rel > -mid), mid - 1, rel.abs())
    log_pos = torch.ceil(torch.log(abs_pos / mid) / math.log((max_position - 1) / mid) * (mid - 1)) + mid
    return torch.where(abs_pos.le(mid), rel, log_pos.int() * torch.sign(rel)).long() + bucket_size - 1


def image_bucket_positions(bucket_size: int) -> torch.Tensor:
    """make_image_bucket_position: [G*G+1, G*G+1], row/column 0 the (unused here) class entries."""
    num = (2 * bucket_size - 1) ** 2 + 3
    rows, cols = torch.meshgrid(torch.arange(bucket_size), torch.arange(bucket_size), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()])
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + bucket_size - 1
    index = torch.zeros((bucket_size * bucket_size + 1,) * 2, dtype=torch.long)
    index[1:, 1:] = rel[:, :, 0] * (2 * bucket_size - 1) + rel[:, :, 1]
    index[0, :], index[:, 0], index[0, 0] = num - 3, num - 2, num - 1
    return index


class Bottleneck(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu((x if self.downsample is None else self.downsample(x)) + out)


class ResNet(nn.Module):
    """models/ofa/resnet.py: the torchvision stem and layer1..layer3 of Bottlenecks (planes 64/128/256 x 4)."""

    def __init__(self, layers: tuple[int, ...], stem: int = 64, planes: tuple[int, ...] = (64, 128, 256)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        inplanes = stem
        for i, (n, p) in enumerate(zip(layers, planes, strict=True)):
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(inplanes, p, 2 if i and not j else 1))
                inplanes = p * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.out_channels = inplanes

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        return self.layer3(self.layer2(self.layer1(x)))


class MultiheadAttention(nn.Module):
    """unify_multihead_attention.MultiheadAttention with scale_heads (c_attn) and attn_bias."""

    def __init__(self, dim: int, heads: int, scale_factor: float):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scaling = float(self.head_dim * scale_factor) ** -0.5
        self.c_attn = nn.Parameter(torch.ones(heads))
        self.k_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.q_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, query, key, key_padding_mask=None, attn_bias=None, attn_mask=None):
        tgt, bsz, dim = query.shape
        src = key.shape[0]
        q = (self.q_proj(query) * self.scaling).view(tgt, bsz * self.heads, -1).transpose(0, 1)
        k = self.k_proj(key).view(src, bsz * self.heads, -1).transpose(0, 1)
        v = self.v_proj(key).view(src, bsz * self.heads, -1).transpose(0, 1)
        w = torch.bmm(q, k.transpose(1, 2))
        if attn_bias is not None:
            w = w + attn_bias
        if attn_mask is not None:
            w = w + attn_mask.unsqueeze(0)
        if key_padding_mask is not None:
            w = w.view(bsz, self.heads, tgt, src).masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
            w = w.view(bsz * self.heads, tgt, src)
        attn = torch.bmm(F.softmax(w, dim=-1), v).transpose(0, 1).reshape(tgt, bsz, self.heads, self.head_dim)
        attn = torch.einsum("tbhd,h->tbhd", attn, self.c_attn).reshape(tgt, bsz, dim)
        return self.out_proj(attn)


class EncoderLayer(nn.Module):
    """TransformerEncoderLayer, normalize_before, scale_attn (attn_ln), scale_fc (ffn_layernorm)."""

    def __init__(self, c: OFAConfig):
        super().__init__()
        d = c.embed_dim
        self.self_attn = MultiheadAttention(d, c.heads, c.attn_scale_factor)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, c.ffn_dim), nn.Linear(c.ffn_dim, d)
        self.attn_ln = nn.LayerNorm(d)
        self.ffn_layernorm = nn.LayerNorm(c.ffn_dim)
        self.final_layer_norm = nn.LayerNorm(d)

    def ffn(self, x):
        return x + self.fc2(self.ffn_layernorm(F.gelu(self.fc1(self.final_layer_norm(x)))))

    def forward(self, x, padding_mask, bias):
        h = self.self_attn_layer_norm(x)
        x = x + self.attn_ln(self.self_attn(h, h, padding_mask, bias))
        return self.ffn(x)


class DecoderLayer(EncoderLayer):
    """TransformerDecoderLayer: self-attention (self_attn_ln), encoder_attn (cross_attn_ln), feed-forward."""

    def __init__(self, c: OFAConfig):
        super().__init__(c)
        d = c.embed_dim
        del self.attn_ln
        self.self_attn_ln, self.cross_attn_ln = nn.LayerNorm(d), nn.LayerNorm(d)
        self.encoder_attn = MultiheadAttention(d, c.heads, c.attn_scale_factor)
        self.encoder_attn_layer_norm = nn.LayerNorm(d)

    def forward(self, x, enc, enc_padding, self_mask, self_padding, self_bias, cross_bias):
        h = self.self_attn_layer_norm(x)
        x = x + self.self_attn_ln(self.self_attn(h, h, self_padding, self_bias, self_mask))
        h = self.encoder_attn_layer_norm(x)
        x = x + self.cross_attn_ln(self.encoder_attn(h, enc, enc_padding, cross_bias))
        return self.ffn(x)


def _rel_tables(c: OFAConfig, layers: int) -> tuple[nn.ModuleList, nn.ModuleList]:
    token = nn.ModuleList(nn.Embedding(2 * c.token_bucket_size - 1, c.heads) for _ in range(layers))
    image = nn.ModuleList(nn.Embedding((2 * c.image_bucket_size - 1) ** 2 + 3, c.heads) for _ in range(layers))
    return token, image


class Encoder(nn.Module):
    def __init__(self, c: OFAConfig, embed_tokens: nn.Embedding, resnet: ResNet):
        super().__init__()
        d = c.embed_dim
        self.c = c
        self.embed_tokens = embed_tokens
        self.layernorm_embedding = nn.LayerNorm(d)
        self.type_embedding = nn.Embedding(2, d)
        self.embed_images = resnet
        self.image_proj = nn.Linear(resnet.out_channels, d)
        self.patch_layernorm_embedding = nn.LayerNorm(d)
        self.embed_positions = nn.Embedding(c.max_positions + 2, d)
        self.embed_image_positions = nn.Embedding(c.image_bucket_size**2 + 1, d)
        self.pos_ln, self.image_pos_ln = nn.LayerNorm(d), nn.LayerNorm(d)
        self.pos_scaling = float(d / c.heads * c.attn_scale_factor) ** -0.5
        self.pos_q_linear, self.pos_k_linear = nn.Linear(d, d), nn.Linear(d, d)
        self.layers = nn.ModuleList(EncoderLayer(c) for _ in range(c.encoder_layers))
        self.layer_norm = nn.LayerNorm(d)
        self.token_rel_pos_table_list, self.image_rel_pos_table_list = _rel_tables(c, c.encoder_layers)
        self.register_buffer("token_rp_bucket", token_bucket_positions(c.token_bucket_size, c.max_positions))
        self.register_buffer("image_rp_bucket", image_bucket_positions(c.image_bucket_size))

    def forward(self, src_tokens, patch_images=None):
        """-> (encoder_out [L, B, D], padding mask [B, L], LayerNormed position embeddings [B, L, D])."""
        c, bsz, s = self.c, src_tokens.shape[0], src_tokens.shape[1]
        padding = src_tokens.eq(c.padding_idx)
        pos = self.pos_ln(self.embed_positions(torch.arange(s)[None, :].expand(bsz, s)))
        x = self.layernorm_embedding(self.embed_tokens(src_tokens) + self.type_embedding(src_tokens.new_zeros(bsz, s)))
        n = 0
        if patch_images is not None:
            image = self.embed_images(patch_images)
            h, w = image.shape[-2:]
            n = h * w
            image_ids = (torch.arange(w)[None, :] + torch.arange(h)[:, None] * c.image_bucket_size + 1).view(-1)
            image_ids = image_ids[None, :].expand(bsz, n)
            image_x = self.image_proj(image.flatten(2).transpose(1, 2))
            image_x = image_x + self.type_embedding(src_tokens.new_ones(bsz, n))
            x = torch.cat([self.patch_layernorm_embedding(image_x), x], dim=1)
            padding = torch.cat([src_tokens.new_zeros(bsz, n).bool(), padding], dim=1)
            pos = torch.cat([self.image_pos_ln(self.embed_image_positions(image_ids)), pos], dim=1)
            image_bucket = self.image_rp_bucket[image_ids[0]][:, image_ids[0]]
        x = (x * (1 - padding.unsqueeze(-1).type_as(x))).transpose(0, 1)
        length = pos.shape[1]
        pos_q = self.pos_q_linear(pos).view(bsz, length, c.heads, -1).transpose(1, 2) * self.pos_scaling
        pos_k = self.pos_k_linear(pos).view(bsz, length, c.heads, -1).transpose(1, 2)
        abs_bias = torch.matmul(pos_q, pos_k.transpose(2, 3))
        for idx, layer in enumerate(self.layers):
            bias = abs_bias.clone()
            token = F.embedding(self.token_rp_bucket[:s, :s], self.token_rel_pos_table_list[idx].weight)
            bias[:, :, -s:, -s:] += token.permute(2, 0, 1)
            if n:
                image_rel = F.embedding(image_bucket, self.image_rel_pos_table_list[idx].weight)
                bias[:, :, :n, :n] += image_rel.permute(2, 0, 1)
            x = layer(x, padding if padding.any() else None, bias.reshape(-1, length, length))
        return self.layer_norm(x), padding, pos


class Decoder(nn.Module):
    def __init__(self, c: OFAConfig, embed_tokens: nn.Embedding):
        super().__init__()
        d = c.embed_dim
        self.c = c
        self.embed_tokens = embed_tokens
        self.layernorm_embedding = nn.LayerNorm(d)
        self.embed_positions = nn.Embedding(c.max_positions + 2, d)
        self.embed_image_positions = nn.Embedding(c.image_bucket_size**2 + 1, d)
        self.pos_ln, self.image_pos_ln = nn.LayerNorm(d), nn.LayerNorm(d)
        self.pos_scaling = float(d / c.heads * c.attn_scale_factor) ** -0.5
        self.self_pos_q_linear, self.self_pos_k_linear = nn.Linear(d, d), nn.Linear(d, d)
        self.cross_pos_q_linear, self.cross_pos_k_linear = nn.Linear(d, d), nn.Linear(d, d)
        self.code_layernorm_embedding = nn.LayerNorm(d)
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c.decoder_layers))
        self.layer_norm = nn.LayerNorm(d)
        self.output_projection = nn.Linear(d, c.vocab, bias=False)
        self.output_projection.weight = embed_tokens.weight
        self.token_rel_pos_table_list, self.image_rel_pos_table_list = _rel_tables(c, c.decoder_layers)
        self.register_buffer("token_rp_bucket", token_bucket_positions(c.token_bucket_size, c.max_positions))
        self.register_buffer("image_rp_bucket", image_bucket_positions(c.image_bucket_size))
        window = c.code_image_size // 8
        grid = (torch.arange(window)[None, :] + torch.arange(window)[:, None] * c.image_bucket_size + 1).view(-1)
        self.register_buffer("image_position_idx", torch.cat([torch.tensor([0]), grid, torch.tensor([1024] * 769)]))

    def _pos_bias(self, q_linear, k_linear, tgt_pos, src_pos):
        bsz, t, s = tgt_pos.shape[0], tgt_pos.shape[1], src_pos.shape[1]
        q = q_linear(tgt_pos).view(bsz, t, self.c.heads, -1).transpose(1, 2) * self.pos_scaling
        k = k_linear(src_pos).view(bsz, s, self.c.heads, -1).transpose(1, 2)
        return torch.matmul(q, k.transpose(2, 3))

    def forward(self, prev_output_tokens, encoder_out, encoder_padding, encoder_pos, code_masks: bool = False):
        """Logits [B, T, V]; `code_masks`: every target token is an image code."""
        c, (bsz, t) = self.c, prev_output_tokens.shape
        if code_masks:
            image_idx = self.image_position_idx[:t][None, :].expand(bsz, t)
            tgt_pos = self.image_pos_ln(self.embed_image_positions(image_idx))
        else:
            tgt_pos = self.pos_ln(self.embed_positions(torch.arange(t)[None, :].expand(bsz, t)))
        self_abs = self._pos_bias(self.self_pos_q_linear, self.self_pos_k_linear, tgt_pos, tgt_pos)
        cross = self._pos_bias(self.cross_pos_q_linear, self.cross_pos_k_linear, tgt_pos, encoder_pos)
        cross = cross.reshape(-1, t, encoder_pos.shape[1])
        norm = self.code_layernorm_embedding if code_masks else self.layernorm_embedding
        x = norm(self.embed_tokens(prev_output_tokens)).transpose(0, 1)
        padding = prev_output_tokens.eq(c.padding_idx)
        future = torch.triu(torch.full((t, t), float("-inf")), 1)
        for idx, layer in enumerate(self.layers):
            if code_masks:
                idx_t = self.image_position_idx[:t]
                rel = F.embedding(self.image_rp_bucket[idx_t][:, idx_t], self.image_rel_pos_table_list[idx].weight)
            else:
                rel = F.embedding(self.token_rp_bucket[:t, :t], self.token_rel_pos_table_list[idx].weight)
            bias = (self_abs + rel.permute(2, 0, 1).unsqueeze(0)).reshape(-1, t, t)
            x = layer(x, encoder_out, encoder_padding if encoder_padding.any() else None, future,
                      padding if padding.any() else None, bias, cross)
        return self.output_projection(self.layer_norm(x).transpose(0, 1))


class OFAModel(nn.Module):
    """encoder + decoder sharing one token table (share_all_embeddings), tied output projection."""

    def __init__(self, c: OFAConfig, resnet: ResNet | None = None):
        super().__init__()
        embed_tokens = nn.Embedding(c.vocab, c.embed_dim, padding_idx=c.padding_idx)
        self.encoder = Encoder(c, embed_tokens, resnet or ResNet(c.resnet_layers))
        self.decoder = Decoder(c, embed_tokens)

    def forward(self, src_tokens, patch_images, prev_output_tokens, code_masks: bool = False):
        """Logits [B, T, V] of a teacher-forced target (image codes with `code_masks`)."""
        enc, padding, pos = self.encoder(src_tokens, patch_images)
        return self.decoder(prev_output_tokens, enc, padding, pos, code_masks)
