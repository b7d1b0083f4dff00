"""ADM U-Net denoiser (Dhariwal & Nichol 2021; unconditional or class-conditional) with GLIDE's text conditioning
(Nichol et al. 2022): noisy image and timestep in, the predicted noise (and the learned-variance interpolation)
out; optional class label, GLIDE text transformer, unCLIP's CLIP-embedding conditioning (the DALL-E 2 / Karlo
decoder), a frozen text encoder's states (Imagen's base U-Net as NeMo builds it), low-resolution image (GLIDE's and
unCLIP's upsamplers) and inpainting image + mask (GLIDE inpainting), composed from `mmspec.blocks.adm`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmspec.components.common import mask_of, require, sequence_of
from mmspec.registry import Example, register
from mmspec.spec.base import ComponentConfig, PositiveFloat, PositiveInt, Probability, Ref
from mmspec.spec.layout import Rule
from mmspec.spec.tensors import Bundle, CheckError, TensorInfo

_X_T = {"x_t": {"type": "image", "channels": 3, "height": 8, "width": 8},
        "t": {"type": "scalar", "dtype": "int64", "high": 1000}}
_TINY = {"width": 4, "mult": [1, 2], "depth": 1, "attention": [False, True], "head_dim": 4, "groups": 2}
_TEXT = {"type": "tokens", "vocab_size": 11, "length": 3, "mask": True}
ADM_UNET_EXAMPLES = (
    Example(_X_T, {"input": "x_t", "timestep": "t", **_TINY, "learn_sigma": False}, name="unconditional"),
    Example({**_X_T, "text": _TEXT},
            {"input": "x_t", "timestep": "t", "text": "text", **_TINY, "text_width": 4, "text_layers": 1,
             "text_heads": 2}, name="glide"),
    Example({**_X_T, "text": _TEXT, "image": {"type": "image", "channels": 3, "height": 8, "width": 8},
             "mask": {"type": "image", "channels": 1, "height": 8, "width": 8}},
            {"input": "x_t", "timestep": "t", "text": "text", "inpaint_image": "image", "inpaint_mask": "mask",
             **_TINY, "text_width": 4, "text_layers": 1, "text_heads": 2, "text_padding": False}, name="inpaint"),
    Example({**_X_T, "low": {"type": "image", "channels": 3, "height": 4, "width": 4}},
            {"input": "x_t", "timestep": "t", "low_res": "low", **_TINY}, name="upsampler"),
    Example({**_X_T, "image_embed": {"type": "vector", "dim": 6}, "text_embed": {"type": "vector", "dim": 6},
             "states": {"type": "sequence", "dim": 6, "length": 3}, "text": _TEXT},
            {"input": "x_t", "timestep": "t", "image_embed": "image_embed", "text_embed": "text_embed",
             "text_states": "states", "text_mask": "text", "context_width": 8, "context_tokens": 2, **_TINY},
            name="unclip_decoder"),
    Example({**_X_T, "low": {"type": "image", "channels": 3, "height": 4, "width": 4}},
            {"input": "x_t", "timestep": "t", "low_res": "low", "low_res_resize": "bicubic", **_TINY,
             "attention": [False, False], "middle_attention": False, "scale_shift": False, "learn_sigma": False},
            name="unclip_upsampler"),
    Example({**_X_T, "states": {"type": "sequence", "dim": 6, "length": 3}, "text": _TEXT},
            {"input": "x_t", "timestep": "t", "context": "states", "context_mask": "text", "context_width": 4,
             **_TINY, "resample": "conv", "attention_norms": "separate", "learn_sigma": False, "dropout": 0.0},
            name="imagen"),
    Example({**_X_T, "y": {"type": "scalar", "dtype": "int64", "high": 5}},
            {"input": "x_t", "timestep": "t", "label": "y", "classes": 5, **_TINY}, name="class_conditional"),
)


_ATTENTION = (("group_norm", "norm"), ("to_q", "attn.q"), ("to_k", "attn.k"), ("to_v", "attn.v"),
              ("to_out.0", "attn.out"), ("add_k_proj", "add_k_proj"), ("add_v_proj", "add_v_proj"))
"""diffusers SimpleCrossAttn (AttnAddedKVProcessor) names -> TextAttention's."""


