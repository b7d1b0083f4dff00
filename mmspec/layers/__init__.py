"""Torch building blocks shared by component builders (imported lazily by `build()` methods)."""
