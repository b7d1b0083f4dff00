"""mmspec: declarative multimodal model specs compiled to PyTorch, torch.fx and verified ONNX.

The public API lives in `mmspec.api` (load_spec, build, capture, optimize, export, verify, compile);
it is re-exported here lazily so that `import mmspec.spec` (validation) never imports torch.
"""

__version__ = "0.1.0"

__all__ = ["build", "capture", "compile", "export", "load_spec", "optimize", "param_counts", "verify"]


def __getattr__(name: str):
    if name in __all__:
        from mmspec import api

        return getattr(api, name)
    raise AttributeError(f"module 'mmspec' has no attribute {name!r}")