def diffusers_rules(mult: list[int], depth: int, attention: list[bool], middle_attention: bool) -> tuple[Rule, ...]:
    """diffusers UNet2DConditionModel (SimpleCrossAttn / ResnetDownsample / ResnetUpsample blocks) or UNet2DModel
    names -> the ADM U-Net's, whose input and output blocks are numbered through the levels; UnCLIPTextProjModel's
    tensors under `text_proj.`."""
    rules: list[Rule] = []

    def attend(src: str, dst: str) -> None:
        rules.extend(Rule(f"{src}.{a}.{{p}}", f"{dst}.1.{b}.{{p}}") for a, b in _ATTENTION)

    levels = len(mult)
    for level in range(levels):
        for j in range(depth):
            i = 1 + level * (depth + 1) + j
            rules.append(Rule(f"down_blocks.{level}.resnets.{j}.{{rest*}}", f"input_blocks.{i}.0.{{rest*}}"))
            if attention[level]:
                attend(f"down_blocks.{level}.attentions.{j}", f"input_blocks.{i}")
        if level < levels - 1:
            i = 1 + level * (depth + 1) + depth
            rules.append(Rule(f"down_blocks.{level}.downsamplers.0.{{rest*}}", f"input_blocks.{i}.0.{{rest*}}"))
    rules.append(Rule("mid_block.resnets.0.{rest*}", "middle_block.0.{rest*}"))
    if middle_attention:
        rules.extend(Rule(f"mid_block.attentions.0.{a}.{{p}}", f"middle_block.1.{b}.{{p}}") for a, b in _ATTENTION)
    rules.append(Rule("mid_block.resnets.1.{rest*}", f"middle_block.{1 + middle_attention}.{{rest*}}"))
    for u in range(levels):
        level = levels - 1 - u
        for j in range(depth + 1):
            i = u * (depth + 1) + j
            rules.append(Rule(f"up_blocks.{u}.resnets.{j}.{{rest*}}", f"output_blocks.{i}.0.{{rest*}}"))
            if attention[level]:
                attend(f"up_blocks.{u}.attentions.{j}", f"output_blocks.{i}")
        if level:
            i = u * (depth + 1) + depth
            rules.append(Rule(f"up_blocks.{u}.upsamplers.0.{{rest*}}",
                              f"output_blocks.{i}.{1 + attention[level]}.{{rest*}}"))
    rules += [Rule("conv_in.{p}", "input_blocks.0.0.{p}"), Rule("conv_norm_out.{p}", "out_norm.{p}"),
              Rule("conv_out.{p}", "out_conv.{p}"), Rule("time_embedding.{rest*}", "time_embedding.{rest*}"),
              Rule("text_proj.{rest*}", "unclip.{rest*}")]
    return tuple(rules)


def check_levels(config, inputs: dict[str, Bundle]) -> list[int]:
    """The shape rules the ADM U-Net and its classifier share: one timestep per example, one attention flag per
    level, GroupNorm groups and head_dim dividing every level's width; returns the widths."""
    t = next(iter(inputs["timestep"].values())) if len(inputs["timestep"]) == 1 else None
    if t is None or t.rank != 1:
        raise CheckError("timestep", f"{config.timestep!r} must be one timestep per example [batch] (a scalar "
                                     f"modality)")
    if len(config.attention) != len(config.mult):
        raise CheckError("attention", f"has {len(config.attention)} entries for {len(config.mult)} levels (mult); "
                                      f"give one true/false per level")
    widths = [config.width * m for m in config.mult]
    bad = [c for c in widths if c % config.groups]
    if bad:
        raise CheckError("groups", f"{config.groups} GroupNorm groups do not divide the widths {bad}")
    if any(c % config.head_dim for c in widths):
        raise CheckError("head_dim", f"head_dim {config.head_dim} must divide every level's width {widths}")
    return widths


