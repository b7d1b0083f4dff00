"""Reduced-precision copies of an exported fp32 ONNX file: int8 (ONNX Runtime's quantizer) and fp16.

Both write a new file next to nothing else: the caller verifies it against the fp32 eager model with the
precision's own tolerance (docs/contracts.md) and reports how far its outputs moved (`accuracy_delta`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from mmspec.errors import CompileError

DYNAMIC_OPS = ["MatMul", "Gemm"]
"""What dynamic int8 quantizes. Not Gather: a quantized embedding table is dequantized whole at every run (on
BERT-base 28 % of the int8 run time at batch 1), and not Conv: ONNX Runtime's ConvInteger is slower than fp32 Conv
on CPUs. Measured on BERT-base, seq 128, batch 1, 2 threads: 66 ms against 84 ms with the quantizer's default
operator set (eager fp32: 128 ms), and the MLM head's top-1 agreement with fp32 rises from 95.3 % to 97.7 %."""
TOLERANCE_FP16 = {"atol": 1e-2, "rtol": 1e-2, "cosine": 0.999}


def quantize_int8(src: Path, dst: Path, calibration: list[dict[str, np.ndarray]] | None = None) -> str:
    """Write an int8 copy of `src` to `dst`; returns the method ("dynamic" or "static").

    Without `calibration`: dynamic quantization of DYNAMIC_OPS (int8 weights, activations quantized at run time
    from their observed range). With calibration feeds: static QDQ quantization whose activation ranges
    come from running those feeds (MinMax)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    external = (src.parent / f"{src.name}.data").exists()
    model = onnx.load(str(src))
    del model.graph.value_info[:]  # the quantizer re-infers shapes and trips over the exporter's annotations
    untie_transposed_weights(model)
    # ONNX's native Attention (opset 23+) would be taken for ONNX Runtime's contrib Attention and become a
    # QAttention that does not load: it stays fp32.
    native = [n.name for n in model.graph.node if n.op_type == "Attention" and n.domain in ("", "ai.onnx")]
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # its advice to pre-process goes to the root logger
    try:
        if calibration is None:
            quantize_dynamic(model, dst, weight_type=QuantType.QInt8, use_external_data_format=external,
                             nodes_to_exclude=native, op_types_to_quantize=DYNAMIC_OPS)
            return "dynamic"

        class Feeds(CalibrationDataReader):
            def __init__(self):
                self.rest = iter(calibration)

            def get_next(self):
                return next(self.rest, None)

        quantize_static(model, dst, Feeds(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, use_external_data_format=external, nodes_to_exclude=native)
        return "static"
    except Exception as e:  # the quantizer's own failures (unsupported graphs) are a compile failure
        raise CompileError(f"int8 quantization failed: {type(e).__name__}: {e}") from e
    finally:
        logging.getLogger().setLevel(quiet)


def untie_transposed_weights(model: onnx.ModelProto) -> list[str]:
    """Give every MatMul whose weight is a Transpose of an initializer (a softmax tied to an embedding table) its
    own transposed initializer, so that int8 quantizes it; returns the names of those MatMuls.

    ONNX Runtime's quantizer takes only constant weights, and a tied output layer reads its weight through a
    Transpose: it stayed fp32 and, on BERT-base's MLM head (30522 x 768, a fifth of the model's products at
    seq 128), made the dynamic int8 run about 30 % slower (2 threads, measured side by side). The table is then
    held twice: fp32 for the Gather, int8 for the product."""
    init = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    untied, added = [], {}
    for node in model.graph.node:
        t = producer.get(node.input[1]) if node.op_type == "MatMul" else None
        if t is None or t.op_type != "Transpose" or t.input[0] not in init:
            continue
        perm = next((list(a.ints) for a in t.attribute if a.name == "perm"), None)
        key = (t.input[0], tuple(perm or ()))
        if key not in added:
            table = numpy_helper.to_array(init[t.input[0]])
            added[key] = numpy_helper.from_array(np.ascontiguousarray(table.transpose(perm)), f"{t.output[0]}.untied")
            model.graph.initializer.append(added[key])
        node.input[1] = added[key].name
        untied.append(node.name)
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    dropped = [n for n in model.graph.node if n.op_type == "Transpose" and not set(n.output) & used]
    for n in dropped:
        model.graph.node.remove(n)
    return untied


def to_fp16(src: Path, dst: Path) -> None:
    """Write an fp16 copy of `src` to `dst`: float initializers and computation in fp16, inputs and outputs kept
    fp32 (casts at the boundary), so callers feed the same arrays as to the fp32 file."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    try:
        half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    except Exception as e:
        raise CompileError(f"fp16 conversion failed: {type(e).__name__}: {e}") from e
    onnx.save(half, str(dst), save_as_external_data=half.ByteSize() > 1_500_000_000)


def accuracy_delta(got: dict[str, np.ndarray], ref: dict[str, np.ndarray], classifiers: set[str]) -> dict:
    """Per output: max |got - ref| and, for classifier logits (the names in `classifiers`), the share of
    positions whose arg-max over the last axis agrees ("top1_agreement") and the median gap between the
    reference's two largest logits ("top1_margin": a change of max_abs can flip positions closer than it)."""
    out = {}
    for name, r in ref.items():
        g = got[name]
        entry = {"max_abs": float(np.max(np.abs(g.astype(np.float64) - r), initial=0.0))}
        if name in classifiers and r.ndim >= 1 and r.shape[-1] > 1:
            entry["top1_agreement"] = float(np.mean(np.argmax(g, -1) == np.argmax(r, -1)))
            top2 = np.partition(r, -2, axis=-1)[..., -2:]  # ...,2: the two largest logits
            entry["top1_margin"] = float(np.median(top2[..., 1] - top2[..., 0]))
        out[name] = entry
    return out
