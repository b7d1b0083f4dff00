"""ONNX backend: export a captured module (`export_onnx`) and prove it on onnxruntime (`verify_onnx`).

The only part of mmspec that imports onnx and onnxruntime. See README.md for the invariants.
"""

from .onnx_export import (
    ExportResult,
    TensorSig,
    discard,
    export_onnx,
    name_dims,
    onnx_signature,
    publish,
    publish_pairs,
    sidecar,
)
from .onnxruntime import (
    TOLERANCE_FP32,
    available_providers,
    first_failure_message,
    make_session,
    verify_onnx,
)

__all__ = [
    "TOLERANCE_FP32",
    "ExportResult",
    "TensorSig",
    "available_providers",
    "discard",
    "export_onnx",
    "first_failure_message",
    "make_session",
    "name_dims",
    "onnx_signature",
    "publish",
    "publish_pairs",
    "sidecar",
    "verify_onnx",
]