def conv_params(cin: int, cout: int, kernel: int) -> int:
    return cin * cout * kernel * kernel + cout


def resnet_params(cin: int, cout: int, temb: int, scale_shift: bool = True) -> int:
    """Residual block: two GroupNorms, two 3x3 convs, the time projection (to 2 * cout with scale-shift, else
    cout) and a 1x1 shortcut when the width changes."""
    shortcut = conv_params(cin, cout, 1) if cin != cout else 0
    t = 2 * cout if scale_shift else cout
    return 2 * cin + conv_params(cin, cout, 3) + temb * t + t + 2 * cout + conv_params(cout, cout, 3) + shortcut


def attention_params(c: int, context: int | None, separate_norms: bool = False, pixel_kv: bool = True) -> int:
    """blocks.adm.TextAttention: GroupNorm, q/k/v/out projections and, with a text width, its key/value projection
    to 2c; `separate_norms` adds the pixels' key/value GroupNorm and the context's; without `pixel_kv` k/v read the
    context and there is no extra projection or pixel GroupNorm."""
    if not pixel_kv:
        return 2 * c + 2 * (c * c + c) + 2 * (context * c + c) + (2 * context if separate_norms else 0)
    norms = 2 * c + (2 * context if context else 0) if separate_norms else 0
    return 2 * c + 4 * (c * c + c) + (2 * c * context + 2 * c if context else 0) + norms


def imagen_params(dim: int, width: int, temb: int, pooling: str = "attention", null_token: bool = False) -> int:
    """blocks.adm.ImagenConditioning: the context projection, the pooling score, LayerNorm and projection (attention
    pooling), the MLP to temb and the null token."""
    pool = dim + 1 + 2 * dim + dim * width + width if pooling == "attention" else 0
    return dim * width + width + pool + 2 * width + (width * temb + temb) + (temb * temb + temb) + null_token * width


