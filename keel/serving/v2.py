"""Open Inference Protocol (KServe v2) codec, with Triton's binary tensor extension. Pure: bytes in, arrays out.

A request body is JSON, or (binary extension) a JSON header of
``Inference-Header-Content-Length`` bytes followed by raw tensors, each input
saying its size in ``parameters.binary_data_size``. Outputs come back as JSON
``data`` or, when asked (``parameters.binary_data`` on an output or
``binary_data_output`` on the request, which is what tritonclient sends by
default), as raw bytes after the JSON header in the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

# v2 datatype <-> numpy dtype (little-endian, as the binary extension requires).
TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype("bool"), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
FROM_KEEL = {"bool": "BOOL", "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
             "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64", "float16": "FP16",
             "float32": "FP32", "float64": "FP64", "string": "BYTES", "datetime64[ns]": "BYTES"}
MAX_ELEMENTS = 50_000_000


class ProtocolError(Exception):
    """The request breaks the protocol or the model's signature (HTTP 400); the message says where."""


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray


@dataclass
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: dict[str, bool] | None  # requested output -> binary?; None: all, in the default encoding
    binary_default: bool  # request-level binary_data_output
    parameters: dict[str, Any] = field(default_factory=dict)


def check_request_id(request_id: Any) -> None:
    """A request's ``id``: absent, or a string without NUL characters (the prediction log joins ids by NULs)."""
    if request_id is not None and (not isinstance(request_id, str) or "\0" in request_id):
        raise ProtocolError("'id' must be a string without NUL characters")


def decode_request(body: bytes, header_length: int | None = None) -> InferRequest:
    if header_length is not None:
        if not 0 < header_length <= len(body):
            raise ProtocolError(f"Inference-Header-Content-Length {header_length} does not fit a body of "
                                f"{len(body)} bytes")
        head, binary = body[:header_length], memoryview(body)[header_length:]
    else:
        head, binary = body, memoryview(b"")
    try:
        doc = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("the request body must be a JSON object with an 'inputs' list")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError("'inputs' must be a non-empty list of tensors")
    request_id = doc.get("id")
    check_request_id(request_id)
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError("'parameters' must be an object")
    offset = 0
    inputs = []
    for i, raw in enumerate(raw_inputs):
        tensor, used = _decode_tensor(i, raw, binary, offset)
        offset += used
        inputs.append(tensor)
    if offset != len(binary):
        raise ProtocolError(f"the binary part holds {len(binary)} bytes but the inputs declare {offset}")
    outputs = None
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            raise ProtocolError("'outputs' must be a list of {\"name\": ...}")
        outputs = {}
        for j, out in enumerate(doc["outputs"]):
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise ProtocolError(f"outputs[{j}] must be an object with a 'name'")
            params = out.get("parameters") or {}
            outputs[out["name"]] = bool(params.get("binary_data", parameters.get("binary_data_output", False)))
    return InferRequest(request_id, inputs, outputs, bool(parameters.get("binary_data_output", False)), parameters)


