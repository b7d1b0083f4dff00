"""Module behind the `adm_unet` encoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmspec.blocks.adm import ADMUNet


class ADMUNetModule(ADMUNet):
    """The ADM U-Net on a modality's pixels and a timestep, with the optional class label, text tokens (and their
    mask), unCLIP's CLIP embeddings, Imagen's text states (the `fields` = (state, mask) fields of the context and
    context_mask bundles), the resized low-resolution image and the inpainting image and mask concatenated on the
    channels as GLIDE's and unCLIP's super-resolution and GLIDE's inpainting models do; splits the learned-variance
    channels off."""

    def __init__(self, channels: int, learn_sigma: bool, resize: str, *args,
                 fields: tuple[str | None, str | None] = (None, None), **kwargs):
        super().__init__(*args, **kwargs)
        self.channels, self.learn_sigma, self.resize = channels, learn_sigma, resize
        self.fields = fields

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        x = inputs["input"]["pixels"]  # B,C,H,W
        parts = [x]
        if "inpaint_image" in inputs:
            mask = inputs["inpaint_mask"]["pixels"]  # B,1,H,W
            parts += [inputs["inpaint_image"]["pixels"] * mask, mask]  # B,C,H,W; B,1,H,W
        if "low_res" in inputs:
            low = inputs["low_res"]["pixels"]  # B,C,h,w
            parts.append(F.interpolate(low, size=(x.shape[2], x.shape[3]), mode=self.resize, align_corners=False,
                                       antialias=self.resize == "bicubic"))  # B,C,H,W
        t = next(iter(inputs["timestep"].values()))  # B
        text = inputs.get("text", {})
        label = next(iter(inputs["label"].values())) if "label" in inputs else None  # B
        clip, mask, states = None, text.get("mask"), None  # B,S
        if "image_embed" in inputs:
            clip = tuple(next(iter(inputs[p].values())) for p in ("image_embed", "text_embed", "text_states"))
            mask = inputs["text_mask"]["mask"]  # B,S
        if "context" in inputs:
            states = inputs["context"][self.fields[0]]  # B,S,D
            mask = inputs["context_mask"][self.fields[1]] if "context_mask" in inputs else None  # B,S
        out = super().forward(torch.cat(parts, dim=1), t, text.get("ids"), mask, label, clip, states)  # B,C_out,H,W
        if not self.learn_sigma:
            return {"eps": out}
        return {"eps": out[:, : self.channels], "variance": out[:, self.channels :]}  # B,C,H,W each
