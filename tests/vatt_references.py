"""Reference towers of specs/vatt.yaml (FM-04), rebuilt with plain torch.nn from the official VATT configurations
(google-research vatt: ViTx3D video and WaT waveform Transformers, the T5-small text model over frozen word2vec
vectors, the FAC bridge heads; TF 2, not installable), so that tests/references.py can compare the spec's parameter
count and tests/coverage/test_vatt.py its outputs."""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.t5.modeling_t5 import T5Attention


class Layer(nn.Module):
    """The official pre-norm encoder layer: LN -> MHA (q, k, v, o with biases) -> residual; LN -> GELU MLP."""

    def __init__(self, d: int, heads: int, ff: int, eps: float = 1e-6):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.wi, self.wo = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(x)
        q, k, v = (f(h).unflatten(-1, (self.heads, -1)).transpose(1, 2) for f in (self.q, self.k, self.v))
        scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        a = torch.softmax(scores if bias is None else scores + bias, dim=-1) @ v
        x = x + self.o(a.transpose(1, 2).flatten(2))
        return x + self.wo(nn.functional.gelu(self.wi(self.norm2(x))))


class Tower(nn.Module):
    """ViTx3D (patch [t, h, w] over [B, C, T, H, W]) or WaT (patch [l] over [B, C, L]): voxel/segment projection,
    per-axis position buckets summed and layer-normed, the aggregation token, layers, final LayerNorm."""

    def __init__(self, channels: int, patch: list[int], buckets: list[int], d: int, layers: int, heads: int,
                 ff: int, eps: float = 1e-6):
        super().__init__()
        conv = nn.Conv3d if len(patch) == 3 else nn.Conv1d
        self.voxel_to_patch = conv(channels, d, tuple(patch), stride=tuple(patch))
        self.buckets = nn.ModuleList(nn.Embedding(n, d) for n in buckets)
        self.pos_norm = nn.LayerNorm(d, eps=eps)
        self.agg = nn.Parameter(torch.zeros(d))
        self.layers = nn.ModuleList(Layer(d, heads, ff, eps) for _ in range(layers))
        self.final_norm = nn.LayerNorm(d, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Eval mode (no DropToken); returns all hidden states [B, 1 + N, d] after the final LayerNorm."""
        x = self.voxel_to_patch(x).flatten(2).transpose(1, 2)
        tables = [e.weight for e in self.buckets]
        if len(tables) == 3:
            pos = tables[0][:, None, None] + tables[1][None, :, None] + tables[2][None, None, :]
        else:
            pos = tables[0]
        x = x + self.pos_norm(pos.reshape(-1, x.shape[-1]))
        x = torch.cat([self.agg.expand(x.shape[0], 1, -1), x], dim=1)
        for layer in self.layers:
            x = layer(x)
        return self.final_norm(x)


_SIZES = {"base": (768, 12, 12, 3072), "medium": (1024, 12, 16, 4096), "large": (1024, 24, 16, 4096)}


def video_tower(size: str = "base") -> Tower:
    """ViTx3D at 32 x 224 x 224: 4 x 16 x 16 tubes, 8 / 14 / 14 position buckets."""
    return Tower(3, [4, 16, 16], [8, 14, 14], *_SIZES[size])


def audio_tower(size: str = "base") -> Tower:
    """WaT at 3.2 s x 48 kHz: 128-sample segments, 1,200 position buckets."""
    return Tower(1, [128], [1200], *_SIZES[size])


class RMSNorm(nn.Module):
    """The official T5LayerNorm: x * rsqrt(mean(x^2) + eps) * weight (no mean, no bias)."""

    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


class T5Layer(nn.Module):
    """The official text encoder layer (modeling/backbones/text/t5.py): T5LayerNorm -> bias-free MHA without
    1/sqrt(d) scaling, plus the relative position bias -> residual; a Keras LayerNorm (scale and bias) -> bias-free
    Dense, GELU, Dense -> residual."""

    def __init__(self, d: int, heads: int, d_kv: int, ff: int, eps: float = 1e-6):
        super().__init__()
        self.heads = heads
        self.attn_norm, self.ffn_norm = RMSNorm(d, eps), nn.LayerNorm(d, eps=eps)
        self.q, self.k, self.v = (nn.Linear(d, heads * d_kv, bias=False) for _ in range(3))
        self.o = nn.Linear(heads * d_kv, d, bias=False)
        self.wi, self.wo = nn.Linear(d, ff, bias=False), nn.Linear(ff, d, bias=False)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        h = self.attn_norm(x)
        q, k, v = (f(h).unflatten(-1, (self.heads, -1)).transpose(1, 2) for f in (self.q, self.k, self.v))
        a = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1) @ v
        x = x + self.o(a.transpose(1, 2).flatten(2))
        return x + self.wo(nn.functional.gelu(self.wi(self.ffn_norm(x))))


class TextTower(nn.Module):
    """The official LanguageModel with T5Small (configs/text.py): a frozen word2vec table [vocab, 300], the
    aggregation token prepended in that space, pre_proj Dense(300 -> d, no bias, GELU), T5 encoder layers sharing
    one relative position bias table [buckets, heads] (owned by layer 0), final T5LayerNorm; padding (id 0) masked.
    Returns (word states [B, S, d], sentence state [B, d])."""

    def __init__(self, vocab: int = 2**16, dim: int = 300, d: int = 512, layers: int = 6, heads: int = 8,
                 d_kv: int = 64, ff: int = 2048, buckets: int = 32, max_distance: int = 64):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim).requires_grad_(False)
        self.agg = nn.Parameter(torch.zeros(dim))
        self.pre_proj = nn.Linear(dim, d, bias=False)
        self.relative_attention_bias = nn.Embedding(buckets, heads)
        self.buckets, self.max_distance = buckets, max_distance
        self.layers = nn.ModuleList(T5Layer(d, heads, d_kv, ff) for _ in range(layers))
        self.final_norm = RMSNorm(d)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embedding(ids)
        x = torch.cat([self.agg.expand(x.shape[0], 1, -1), x], dim=1)
        keep = torch.cat([torch.ones_like(ids[:, :1]), (ids != 0).long()], dim=1)
        x = nn.functional.gelu(self.pre_proj(x))
        pos = torch.arange(x.shape[1])
        bucket = T5Attention._relative_position_bucket(pos[None, :] - pos[:, None], True, self.buckets,
                                                       self.max_distance)
        bias = self.relative_attention_bias(bucket).permute(2, 0, 1)[None]
        bias = bias + (1.0 - keep[:, None, None, :].float()) * -1e9
        for layer in self.layers:
            x = layer(x, bias)
        x = self.final_norm(x)
        return x[:, 1:], x[:, 0]


def text_tower() -> TextTower:
    """T5Small over 2^16 word2vec vectors of 300 dims, relative buckets 32 up to distance 64."""
    return TextTower()


class FACBridge(nn.Module):
    """The official fine-to-coarse bridge (modeling/heads/bridge.py, configs/head.py FACBridge): video -> va is
    Dense(no bias), then ReluDenseBN with pre-BN (BN, ReLU, Dense(no bias), BN); audio -> va is Dense; the video's va
    embedding -> vat is ReluDenseBN (ReLU, Dense(no bias), BN); text -> vat is Dense. BatchNorm eps 1e-5."""

    def __init__(self, video: int, audio: int = 768, text: int = 512, va: int = 512, vat: int = 256):
        super().__init__()
        self.vid_to_hid = nn.Linear(video, va, bias=False)
        self.hid_to_va = nn.Sequential(nn.BatchNorm1d(va), nn.ReLU(), nn.Linear(va, va, bias=False),
                                       nn.BatchNorm1d(va))
        self.aud_to_va = nn.Linear(audio, va)
        self.va_to_vat = nn.Sequential(nn.ReLU(), nn.Linear(va, vat, bias=False), nn.BatchNorm1d(vat))
        self.txt_to_vat = nn.Linear(text, vat)

    def forward(self, video: torch.Tensor, audio: torch.Tensor, text: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pooled states [B, D] (text [B, K, D]) -> the video-audio and video-text embeddings."""
        video_va = self.hid_to_va(self.vid_to_hid(video))
        return {"video_va": video_va, "audio_va": self.aud_to_va(audio), "video_vt": self.va_to_vat(video_va),
                "text_vt": self.txt_to_vat(text)}


def vatt(video: str = "base") -> nn.Module:
    """VATT-{B,M,L}BS: the video, audio and text towers and the FAC bridge (the NCE temperature is a constant)."""
    return nn.ModuleList([video_tower(video), audio_tower(), text_tower(), FACBridge(_SIZES[video][0])])


class UniversalVATT(nn.Module):
    """The official modality-agnostic backbone (modeling/backbones/unified/uvatt.py, configs/unified.py): per
    modality a raw-to-embedding map (Conv3D / Conv1D voxel and waveform patches, or a frozen word2vec table), a
    Dense(-> d, GELU) pre-projection, position buckets summed and layer-normed, an aggregation token; one shared
    pre-norm Transformer with a final LayerNorm; a Dense(d -> post, GELU) post-projection per modality."""

    def __init__(self, d: int, layers: int, heads: int, ff: int, post: int = 1024, video: tuple = (3, [4, 16, 16]),
                 video_buckets: tuple = (8, 14, 14), audio: tuple = (1, [128]), audio_buckets: int = 1200,
                 vocab: int = 2**16, dim: int = 300, text_buckets: int = 16, eps: float = 1e-6):
        super().__init__()
        channels, patch = video
        self.raw = nn.ModuleDict({
            "video": nn.Conv3d(channels, d, tuple(patch), stride=tuple(patch)),
            "audio": nn.Conv1d(audio[0], d, tuple(audio[1]), stride=tuple(audio[1])),
            "text": nn.Embedding(vocab, dim).requires_grad_(False)})
        self.pre_proj = nn.ModuleDict({"video": nn.Linear(d, d), "audio": nn.Linear(d, d), "text": nn.Linear(dim, d)})
        self.buckets = nn.ModuleDict({
            "video": nn.ModuleList(nn.Embedding(n, d) for n in video_buckets),
            "audio": nn.ModuleList([nn.Embedding(audio_buckets, d)]),
            "text": nn.ModuleList([nn.Embedding(text_buckets, d)])})
        self.pos_norm = nn.ModuleDict({m: nn.LayerNorm(d, eps=eps) for m in ("video", "audio", "text")})
        self.agg = nn.ParameterDict({m: nn.Parameter(torch.zeros(d)) for m in ("video", "audio", "text")})
        self.layers = nn.ModuleList(Layer(d, heads, ff, eps) for _ in range(layers))
        self.final_norm = nn.LayerNorm(d, eps=eps)
        self.post_proj = nn.ModuleDict({m: nn.Linear(d, post) for m in ("video", "audio", "text")})

    def forward(self, modality: str, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple:
        """Eval mode: video [B, C, T, H, W], audio [B, C, L] or ids [B, S] (with their keep-mask) -> (the shared
        Transformer's states [B, 1 + N, d], the pooled post-projection [B, post])."""
        x = self.raw[modality](x)
        x = x.flatten(2).transpose(1, 2) if modality != "text" else x
        x = nn.functional.gelu(self.pre_proj[modality](x))
        tables = [e.weight for e in self.buckets[modality]]
        pos = tables[0][:, None, None] + tables[1][None, :, None] + tables[2][None, None, :] if len(tables) == 3 \
            else tables[0]
        x = x + self.pos_norm[modality](pos.reshape(-1, x.shape[-1]))
        x = torch.cat([self.agg[modality].expand(x.shape[0], 1, -1), x], dim=1)
        bias = None
        if mask is not None:
            keep = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
            bias = (1.0 - keep[:, None, None, :].float()) * -1e9
        for layer in self.layers:
            x = layer(x, bias)
        x = self.final_norm(x)
        return x, nn.functional.gelu(self.post_proj[modality](x[:, 0]))


_MA_SIZES = {"base": (768, 12, 12, 3072), "medium": (1024, 12, 16, 4096), "large": (1024, 24, 16, 4096)}


def vatt_ma(size: str = "medium") -> nn.Module:
    """VATT-MA-{Base,Medium,Large} (configs/multimodal.py UnifiedTxFACModel: UniTMedium and the FAC bridge over the
    1024-d post-projections)."""
    return nn.ModuleList([UniversalVATT(*_MA_SIZES[size]), FACBridge(1024, 1024, 1024)])