@register("encoders", examples=ADM_UNET_EXAMPLES)
class ADMUNetEncoder(ComponentConfig):
    """Noisy image x_t [batch, C, H, W] and timestep [batch] -> `eps` [batch, C, H, W] and, with `learn_sigma`,
    `variance` [batch, C, H, W] (the interpolation between the posterior's beta-tilde and beta in log space).
    Timestep sinusoid (width channels, cos first) -> Linear -> SiLU -> Linear (4 * width); with `text`, GLIDE's
    transformer over the tokens (padding positions replaced by learned per-position embeddings) whose last state
    is projected and added to the time embedding, and whose every state is projected into keys and values placed
    before the pixels' own in every attention layer. Per level `depth` scale-shift residual blocks (each followed by
    an attention where `attention` says so), a residual block with 2x2 average pooling between levels; a middle
    block (resnet, attention, resnet); the mirrored up path (depth + 1 blocks on the concatenated skip states, a
    residual block with nearest x2 upsampling between levels); GroupNorm, SiLU and a 3x3 conv out. With
    `image_embed` (unCLIP's decoder) the CLIP embeddings condition it in place of GLIDE's transformer; unCLIP's
    upsamplers drop the attention (`attention` all false, `middle_attention: false`) and add the time embedding
    (`scale_shift: false`). With `context` (Imagen's base U-Net as NVIDIA NeMo's UNetModel builds it) a frozen text
    encoder's states condition it: projected to `context_width` as every attention's extra keys and values, and
    attention-pooled into the time embedding; Imagen's U-Net also takes `resample: conv` and
    `attention_norms: separate`."""

    type: Literal["adm_unet"]
    input: Ref
    """The noisy image x_t (an image modality)."""
    timestep: Ref
    """The diffusion timestep, one per example (a scalar modality)."""
    label: Ref | None = None
    """A class label per example (an int64 scalar modality, values 0..classes-1): ADM's class-conditional model
    adds its learned embedding to the time embedding."""
    classes: PositiveInt = 1000
    """Number of classes of `label` (ImageNet: 1000)."""
    text: Ref | None = None
    """Caption tokens [batch, S] of a fixed length (a tokens modality; its mask marks the padding)."""
    low_res: Ref | None = None
    """A low-resolution image, bilinearly resized to x_t's size and concatenated on the channels (GLIDE's
    upsampler)."""
    inpaint_image: Ref | None = None
    """The image to inpaint; concatenated times the mask, then the mask (GLIDE inpainting; needs inpaint_mask)."""
    inpaint_mask: Ref | None = None
    """[batch, 1, H, W], 1 where the image is kept."""
    width: PositiveInt = 192
    """Base channels (ADM `model_channels`)."""
    mult: list[PositiveInt] = Field(default=[1, 2, 3, 4], min_length=1)
    """Channel multiplier per level, full resolution first."""
    depth: PositiveInt = 3
    """Residual blocks per down level (`num_res_blocks`); up levels have one more."""
    attention: list[bool] = [False, True, True, True]
    """Per level: attention after each residual block; GLIDE at 32, 16 and 8 pixels of 64."""
    head_dim: PositiveInt = 64
    """Attention head width (`num_head_channels`)."""
    groups: PositiveInt = 32
    """Groups of the GroupNorm layers; they divide every level's channels."""
    eps: PositiveFloat = 1e-5
    dropout: Probability = 0.1
    learn_sigma: bool = True
    """Predict 2C channels: the noise and the learned-variance interpolation (improved DDPM)."""
    text_width: PositiveInt = 512
    """Width of the caption transformer (`xf_width`)."""
    text_layers: PositiveInt = 16
    """Layers of the caption transformer (`xf_layers`)."""
    text_heads: PositiveInt = 8
    """Attention heads of the caption transformer (`xf_heads`)."""
    text_padding: bool = True
    """Replace padding positions by learned per-position embeddings (GLIDE's xf_padding)."""
    image_embed: Ref | None = None
    """unCLIP: the CLIP image embedding [batch, E] (a vector); with it, `text_embed`, `text_states` and `text_mask`
    condition the U-Net as Karlo's decoder (diffusers UnCLIPTextProjModel): both embeddings projected and added to
    the time embedding, `context_tokens` tokens projected from the image embedding before the caption's projected,
    layer-normed token states as every attention's extra keys and values (the caption's padding masked). An
    all-zero image embedding row is the null condition: the learned classifier-free guidance embedding replaces
    it."""
    text_embed: Ref | None = None
    """unCLIP: the caption's CLIP text embedding [batch, E]."""
    text_states: Ref | None = None
    """unCLIP: the caption's CLIP token states [batch, S, E]."""
    text_mask: Ref | None = None
    """unCLIP: the caption's tokens modality; its `mask` [batch, S] (1 = token) hides the padding."""
    context: Ref | None = None
    """Imagen: a text encoder's token states [batch, S, D] (e.g. `t5.sequence`; NeMo's `text_embed`). Their padding
    is zeroed (as NeMo's T5 wrapper does), they are projected to `context_width` (`text_to_cond`) as every
    attention's extra keys and values, and their softmax-weighted sum over all S positions (a learned score per
    position; NeMo's SelfAttentionPooling), layer-normed and projected to `context_width`, then LayerNorm, Linear,
    SiLU, Linear to the time embedding's width, is added to the time embedding."""
    context_mask: Ref | None = None
    """Imagen: the context's padding, [batch, S] with 1 = token (a bundle's `mask`, e.g. `t5.mask`); masked keys are
    hidden from the attention and the masked states zeroed."""
    context_width: PositiveInt = 1536
    """unCLIP, Imagen: width of the attention context (diffusers `cross_attention_dim`, NeMo `cond_dim`)."""
    context_tokens: PositiveInt = 4
    """unCLIP: context tokens projected from the image embedding (`clip_extra_context_tokens`)."""
    scale_shift: bool = True
    """Residual blocks scale and shift the normalised activations by the time embedding (ADM's
    use_scale_shift_norm); false adds the projected embedding before the second norm (unCLIP's upsamplers)."""
    middle_attention: bool = True
    """An attention between the middle's two residual blocks (false: unCLIP's upsamplers, add_attention false)."""
    resample: Literal["resblock", "conv"] = "resblock"
    """Between levels: a residual block that average-pools (down) or nearest-upsamples (up) (ADM's
    resblock_updown), or a stride-2 3x3 conv down and a 4x4 stride-2 transposed conv up (NeMo's Imagen U-Net:
    resample_with_conv with learnable upsampling)."""
    attention_norms: Literal["shared", "separate"] = "shared"
    """`separate` (NeMo's FusedCrossAttentionBlock): the pixels' keys and values read a GroupNorm of their own and
    the context is group-normed (over its channels and positions) before its key/value projection; `shared`: one
    GroupNorm before the queries, keys and values (ADM, GLIDE)."""
    low_res_resize: Literal["bilinear", "bicubic"] = "bilinear"
    """How `low_res` is resized to x_t's size: bilinear (GLIDE) or bicubic with antialiasing (unCLIP's pipeline)."""

    weight_layouts = {"diffusers": ()}
    """diffusers UNet2DConditionModel (with UnCLIPTextProjModel's tensors under `text_proj.`) or UNet2DModel, as
    Karlo's decoder and upsamplers (UnCLIPPipeline) are saved; the rules depend on the levels (`weight_rules`)."""

    def weight_rules(self, layout: str) -> tuple[Rule, ...]:
        if layout == "diffusers":
            return diffusers_rules(self.mult, self.depth, self.attention, self.middle_attention)
        return super().weight_rules(layout)

    def references(self) -> dict[str, str]:
        refs = {"input": self.input, "timestep": self.timestep}
        for port in ("text", "label", "low_res", "inpaint_image", "inpaint_mask", "image_embed", "text_embed",
                     "text_states", "text_mask", "context", "context_mask"):
            if getattr(self, port) is not None:
                refs[port] = getattr(self, port)
        return refs

    def _in_channels(self, inputs: dict[str, Bundle]) -> int:
        c = inputs["input"]["pixels"].shape[1]
        extra = inputs["low_res"]["pixels"].shape[1] if "low_res" in inputs else 0
        if "inpaint_image" in inputs:
            extra += inputs["inpaint_image"]["pixels"].shape[1] + 1
        return c + extra

    def _text(self, inputs: dict[str, Bundle], ctx) -> tuple[int, int] | None:
        """(vocabulary, length) of the text tokens."""
        if "text" not in inputs:
            return None
        ids = require(inputs["text"].get("ids"), "text", 2, "tokens")
        length = ids.shape[1]
        if not isinstance(length, int):
            raise CheckError("text", f"{self.text!r} needs a fixed length (the position tables are that long)")
        modality = ctx.spec.modalities.get(self.text.split(".")[0])
        if getattr(modality, "vocab_size", None) is None:
            raise CheckError("text", f"{self.text!r} must be a tokens modality")
        return modality.vocab_size, length

    def _clip(self, inputs: dict[str, Bundle]) -> int | None:
        """unCLIP's CLIP embedding width E (None without `image_embed`)."""
        ports = ("image_embed", "text_embed", "text_states", "text_mask")
        given = [p for p in ports if getattr(self, p) is not None]
        if not given:
            return None
        if len(given) < len(ports):
            missing = [p for p in ports if p not in given]
            raise CheckError(missing[0], f"unCLIP conditioning takes all of {', '.join(ports)}; {missing} missing")
        if self.text is not None:
            raise CheckError("text", "GLIDE's text transformer (text) and unCLIP's conditioning exclude each other")
        image = require(next(iter(inputs["image_embed"].values())), "image_embed", 2, "vector [batch, E]")
        embed = require(next(iter(inputs["text_embed"].values())), "text_embed", 2, "vector [batch, E]")
        states = require(next(iter(inputs["text_states"].values())), "text_states", 3, "sequence [batch, S, E]")
        if not (image.shape[1] == embed.shape[1] == states.shape[2]):
            raise CheckError("image_embed", f"image_embed, text_embed and text_states must share the width E; got "
                                            f"{image.shape[1]}, {embed.shape[1]}, {states.shape[2]}")
        mask = inputs["text_mask"].get("mask")
        if mask is None or mask.shape[1] != states.shape[1]:
            raise CheckError("text_mask", f"{self.text_mask!r} must be a tokens modality with `mask: true` as long "
                                          f"as text_states")
        return image.shape[1]

    def _context(self, inputs: dict[str, Bundle]) -> int | None:
        """Imagen's text state width D (None without `context`)."""
        if self.context is None:
            if self.context_mask is not None:
                raise CheckError("context_mask", "masks the context's keys; give `context` too")
            return None
        if self.text is not None or self.image_embed is not None:
            raise CheckError("context", "the text states (context) exclude GLIDE's text transformer (text) and "
                                        "unCLIP's conditioning (image_embed)")
        _, info = sequence_of(inputs["context"], self.context, "context")
        if self.context_mask is not None:
            mask_of(inputs["context_mask"], self.context_mask, info.shape[1])
        if self.attention_norms == "separate" and self.context_width % self.groups:
            raise CheckError("groups", f"{self.groups} GroupNorm groups do not divide context_width "
                                       f"{self.context_width} (the context's GroupNorm)")
        return info.width

    def infer(self, inputs: dict[str, Bundle], ctx) -> Bundle:
        pixels = require(inputs["input"].get("pixels"), "pixels", 4, "image")
        batch, channels, h, w = pixels.shape
        check_levels(self, inputs)
        if self.text_width % self.text_heads:
            raise CheckError("text_heads", f"{self.text_heads} heads do not divide text_width {self.text_width}")
        if (self.inpaint_image is None) != (self.inpaint_mask is None):
            raise CheckError("inpaint_mask", "inpainting takes both inpaint_image and inpaint_mask")
        if self.inpaint_mask is not None:
            m = require(inputs["inpaint_mask"].get("pixels"), "inpaint_mask", 4, "image")
            im = require(inputs["inpaint_image"].get("pixels"), "inpaint_image", 4, "image")
            if m.shape[1] != 1 or tuple(m.shape[2:]) != (h, w) or tuple(im.shape[2:]) != (h, w):
                raise CheckError("inpaint_mask", f"the mask must be [batch, 1, {h}, {w}] and the image {h}x{w}")
        if self.low_res is not None:
            require(inputs["low_res"].get("pixels"), "low_res", 4, "image")
        if self.label is not None:
            y = next(iter(inputs["label"].values()))
            if y.rank != 1 or y.dtype != "int64":
                raise CheckError("label", f"{self.label!r} must be one int64 class label per example [batch]")
        self._text(inputs, ctx)
        self._clip(inputs)
        self._context(inputs)
        factor = 2 ** (len(self.mult) - 1)
        if not (isinstance(h, int) and isinstance(w, int)) or h % factor or w % factor:
            raise CheckError("mult", f"{len(self.mult)} levels halve the image {len(self.mult) - 1} times, so height "
                                     f"and width must divide by {factor}; {self.input!r} is {h}x{w}")
        out = {"eps": TensorInfo((batch, channels, h, w))}
        return {**out, "variance": TensorInfo((batch, channels, h, w))} if self.learn_sigma else out

    def estimate_params(self, inputs: dict[str, Bundle], ctx) -> int:
        c_out = inputs["input"]["pixels"].shape[1] * (2 if self.learn_sigma else 1)
        widths, depth, temb = [self.width * m for m in self.mult], self.depth, 4 * self.width
        text, d, clip, k = self._text(inputs, ctx), self.text_width, self._clip(inputs), self.context_width
        states = self._context(inputs)
        context = d if text else k if clip or states else None
        separate = self.attention_norms == "separate"
        total = (self.width * temb + temb) + (temb * temb + temb) + conv_params(self._in_channels(inputs), widths[0], 3)
        total += self.classes * temb if self.label is not None else 0
        if clip:  # the null embedding, two projections to temb, the context tokens, the states' projection + norm
            total += clip + 2 * (clip * temb + temb) + (clip * self.context_tokens * k + self.context_tokens * k)
            total += clip * k + k + 2 * k
        total += imagen_params(states, k, temb) if states else 0
        if text:
            vocab, length = text
            block = 4 * (d * d + d) + 2 * 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)
            total += vocab * d + (2 if self.text_padding else 1) * length * d + self.text_layers * block
            total += 2 * d + d * temb + temb
        skips, ch = [widths[0]], widths[0]

        def res(cin: int, cout: int) -> int:
            return resnet_params(cin, cout, temb, self.scale_shift)

        def attn(c: int) -> int:
            return attention_params(c, context, separate)

        conv = self.resample == "conv"
        for level, c in enumerate(widths):
            for _ in range(depth):
                total += res(ch, c) + (attn(c) if self.attention[level] else 0)
                ch = c
                skips.append(c)
            if level < len(widths) - 1:
                total += conv_params(c, c, 3) if conv else res(c, c)
                skips.append(c)
        total += 2 * res(ch, ch) + (attn(ch) if self.middle_attention else 0)
        for level in reversed(range(len(widths))):
            c = widths[level]
            for i in range(depth + 1):
                total += res(ch + skips.pop(), c)
                total += attn(c) if self.attention[level] else 0
                ch = c
                if level and i == depth:
                    total += conv_params(c, c, 4) if conv else res(c, c)
        return total + 2 * ch + conv_params(ch, c_out, 3)

    def build(self, inputs: dict[str, Bundle], ctx):
        from mmspec.components.encoders.adm_unet.module import ADMUNetModule

        channels = inputs["input"]["pixels"].shape[1]
        text = self._text(inputs, ctx)
        text_opts = None if text is None else {
            "vocab": text[0], "length": text[1], "width": self.text_width, "layers": self.text_layers,
            "heads": self.text_heads, "padding": self.text_padding}
        clip = self._clip(inputs)
        unclip = None if clip is None else {"clip_dim": clip, "width": self.context_width,
                                            "tokens": self.context_tokens}
        states = self._context(inputs)
        imagen = None if states is None else {"dim": states, "width": self.context_width}
        field, info = sequence_of(inputs["context"], self.context, "context") if states else (None, None)
        mask = mask_of(inputs["context_mask"], self.context_mask, info.shape[1]) if self.context_mask else None
        return ADMUNetModule(
            channels, self.learn_sigma, self.low_res_resize, self._in_channels(inputs),
            channels * (2 if self.learn_sigma else 1), self.width, self.mult, self.depth, self.attention,
            head_dim=self.head_dim, groups=self.groups, eps=self.eps, dropout=self.dropout, text=text_opts,
            classes=self.classes if self.label else None, unclip=unclip, imagen=imagen, scale_shift=self.scale_shift,
            middle_attention=self.middle_attention, resample=self.resample,
            separate_norms=self.attention_norms == "separate", fields=(field, mask))
