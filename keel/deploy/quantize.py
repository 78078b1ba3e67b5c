"""Dynamic int8 quantization of an ONNX model, and what it costs in agreement with the original.

Weights of MatMul/Gemm-like operators become int8 (onnxruntime's
``quantize_dynamic``); tree and linear ``ai.onnx.ml`` operators are left as
they are. The quantized model is compared with the original on the rows
given (a sample file plus rows generated over its range, or standard-normal
rows without one): label agreement and the largest probability difference.
A drop in agreement beyond the tolerance refuses the deploy.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from keel.errors import InvalidInput

DEFAULT_TOLERANCE = 0.01  # share of rows whose label may change
GENERATED_ROWS = 512


def quantize_int8(onnx_bytes: bytes) -> bytes:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="keel-quantize-") as tmp:
        source, target = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        source.write_bytes(onnx_bytes)
        # The quantizer logs advice on the root logger (pre-processing for image models); the
        # agreement check below is what tells whether this model survived quantization.
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        return target.read_bytes()


def evaluation_rows(n_features: int, sample: Any = None) -> tuple[Any, str]:
    """Rows to compare on, and where they came from."""
    import numpy as np

    from keel.formats.onnx_copy import parity_rows

    if sample is not None:
        x = np.asarray(sample, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != n_features:
            raise InvalidInput(f"--sample must have rows of {n_features} values, got shape {list(x.shape)}")
        return parity_rows(x, GENERATED_ROWS), f"{len(x)} sample rows + {GENERATED_ROWS} generated over their range"
    rng = np.random.default_rng(0)
    return rng.standard_normal((GENERATED_ROWS, n_features)), f"{GENERATED_ROWS} generated standard-normal rows"


def compare(original: bytes, quantized: bytes, rows: Any) -> dict[str, Any]:
    """Label agreement and max probability difference of ``quantized`` against ``original``."""
    import numpy as np

    from keel.formats.onnx import SessionPredictor, _session

    a, b = SessionPredictor(_session(original)), SessionPredictor(_session(quantized))
    labels_a, labels_b = np.asarray(a.predict(rows)).ravel(), np.asarray(b.predict(rows)).ravel()
    result: dict[str, Any] = {"rows": int(len(rows)), "label_agreement": float(np.mean(labels_a == labels_b))}
    if hasattr(a, "predict_proba") and hasattr(b, "predict_proba"):
        result["max_abs_diff"] = float(np.max(np.abs(np.asarray(a.predict_proba(rows), dtype=float)
                                                     - np.asarray(b.predict_proba(rows), dtype=float))))
    return result


def n_features(onnx_bytes: bytes) -> int:
    from keel.formats.onnx import _session

    shape = _session(onnx_bytes).get_inputs()[0].shape
    if len(shape) != 2 or not isinstance(shape[1], int):
        raise InvalidInput(f"the edge runner needs a model taking rows of a fixed width; its input shape is {shape}")
    return shape[1]


def quantize_checked(onnx_bytes: bytes, *, tolerance: float, sample: Any = None) -> tuple[bytes, dict[str, Any]]:
    """Quantize, compare, and refuse if more than ``tolerance`` of the labels change."""
    quantized = quantize_int8(onnx_bytes)
    rows, source = evaluation_rows(n_features(onnx_bytes), sample)
    report = {"method": "onnxruntime dynamic quantization, int8 weights", "rows_from": source,
              **compare(onnx_bytes, quantized, rows), "tolerance": tolerance,
              "size_before": len(onnx_bytes), "size_after": len(quantized)}
    report["agreement_change"] = 1.0 - report["label_agreement"]
    if report["agreement_change"] > tolerance:
        raise InvalidInput(f"int8 quantization changes {report['agreement_change']:.2%} of the predicted labels on "
                           f"{report['rows']} rows ({source}), above the tolerance of {tolerance:.2%}; deploy "
                           "without --quantize, or raise --quantize-tolerance if that is acceptable")
    return quantized, report
