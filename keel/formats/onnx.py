"""ONNX models, run with ONNX Runtime on the CPU.

Classifiers converted by skl2onnx / onnxmltools have two outputs, labels and
probabilities; keel maps them to ``predict`` and ``predict_proba``. (Convert
with ``zipmap=False`` to get probabilities as a plain tensor; a ZipMap output
of one dict per row is turned into a tensor here.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keel.formats.base import Saved

FILE = "model.onnx"
_NUMPY = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64",
          "tensor(int32)": "int32", "tensor(bool)": "bool", "tensor(string)": "object"}


class SessionPredictor:
    wants_frame = False

    def __init__(self, session: Any) -> None:
        self.native = session
        inputs = session.get_inputs()
        self._input = inputs[0].name
        self._dtype = _NUMPY.get(inputs[0].type, "float32")
        self._outputs = [o.name for o in session.get_outputs()]
        if len(self._outputs) >= 2:
            self.predict_proba = self._proba

    def _run(self, x: Any) -> list[Any]:
        import numpy as np

        return self.native.run(None, {self._input: np.asarray(x).astype(self._dtype, copy=False)})

    def predict(self, x: Any) -> Any:
        return self._run(x)[0]

    def _proba(self, x: Any) -> Any:
        import numpy as np

        probs = self._run(x)[1]
        if isinstance(probs, list):  # ZipMap: one {label: probability} per row
            labels = sorted(probs[0]) if probs else []
            return np.array([[row[label] for label in labels] for row in probs])
        return probs


class OnnxFormat:
    name = "onnx"
    version = 1

    def matches(self, model: Any) -> bool:
        try:
            import onnx
        except ImportError:
            return False
        return isinstance(model, onnx.ModelProto)

    def save(self, model: Any, folder: Path) -> Saved:
        import onnx

        onnx.checker.check_model(model)
        onnx.save_model(model, str(folder / FILE))
        return Saved(files=[FILE], modules=["onnx", "onnxruntime", "numpy"],
                     meta={"opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import}})

    def wrap(self, model: Any, saved: Saved) -> SessionPredictor:
        return SessionPredictor(_session(model.SerializeToString()))

    def load(self, folder: Path, saved: Saved) -> SessionPredictor:
        return SessionPredictor(_session(str(folder / FILE)))


def _session(source: Any) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the default warns about every unused initializer
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
