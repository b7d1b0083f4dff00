"""mmspec: declarative multimodal model specs compiled to PyTorch, torch.fx and verified ONNX.

The public API lives in `mmspec.api` (load_spec, build, capture, optimize, export, verify, compile);
it is re-exported here lazily so that `import mmspec.spec` (validation) never imports torch.
"""

import os

__version__ = "0.1.0"

# ONNX Runtime (1.2x+) starts telemetry when it is imported and writes a device id under ~/.cache; mmspec turns
# that off unless the user chose otherwise (ORT_DISABLE_TELEMETRY=0). onnxruntime reads it at import time.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__all__ = ["build", "capture", "compile", "export", "load_spec", "optimize", "param_counts", "verify"]


def __getattr__(name: str):
    if name in __all__:
        from mmspec import api

        return getattr(api, name)
    raise AttributeError(f"module 'mmspec' has no attribute {name!r}")
