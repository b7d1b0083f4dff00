"""ONNX backend: export a captured module (`export_onnx`) and prove it on onnxruntime (`verify_onnx`).

The only part of mmspec that imports onnx and onnxruntime. See README.md for the invariants.
"""

from .onnx_export import (
    ExportResult,
    TensorSig,
    discard,
    export_onnx,
    export_plain,
    inline_weights,
    name_dims,
    onnx_signature,
    publish,
    publish_pairs,
    sidecar,
)
from .onnxruntime import (
    ORT_VERSION,
    TOLERANCE_FP32,
    available_providers,
    first_failure_message,
    make_session,
    op_profile,
    verify_onnx,
)
from .precision import TOLERANCE_FP16, accuracy_delta, quantize_int8, to_fp16

__all__ = [
    "ORT_VERSION",
    "TOLERANCE_FP16",
    "TOLERANCE_FP32",
    "accuracy_delta",
    "ExportResult",
    "TensorSig",
    "available_providers",
    "discard",
    "export_onnx",
    "export_plain",
    "inline_weights",
    "first_failure_message",
    "make_session",
    "name_dims",
    "onnx_signature",
    "op_profile",
    "publish",
    "publish_pairs",
    "quantize_int8",
    "sidecar",
    "to_fp16",
    "verify_onnx",
]
