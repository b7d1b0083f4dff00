"""Shared torch building blocks, used by every component module and copied by none; nothing here knows about
specs or the registry.

activations (by spec name) · attention (multi-head self/cross/co-attention, padding/causal/cached masks, KV cache)
· mlp (feed-forward, gated GeGLU/SwiGLU) · norms (LayerNorm, RMSNorm, feature-axis BatchNorm, `make_norm`) ·
positions (sinusoidal, timestep, rotary, T5 relative buckets) · embeddings (tokens, patches, regions) · pooling ·
transformer (residual sublayers, blocks, co-attention blocks) · conv (ResNet stages, DDPM residual blocks) ·
separable (depthwise-separable 1-D convolution) ·
sampling (down/up-sampling) · masking (random masks and spans) · distributed (collective-aware reductions) ·
schedules (noise and momentum schedules) · io (bundle adapters)."""
