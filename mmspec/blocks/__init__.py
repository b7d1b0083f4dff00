"""Shared torch building blocks: attention, MLPs, norms, embeddings, pooling, conv stages.

Used by every component module, copied by none; nothing here knows about specs or the registry."""
