"""Every component family, one folder each under its slot (`encoders/`, `fusion/`, `heads/`, `objectives/`).

A family folder holds everything that is its own: `__init__.py` with the torch-free configs (shape rules,
parameter formula, weight layouts, examples, `@register`), `module.py`/`loss.py` with the torch modules that
`build()` imports lazily, and `hf.py` where Hugging Face checkpoints map onto it. Importing this package
imports the families listed here, and their `@register` decorators fill the registry without importing torch.
Adding a family is one new folder plus one line below.
"""

import importlib

FAMILIES = (
    "encoders.adm_unet",
    "encoders.clip_resnet",
    "encoders.convnet",
    "encoders.diffusion_unet",
    "encoders.dvae",
    "encoders.vae",
    "encoders.efficientnet",
    "encoders.embedding_bag",
    "encoders.googlenet",
    "encoders.masking_noise",
    "encoders.meshed_memory",
    "encoders.multimae",
    "encoders.pathnet",
    "encoders.perceiver",
    "encoders.resnet",
    "encoders.rnn",
    "encoders.scalar",
    "encoders.spline",
    "encoders.swin",
    "encoders.t5",
    "encoders.tabular",
    "encoders.transformer",
    "encoders.unet",
    "encoders.vatt",
    "encoders.waveform",
    "fusion.co_attention",
    "fusion.cross_modality",
    "fusion.elementwise",
    "fusion.orthogonalize",
    "fusion.modality_pool",
    "fusion.reduce",
    "heads.classifier",
    "heads.concat_classifier",
    "heads.contrastive",
    "heads.highway",
    "heads.distributional",
    "heads.gan",
    "heads.gaussian_process",
    "heads.mlp",
    "heads.multimae_decoder",
    "heads.perceiver_decoder",
    "heads.risk",
    "heads.dvae_decoder",
    "heads.vae_decoder",
    "heads.vq_decoder",
    "objectives.auxiliary",
    "objectives.contrastive",
    "objectives.distributional",
    "objectives.gaussian_process",
    "objectives.correlation",
    "objectives.generative",
    "objectives.grounded_space",
    "objectives.language",
    "objectives.mil_nce",
    "objectives.moe_entropy",
    "objectives.patch_classes",
    "objectives.segmentation",
    "objectives.similarity",
    "objectives.supervised",
    "objectives.survival",
    "objectives.teacher",
    "objectives.unicl",
    "objectives.word_vectors",
)

for _family in FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")
