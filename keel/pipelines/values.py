"""Step outputs as bytes and back, in the safest format that holds each value.

A plug-in table, tried in order: the first kind whose ``accepts`` holds
encodes the value. Pickle is the last resort, and its bytes are only ever
loaded from a blob whose sha256 the store recorded when the step produced it
(the blob store verifies that hash on every read), so no unverified pickle
is ever loaded.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from keel.errors import InvalidInput


@dataclass(frozen=True)
class Kind:
    name: str
    accepts: Callable[[Any], bool]
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


# -- json: plain data, when it survives a round trip unchanged --------------------------------
def _json_ok(value: Any) -> bool:
    try:
        text = json.dumps(value, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError):
        return False
    return _same(json.loads(text), value)


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type all the way down (a tuple must not come back a list)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _json_encode(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, allow_nan=True).encode()


# -- numpy arrays: .npy without pickled objects ---------------------------------------------
def _is_ndarray(value: Any) -> bool:
    np = _module("numpy")
    return np is not None and isinstance(value, np.ndarray) and not value.dtype.hasobject


def _npy_encode(value: Any) -> bytes:
    import numpy as np

    sink = io.BytesIO()
    np.save(sink, value, allow_pickle=False)
    return sink.getvalue()


def _npy_decode(data: bytes) -> Any:
    import numpy as np

    return np.load(io.BytesIO(data), allow_pickle=False)


# -- tables: pandas frames and series, Arrow tables, as Parquet -----------------------------
def _is_frame(value: Any) -> bool:
    pd = _module("pandas")
    return pd is not None and isinstance(value, pd.DataFrame) and _arrow_ok(value)


def _is_series(value: Any) -> bool:
    pd = _module("pandas")
    return pd is not None and isinstance(value, pd.Series) and _arrow_ok(value.to_frame())


def _arrow_ok(frame: Any) -> bool:
    import pyarrow as pa

    if not all(isinstance(c, str) for c in frame.columns):
        return False  # Parquet column names are strings: 0, 1, ... would come back as "0", "1"
    try:
        pa.Table.from_pandas(frame)
    except (pa.ArrowException, TypeError, ValueError):
        return False
    return True


def _parquet(table: Any) -> bytes:
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _read_parquet(data: bytes) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data))


def _frame_encode(value: Any) -> bytes:
    import pyarrow as pa

    return _parquet(pa.Table.from_pandas(value))


def _series_encode(value: Any) -> bytes:
    import pyarrow as pa

    # A series with no name gets a placeholder column, restored as None.
    frame = value.to_frame(name="__series__" if value.name is None else value.name)
    return _parquet(pa.Table.from_pandas(frame))


def _series_decode(data: bytes) -> Any:
    frame = _read_parquet(data).to_pandas()
    series = frame.iloc[:, 0]
    return series.rename(None) if series.name == "__series__" else series


def _is_arrow(value: Any) -> bool:
    pa = _module("pyarrow")
    return pa is not None and isinstance(value, pa.Table)


# -- models: keel's own bundle, as a tar of the bundle folder -------------------------------
def _is_model(value: Any) -> bool:
    if not callable(getattr(value, "predict", None)) or isinstance(value, type):
        return False
    from keel.formats.registry import detect_format

    try:
        return detect_format(value).name != "python"  # plain Python objects pickle more simply below
    except Exception:
        return False


def _model_encode(value: Any) -> bytes:
    from keel.formats.bundle import save_bundle

    with tempfile.TemporaryDirectory(prefix="keel-step-model-") as tmp:
        folder = Path(tmp) / "bundle"
        save_bundle(value, folder)
        sink = io.BytesIO()
        with tarfile.open(fileobj=sink, mode="w") as tar:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    info = tar.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
                    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                    with open(path, "rb") as fh:
                        tar.addfile(info, fh)
        return sink.getvalue()


def _model_decode(data: bytes) -> Any:
    from keel.formats.api import load_model

    with tempfile.TemporaryDirectory(prefix="keel-step-model-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            tar.extractall(tmp, filter="data")  # "data": no links out, no absolute paths
        # The tar's sha256 was checked against the store's record before we got
        # here, so the bundle's files (and any pickle in it) are the ones saved.
        return load_model(tmp, allow_unverified_pickle=True).native


# -- the last resort ------------------------------------------------------------------------
def _pickle_encode(value: Any) -> bytes:
    import pickle

    try:
        return pickle.dumps(value, protocol=5)
    except Exception as exc:
        raise InvalidInput(f"cannot store a step output of type {type(value).__name__}: {exc}; return plain "
                           "data, numpy arrays, pandas frames or a model") from None


def _pickle_decode(data: bytes) -> Any:
    import pickle

    return pickle.loads(data)  # only reached with hash-verified bytes (module docstring)


KINDS: tuple[Kind, ...] = (
    Kind("json", _json_ok, _json_encode, lambda data: json.loads(data)),
    Kind("npy", _is_ndarray, _npy_encode, _npy_decode),
    Kind("pandas", _is_frame, _frame_encode, lambda data: _read_parquet(data).to_pandas()),
    Kind("pandas-series", _is_series, _series_encode, _series_decode),
    Kind("arrow", _is_arrow, _parquet, _read_parquet),
    Kind("model", _is_model, _model_encode, _model_decode),
    Kind("pickle", lambda value: True, _pickle_encode, _pickle_decode),
)
_BY_NAME = {k.name: k for k in KINDS}


def encode(value: Any) -> tuple[str, bytes]:
    """(kind, bytes) of a step output."""
    for kind in KINDS:
        if kind.accepts(value):
            return kind.name, kind.encode(value)
    raise AssertionError("the pickle kind accepts everything")  # pragma: no cover


def decode(kind: str, data: bytes) -> Any:
    """The value back from bytes that the blob store verified against the recorded sha256."""
    try:
        return _BY_NAME[kind].decode(data)
    except KeyError:
        raise InvalidInput(f"unknown step output kind {kind!r}; expected one of {sorted(_BY_NAME)}") from None


def _module(name: str) -> Any:
    """An already imported module, or None: an output cannot be a pandas frame unless pandas is loaded."""
    import sys

    return sys.modules.get(name)

