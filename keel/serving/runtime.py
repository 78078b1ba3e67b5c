"""A served model: a loaded bundle, its v2 metadata, request validation and batch prediction.

Classical models run through their parity-checked ONNX copy (ONNX Runtime,
one intra-op thread: small batches gain nothing from more and the event loop
needs the other core) when the run has one; the native library otherwise,
or when ``native=True``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from keel.serving.v2 import FROM_KEEL, TO_NUMPY, InferRequest, ProtocolError, datatype_of

log = logging.getLogger("keel.serving")
_NAME_URI = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.\-]*)=(?P<uri>.+)$")


@dataclass(frozen=True)
class Spec:
    name: str
    datatype: str
    shape: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


class ServedModel:
    def __init__(self, name: str, version: str, uri: str, loaded: Any, *, onnx: Any = None) -> None:
        self.name, self.version, self.uri = name, version, uri
        self.loaded = loaded
        self.signature = loaded.signature
        self.classifier = loaded.has_proba
        self.engine = "onnxruntime" if onnx is not None else loaded.format
        self._onnx = onnx
        self._onnx_input = onnx.get_inputs()[0].name if onnx is not None else None
        self.inputs = self._input_specs()
        self._by_name = {s.name: s for s in self.inputs}
        self.outputs = self._output_specs()
        self.output_names = [s.name for s in self.outputs]

    # -- metadata --------------------------------------------------------------------
    def _input_specs(self) -> list[Spec]:
        if self.signature is None:
            raise ProtocolError(f"{self.uri} has no signature; log it with input_example= to serve it")
        if self.signature.columnar:
            return [Spec(s.name, FROM_KEEL[s.dtype], [-1]) for s in self.signature.inputs]
        spec = self.signature.inputs[0]
        return [Spec(spec.name, FROM_KEEL[spec.dtype], list(spec.shape))]

    def _output_specs(self) -> list[Spec]:
        """Output names and types, from one prediction on a row of zeros (which also warms the model up)."""
        try:
            sample = self.predict(self._zero_row())
        except Exception as exc:  # metadata then says -1 / the signature's type; serving still works
            log.info("keel serve: warm-up prediction of %s failed (%s)", self.uri, exc)
            names = ["label", "probabilities"] if self.classifier else ["prediction"]
            return [Spec(n, "FP64", [-1, -1] if n == "probabilities" else [-1]) for n in names]
        return [Spec(n, datatype_of(a), [-1, *a.shape[1:]]) for n, a in sample.items()]

    def _zero_row(self) -> dict[str, np.ndarray]:
        row = {}
        for spec in self.inputs:
            dtype = TO_NUMPY[spec.datatype]
            shape = [1, *[max(d, 1) for d in spec.shape[1:]]]
            row[spec.name] = np.full(shape, "", dtype=object) if dtype == object else np.zeros(shape, dtype)
        return row

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "versions": [self.version], "platform": f"keel-{self.loaded.format}",
                "inputs": [s.to_dict() for s in self.inputs], "outputs": [s.to_dict() for s in self.outputs],
                "parameters": {"uri": self.uri, "engine": self.engine}}

    # -- requests ----------------------------------------------------------------------
    def validate(self, request: InferRequest) -> tuple[dict[str, np.ndarray], int]:
        """The request's inputs as arrays the model takes, and its row count; ProtocolError names what is wrong."""
        arrays: dict[str, np.ndarray] = {}
        rows = None
        for tensor in request.inputs:
            spec = self._by_name.get(tensor.name)
            if spec is None:
                raise ProtocolError(f"unknown input {tensor.name!r}; model {self.name!r} takes "
                                    f"{', '.join(self._by_name)}")
            if tensor.name in arrays:
                raise ProtocolError(f"input {tensor.name!r} is given twice")
            array = _convert(tensor.name, tensor.data, tensor.datatype, spec)
            if self.signature.columnar:
                if array.ndim == 2 and array.shape[1] == 1:
                    array = array[:, 0]
                if array.ndim != 1:
                    raise ProtocolError(f"input {tensor.name!r}: shape {list(tensor.shape)} does not match "
                                        f"expected [-1] (one value per row)")
            else:
                want = spec.shape
                if array.ndim != len(want) or any(w not in (-1, g) for w, g in zip(want[1:], array.shape[1:])):
                    raise ProtocolError(f"input {tensor.name!r}: shape {list(tensor.shape)} does not match "
                                        f"expected {want}")
            if rows is not None and array.shape[0] != rows:
                raise ProtocolError(f"input {tensor.name!r} has {array.shape[0]} rows, other inputs {rows}")
            rows = array.shape[0]
            arrays[tensor.name] = array
        missing = [n for n in self._by_name if n not in arrays]
        if missing:
            raise ProtocolError(f"missing input(s) {', '.join(map(repr, missing))}; model {self.name!r} takes "
                                f"{', '.join(self._by_name)}")
        if request.outputs is not None:
            unknown = [n for n in request.outputs if n not in self.output_names]
            if unknown:
                raise ProtocolError(f"unknown output(s) {', '.join(map(repr, unknown))}; model {self.name!r} "
                                    f"gives {', '.join(self.output_names)}")
        if not rows:  # (also what lets the prediction log take a batch's row count as its request count)
            raise ProtocolError("the request holds no rows: send at least one")
        return arrays, int(rows)

    def predict(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs for a batch of validated rows: label and probabilities for a classifier, else prediction."""
        if self.signature.columnar:
            data: Any = {name: arrays[name] for name in self._by_name}
        else:
            data = arrays[self.inputs[0].name]
        if self._onnx is not None:
            x = self.loaded.prepare(data)
            x = np.asarray(x, dtype=np.float32)
            result = self._onnx.run(None, {self._onnx_input: x})
            if self.classifier:
                return {"label": np.asarray(result[0]).ravel(), "probabilities": np.asarray(result[1])}
            prediction = np.asarray(result[0])
            if prediction.ndim == 2 and prediction.shape[1] == 1:  # regressors converted to ONNX answer [n, 1]
                prediction = prediction[:, 0]
            return {"prediction": prediction}
        if self.classifier:
            x = self.loaded.prepare(data)
            predictor = self.loaded._predictor
            return {"label": np.asarray(predictor.predict(x)), "probabilities": np.asarray(predictor.predict_proba(x))}
        return {"prediction": np.asarray(self.loaded.predict(data))}


def _convert(name: str, data: np.ndarray, datatype: str, spec: Spec) -> np.ndarray:
    """Accept a datatype that converts without loss of meaning (any number for a float input,
    integers for an integer input); refuse the rest, naming what was expected."""
    want = TO_NUMPY[spec.datatype]
    have = data.dtype
    if want == have:
        return data
    ok = (want.kind == "f" and have.kind in "iuf") or (want.kind in "iu" and have.kind in "iu") \
        or (want.kind == "O" and have.kind == "O") or (want.kind == "b" and have.kind == "b")
    if not ok:
        raise ProtocolError(f"input {name!r}: datatype {datatype} does not match expected {spec.datatype}")
    return data.astype(want)


def parse_target(target: str) -> tuple[str | None, str]:
    """``NAME=URI`` or ``URI``."""
    match = _NAME_URI.match(target)
    if match and not target.startswith(("models:/", "runs:/")):
        return match["name"], match["uri"]
    return None, target


def load_served(target: str, settings: Any, *, native: bool = False) -> ServedModel:
    """Load ``[NAME=]URI`` for serving: name and version from the registry where it is one."""
    from pathlib import Path

    from keel.formats.api import load_model

    name, uri = parse_target(target)
    version = "1"
    onnx_uri = None
    if uri.startswith("models:/"):
        from keel.service.registry import resolve_uri
        from keel.tracking.fluent import client_for

        client = client_for(settings)
        mv = resolve_uri(client.ctx, uri)
        name, version = name or mv.name, str(mv.version)
        onnx_uri = _onnx_copy(client, mv.run_id, mv.artifact_path)
    elif uri.startswith("runs:/"):
        from keel.tracking.fluent import client_for

        run_id, _, path = uri[len("runs:/"):].partition("/")
        name = name or path.rstrip("/").rsplit("/", 1)[-1]
        onnx_uri = _onnx_copy(client_for(settings), run_id, path.rstrip("/"))
    else:
        name = name or Path(uri).resolve().name
    if onnx_uri and not native:
        # The native library is never imported: the original bundle gives the
        # signature (hash-checked), the parity-checked copy does the work. This
        # is what keeps a server's start and memory small (skops alone pulls in
        # scikit-learn, scipy and, through scikit-learn's array API, torch).
        from keel.formats.api import resolve_bundle
        from keel.formats.bundle import read_manifest, verify_files
        from keel.formats.loaded import LoadedModel

        copy = load_model(onnx_uri, settings=settings)
        folder, _ = resolve_bundle(uri, settings)
        manifest = read_manifest(folder)
        verify_files(manifest)
        loaded = LoadedModel(manifest, copy._predictor, uri)
        return ServedModel(name, version, uri, loaded, onnx=_session(copy))
    return ServedModel(name, version, uri, load_model(uri, settings=settings))


def _onnx_copy(client: Any, run_id: str, path: str) -> str | None:
    from keel.formats.onnx_copy import tag_key

    raw = client.get_run(run_id).tags.get(tag_key(path))
    if not raw:
        return None
    status = json.loads(raw)
    return status.get("uri") if status.get("status") == "passed" else None


def _session(onnx_model: Any) -> Any:
    """A fresh single-threaded session over the (hash-verified) ONNX copy."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    from keel.formats.onnx import FILE

    path = onnx_model.manifest.path
    folder = path if path.is_dir() else path.parent
    return ort.InferenceSession(str(folder / FILE), options, providers=["CPUExecutionProvider"])