def _decode_tensor(i: int, raw: Any, binary: memoryview, offset: int) -> tuple[Tensor, int]:
    where = f"inputs[{i}]"
    if not isinstance(raw, dict):
        raise ProtocolError(f"{where} must be an object with name, shape, datatype and data")
    name, datatype, shape = raw.get("name"), raw.get("datatype"), raw.get("shape")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"{where}.name must be a non-empty string")
    where = f"input {name!r}"
    if datatype not in TO_NUMPY:
        raise ProtocolError(f"{where}: unknown datatype {datatype!r}; expected one of {', '.join(TO_NUMPY)}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise ProtocolError(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    count = math.prod(shape)  # np.prod costs microseconds on a small list
    if count > MAX_ELEMENTS:
        raise ProtocolError(f"{where}: {count} elements is more than the {MAX_ELEMENTS} allowed")
    dtype = TO_NUMPY[datatype]
    size = (raw.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise ProtocolError(f"{where}: binary_data_size {size!r} runs past the end of the body")
        chunk = binary[offset:offset + size]
        if datatype == "BYTES":
            array = _decode_bytes(where, chunk, count)
        else:
            if size != count * dtype.itemsize:
                raise ProtocolError(f"{where}: binary_data_size is {size} bytes but shape {shape} of {datatype} "
                                    f"needs {count * dtype.itemsize}")
            array = np.frombuffer(chunk, dtype=dtype)
        return Tensor(name, datatype, tuple(shape), array.reshape(shape)), size
    if "data" not in raw:
        raise ProtocolError(f"{where}: no 'data' (and no parameters.binary_data_size)")
    array = _json_data(where, raw["data"], datatype, dtype)
    if array.size != count:
        raise ProtocolError(f"{where}: shape {shape} needs {count} values, got {array.size}")
    return Tensor(name, datatype, tuple(shape), array.reshape(shape)), 0


def _json_data(where: str, data: Any, datatype: str, dtype: np.dtype) -> np.ndarray:
    if datatype == "BYTES":
        flat = _flatten(data)
        if not all(isinstance(v, str) for v in flat):
            raise ProtocolError(f"{where}: BYTES data must be strings")
        return np.array(flat, dtype=object)
    try:
        array = np.asarray(data)
    except ValueError:  # ragged nesting
        raise ProtocolError(f"{where}: data is ragged (rows of different lengths)") from None
    if array.dtype == object or array.dtype.kind in "US":
        raise ProtocolError(f"{where}: data must be numbers for datatype {datatype}")
    if datatype == "BOOL":
        if array.dtype != np.bool_:
            raise ProtocolError(f"{where}: BOOL data must be true/false")
        return array.ravel()
    if array.dtype == np.bool_:
        raise ProtocolError(f"{where}: got true/false for datatype {datatype}")
    if dtype.kind in "iu" and array.dtype.kind == "f":
        raise ProtocolError(f"{where}: got fractional numbers for integer datatype {datatype}")
    try:
        return array.astype(dtype, casting="unsafe" if dtype.kind == "f" else "same_kind").ravel() \
            if array.dtype.kind in "iuf" else array.ravel()
    except (TypeError, OverflowError) as exc:
        raise ProtocolError(f"{where}: {exc}") from None


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item)) if isinstance(item, list) else out.append(item)
    return out


def _decode_bytes(where: str, chunk: memoryview, count: int) -> np.ndarray:
    """BYTES in the binary extension: each element is a 4-byte little-endian length, then the bytes."""
    items, pos, raw = [], 0, bytes(chunk)
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise ProtocolError(f"{where}: truncated BYTES element")
        n = int.from_bytes(raw[pos:pos + 4], "little")
        pos += 4
        if pos + n > len(raw):
            raise ProtocolError(f"{where}: truncated BYTES element")
        items.append(raw[pos:pos + n].decode("utf-8", errors="replace"))
        pos += n
    if len(items) != count:
        raise ProtocolError(f"{where}: shape needs {count} BYTES elements, got {len(items)}")
    return np.array(items, dtype=object)


def _encode_bytes(array: np.ndarray) -> bytes:
    parts = []
    for item in array.ravel():
        data = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(len(data).to_bytes(4, "little"))
        parts.append(data)
    return b"".join(parts)


_DATATYPE_OF = {dtype: name for name, dtype in TO_NUMPY.items() if name != "BYTES"}  # a lookup per tensor


def datatype_of(array: np.ndarray) -> str:
    if array.dtype.kind in "OUS":
        return "BYTES"
    return _DATATYPE_OF.get(array.dtype, "FP64")


def encode_response(model: str, version: str, request_id: str | None, outputs: list[tuple[str, np.ndarray, bool]],
                    parameters: dict[str, Any] | None = None) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it (else None)."""
    doc: dict[str, Any] = {"model_name": model, "model_version": version}
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = parameters
    tensors, blobs = [], []
    for name, array, binary in outputs:
        datatype = datatype_of(array)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            blob = _encode_bytes(array) if datatype == "BYTES" else np.ascontiguousarray(array).tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = array.ravel().tolist() if datatype != "BYTES" else [str(v) for v in array.ravel()]
        tensors.append(tensor)
    doc["outputs"] = tensors
    head = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})
