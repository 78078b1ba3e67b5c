"""Dataset descriptions: a content digest, a schema and a statistical profile.

A description is logged with a run (which data trained this model?) and later
serves as the reference distribution for drift monitoring, so the profile
keeps what KS, chi-square, PSI and Wasserstein tests need: 101 quantiles as an
empirical CDF, a histogram and category frequencies.

Everything here is a pure function of its input; the only I/O is reading a
CSV/Parquet file when given a path. This module imports pandas or polars only
when the input already is one of their objects.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keel.errors import InvalidInput

__all__ = ["PROFILE_VERSION", "DatasetDescription", "describe_dataset", "to_arrow"]

PROFILE_VERSION = 1
_DIGEST_HEADER = b"keel-dataset-digest/v1"
_FILE_KINDS = {".csv.gz": "csv", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_ACCEPTED = ("pandas DataFrame/Series, polars DataFrame/LazyFrame/Series, numpy 1-D, 2-D or structured "
             "array, pyarrow Table/RecordBatch, dict of column -> list/array, or a path to a "
             ".csv, .csv.gz, .parquet or .pq file")
_QUANTILE_LEVELS = [i / 100 for i in range(101)]
# View types appeared after pyarrow 15, the oldest version keel supports.
_is_string_view, _is_binary_view, _is_list_view, _is_large_list_view = (
    getattr(pa.types, f"is_{name}", lambda _t: False)
    for name in ("string_view", "binary_view", "list_view", "large_list_view"))


def _is_stringlike(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or _is_string_view(t)


def _is_binarylike(t: pa.DataType) -> bool:
    return (pa.types.is_binary(t) or pa.types.is_large_binary(t) or _is_binary_view(t)
            or pa.types.is_fixed_size_binary(t))


def _is_varlist(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or _is_list_view(t) or _is_large_list_view(t)


@dataclass(frozen=True)
class DatasetDescription:
    """What a dataset is, without the data: identity, shape and distribution.

    Attributes:
        digest: ``"sha256:<hex>"`` of the canonical form of the content.
        schema: One ``{"name", "type", "nullable"}`` dict per column, in order.
        num_rows: Number of rows.
        profile: Per-column statistics, JSON-serialisable (no NaN or inf).
        source: File path/URI the data came from, if known.
        table: The normalised table the description was computed from.
    """

    digest: str
    schema: list[dict[str, Any]]
    num_rows: int
    profile: dict[str, Any]
    source: str | None
    table: pa.Table = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Return everything but the table, as plain JSON-serialisable types."""
        return {"digest": self.digest, "schema": self.schema, "num_rows": self.num_rows,
                "profile": self.profile, "source": self.source}


def to_arrow(data: Any, *, columns: list[str] | None = None) -> pa.Table:
    """Convert tabular input into one normalised ``pyarrow.Table``.

    Normalisation makes equal content look equal whatever container it came
    in: names become ``str``; metadata is dropped (after removing the pandas
    index columns it lists); dictionary columns are decoded; string/binary
    views become large strings/binaries; float NaN becomes null, as pandas
    does; chunks are combined.

    Args:
        data: A pandas DataFrame/Series, polars DataFrame/LazyFrame/Series,
            numpy 1-D/2-D/structured array, pyarrow Table/RecordBatch, dict of
            column -> list/array, or a path to a .csv/.csv.gz/.parquet/.pq file.
        columns: For a numpy array, the column names (default ``"0", "1", ...``);
            for any other input, the columns to keep, in this order.

    Returns:
        The normalised table.

    Raises:
        TypeError: ``data`` is of an unsupported kind.
        FileNotFoundError: ``data`` is a path that does not exist.
        ValueError: Unknown file extension, duplicate column names, a wrong
            number of ``columns`` for a numpy array, or unknown ``columns``.
    """
    if isinstance(data, np.ndarray):
        return _normalize(_from_numpy(data, columns))
    table = _normalize(_read_file(data) if isinstance(data, (str, os.PathLike)) else _from_object(data))
    if columns is None:
        return table
    names = [str(c) for c in columns]
    _check_unique(names)
    unknown = [c for c in names if c not in table.column_names]
    if unknown:
        raise InvalidInput(f"columns not found: {unknown}; available: {table.column_names}")
    return table.select(names)


def describe_dataset(data: Any, *, columns: list[str] | None = None, source: str | None = None,
                     max_categories: int = 50, histogram_bins: int = 20) -> DatasetDescription:
    """Describe a dataset by digest, schema and profile.

    Args:
        data: Anything :func:`to_arrow` accepts.
        columns: Passed to :func:`to_arrow`.
        source: Where the data lives; defaults to the path when ``data`` is one.
        max_categories: Most frequent values kept per categorical column;
            integer columns with at most this many distinct values also get
            frequencies.
        histogram_bins: Number of equal-width histogram bins for numerics.

    Returns:
        The description; its ``table`` holds the normalised data.

    Raises:
        TypeError, FileNotFoundError, ValueError: As :func:`to_arrow`; also
            ``ValueError`` for a negative ``max_categories`` or fewer than one bin.
    """
    if max_categories < 0:
        raise InvalidInput(f"max_categories must be >= 0, got {max_categories}")
    if histogram_bins < 1:
        raise InvalidInput(f"histogram_bins must be >= 1, got {histogram_bins}")
    table = to_arrow(data, columns=columns)
    if source is None and isinstance(data, (str, os.PathLike)):
        source = os.fsdecode(os.fspath(data))
    n = table.num_rows
    per_column = {name: _profile_column(col.combine_chunks(), n, max_categories, histogram_bins)
                  for name, col in zip(table.column_names, table.columns)}
    profile = {"columns": per_column, "num_rows": n, "num_columns": table.num_columns,
               "profile_version": PROFILE_VERSION}
    schema = [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in table.schema]
    return DatasetDescription(_digest(table), schema, n, profile, source, table)


def _check_unique(names: list[str]) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) < len(names) else []
    if dupes:
        raise InvalidInput(f"duplicate column name(s): {dupes}")


def _read_file(path: str | os.PathLike[str]) -> pa.Table:
    text = os.fsdecode(os.fspath(path))
    if not os.path.exists(text):
        raise FileNotFoundError(errno.ENOENT, "dataset file not found", text)
    kind = next((k for ext, k in _FILE_KINDS.items() if text.lower().endswith(ext)), None)
    if kind is None:
        ext = os.path.splitext(text)[1] or "(none)"
        raise InvalidInput(f"unsupported file extension {ext!r} for {text}; accepted: {', '.join(_FILE_KINDS)}")
    # Imported here: most callers pass in-memory data and never need them.
    if kind == "csv":
        import pyarrow.csv

        return pyarrow.csv.read_csv(text)  # gzip is detected from the extension
    import pyarrow.parquet

    return pyarrow.parquet.read_table(text)


def _from_numpy(arr: np.ndarray, columns: list[str] | None) -> pa.Table:
    if arr.dtype.names:
        arr = arr.reshape(-1)
        names, arrays = list(arr.dtype.names), [_numpy_column(arr[n]) for n in arr.dtype.names]
    elif arr.ndim in (1, 2):
        arrays = [_numpy_column(arr)] if arr.ndim == 1 else [_numpy_column(arr[:, i]) for i in range(arr.shape[1])]
        names = [str(i) for i in range(len(arrays))]
    else:
        raise InvalidInput(f"expected a 1-D, 2-D or structured numpy array, got {arr.ndim}-D")
    if columns is not None:
        if len(columns) != len(arrays):
            raise InvalidInput(f"expected {len(arrays)} column names for the numpy array, got {len(columns)}")
        names = [str(c) for c in columns]
    _check_unique(names)
    return pa.Table.from_arrays(arrays, names=names)


def _numpy_column(values: np.ndarray) -> pa.Array:
    # from_pandas maps None/NaN in object arrays to null, but costs ~30x on
    # numeric arrays, whose NaN _normalize_column turns into null anyway.
    if values.dtype == object:
        return pa.array(values, from_pandas=True)
    return pa.array(np.ascontiguousarray(values))


def _from_object(data: Any) -> pa.Table:
    module = type(data).__module__ or ""
    if module.startswith("pandas"):
        import pandas as pd  # already imported by whoever built ``data``

        data = data.to_frame() if isinstance(data, pd.Series) else data
        if isinstance(data, pd.DataFrame):
            _check_unique([str(c) for c in data.columns])
            # The index labels rows, it is not content: it must not reach the digest.
            return pa.Table.from_pandas(data, preserve_index=False)
    elif module.startswith("polars"):
        import polars as pl

        data = data.collect() if isinstance(data, pl.LazyFrame) else data
        data = data.to_frame() if isinstance(data, pl.Series) else data
        if isinstance(data, pl.DataFrame):
            return data.to_arrow()
    elif isinstance(data, pa.Table):
        return data
    elif isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    elif isinstance(data, Mapping):
        names = [str(k) for k in data]
        _check_unique(names)
        arrays = [v if isinstance(v, (pa.Array, pa.ChunkedArray))
                  else _numpy_column(v) if isinstance(v, np.ndarray) else pa.array(v)
                  for v in data.values()]
        return pa.Table.from_arrays(arrays, names=names)
    raise TypeError(f"unsupported data type {module}.{type(data).__qualname__}; expected {_ACCEPTED}")


def _normalize(table: pa.Table) -> pa.Table:
    pandas_meta = (table.schema.metadata or {}).get(b"pandas")
    if pandas_meta:
        # A Parquet file or arrow table written from pandas may hold the index
        # as columns; drop them so it digests like the DataFrame itself.
        index = json.loads(pandas_meta).get("index_columns", [])  # a RangeIndex entry is a dict
        table = table.drop_columns([c for c in index if isinstance(c, str) and c in table.column_names])
    names = [str(n) for n in table.column_names]
    _check_unique(names)
    columns = [_normalize_column(col) for col in table.columns]
    fields = [pa.field(name, col.type, nullable=f.nullable or col.null_count > 0)
              for name, f, col in zip(names, table.schema, columns)]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields)).combine_chunks()


def _normalize_column(col: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if _is_string_view(col.type):
        col = col.cast(pa.large_string())
    elif _is_binary_view(col.type):
        col = col.cast(pa.large_binary())
    elif pa.types.is_floating(col.type) and len(col):
        try:
            nan = pc.is_nan(col)
        except pa.ArrowNotImplementedError:  # e.g. float16 on older pyarrow
            return col
        if pc.any(nan).as_py():
            col = pc.if_else(nan, pa.scalar(None, col.type), col)
    return col


def _update(h: Any, data: Any) -> None:
    # Length-prefix every part so that no two different inputs can produce
    # the same byte stream by shifting bytes between adjacent parts.
    view = memoryview(data).cast("B")
    h.update(len(view).to_bytes(8, "little"))
    h.update(view)


def _canonical_type(t: pa.DataType) -> str:
    # Physical variants of one logical type (string vs large_string, list vs
    # large_list) depend on the producer (pandas, polars, Parquet), not the content.
    if _is_stringlike(t):
        return "string"
    if _is_binarylike(t) and not pa.types.is_fixed_size_binary(t):
        return "binary"
    if _is_varlist(t):
        return f"list<{_canonical_type(t.value_type)}>"
    if pa.types.is_fixed_size_list(t):
        return f"fixed_size_list<{_canonical_type(t.value_type)}>[{t.list_size}]"
    if pa.types.is_map(t):
        return f"map<{_canonical_type(t.key_type)}, {_canonical_type(t.item_type)}>"
    if pa.types.is_struct(t):
        return "struct<" + ", ".join(f"{f.name}: {_canonical_type(f.type)}" for f in t) + ">"
    return str(t)


def _digest(table: pa.Table) -> str:
    h = hashlib.sha256(_DIGEST_HEADER)
    h.update(table.num_rows.to_bytes(8, "little") + table.num_columns.to_bytes(8, "little"))
    for name, col in zip(table.column_names, table.columns):
        _update(h, name.encode("utf-8"))
        _update(h, _canonical_type(col.type).encode("utf-8"))
        _hash_array(h, col.combine_chunks())
    return "sha256:" + h.hexdigest()


def _le(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))


def _hash_array(h: Any, arr: pa.Array) -> None:
    t = arr.type
    h.update(b"\x01" if arr.null_count else b"\x00")
    if arr.null_count:
        _update(h, np.packbits(arr.is_null().to_numpy(zero_copy_only=False), bitorder="little"))
    if pa.types.is_null(t):
        return
    if pa.types.is_boolean(t):
        _update(h, np.packbits(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), bitorder="little"))
    elif pa.types.is_integer(t) or pa.types.is_floating(t):
        # Null slots hold arbitrary bytes in Arrow; zero them so they cannot leak in.
        _update(h, _le(pc.fill_null(arr, 0).to_numpy(zero_copy_only=False)))
    elif pa.types.is_temporal(t) and not pa.types.is_interval(t):
        # Dates, times, timestamps and durations are integers underneath; unit
        # and time zone are already in the hashed type string.
        _hash_array(h, arr.view(pa.int32() if t.bit_width == 32 else pa.int64()))
    elif pa.types.is_decimal(t):
        _hash_array(h, arr.cast(pa.string()))  # exact, and fixed by precision and scale
    elif _is_stringlike(t) or _is_binarylike(t):
        target, empty = (pa.large_string(), "") if _is_stringlike(t) else (pa.large_binary(), b"")
        arr = pc.fill_null(arr.cast(target), empty)
        buffers = arr.buffers()
        offsets = np.frombuffer(buffers[1], dtype="<i8", count=len(arr) + 1, offset=arr.offset * 8)
        _update(h, _le(offsets - offsets[0]))
        start, end = int(offsets[0]), int(offsets[-1])
        _update(h, memoryview(buffers[2])[start:end] if end > start else b"")
    elif pa.types.is_struct(t):
        for child in arr.flatten():  # flatten applies the struct's offset and validity
            _hash_array(h, child)
    elif pa.types.is_map(t):
        _hash_array(h, arr.cast(pa.list_(pa.struct([("key", t.key_type), ("value", t.item_type)]))))
    elif _is_varlist(t) or pa.types.is_fixed_size_list(t):
        # Lengths as int64 whatever the offset width, so list and large_list agree.
        lengths = pc.fill_null(pc.list_value_length(arr), 0).cast(pa.int64())
        _update(h, _le(lengths.to_numpy(zero_copy_only=False)))
        _hash_array(h, arr.flatten())  # flatten skips values behind null lists
    else:
        # Rare types (unions, intervals, extensions): slow but deterministic rows.
        _update(h, json.dumps(arr.to_pylist(), default=repr).encode("utf-8"))


def _kind(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    if _is_stringlike(t) or _is_binarylike(t):
        return "categorical"
    return "datetime" if pa.types.is_timestamp(t) or pa.types.is_date(t) else "other"


def _profile_column(arr: pa.Array, num_rows: int, max_categories: int, bins: int) -> dict[str, Any]:
    kind, missing = _kind(arr.type), arr.null_count  # NaN is null after normalisation
    prof: dict[str, Any] = {"type": str(arr.type), "kind": kind, "count": len(arr) - missing,
                            "missing": missing, "missing_share": missing / num_rows if num_rows else None,
                            "n_unique": None}
    valid = arr.drop_null()
    if kind == "numeric":
        prof.update(_numeric_stats(valid, bins))
        # Drift tests treat low-cardinality integers (codes, counts) as categories.
        if pa.types.is_integer(arr.type) and prof["n_unique"] <= max_categories:
            prof["frequencies"] = _frequencies(valid, max_categories)
        return prof
    try:
        prof["n_unique"] = pc.count_distinct(valid, mode="only_valid").as_py() if len(valid) else 0
    except pa.ArrowNotImplementedError:  # nested types have no hash kernel
        pass
    if kind in ("categorical", "boolean"):
        prof["frequencies"] = _frequencies(valid, max_categories)
    elif kind == "datetime":
        prof.update(_datetime_range(valid))
    return prof


def _numeric_stats(valid: pa.Array, bins: int) -> dict[str, Any]:
    t = valid.type
    # One sort serves distinct count, extremes, quantiles and histogram: several
    # times faster than hashing (count_distinct) plus np.quantile's partition.
    raw = np.sort((valid.cast(pa.float64()) if pa.types.is_decimal(t) else valid).to_numpy(zero_copy_only=False))
    values = raw.astype(np.float64, copy=False)
    finite = values[np.isfinite(values)]
    stats: dict[str, Any] = {
        "n_unique": int(np.count_nonzero(raw[1:] != raw[:-1])) + 1 if len(raw) else 0,
        "min": None, "max": None, "mean": None, "std": None, "quantiles": None, "histogram": None,
        "zeros": int(np.count_nonzero(values == 0)), "infinite": len(values) - len(finite)}
    if not len(finite):
        return stats
    lo, hi = float(finite[0]), float(finite[-1])
    # Integers keep exact extremes, even beyond 2**53 where float64 rounds.
    stats["min"], stats["max"] = (int(raw[0]), int(raw[-1])) if pa.types.is_integer(t) else (lo, hi)
    # Infinities fit neither JSON nor a finite-range histogram: they are
    # counted above and left out of the distribution.
    stats["mean"], stats["std"] = _finite(finite.mean()), _finite(finite.std())
    stats["quantiles"] = {"levels": list(_QUANTILE_LEVELS), "values": [_finite(q) for q in _quantiles(finite)]}
    # np.histogram's edges and [a, b) bins (the last one closed), found by
    # binary search on the sorted data instead of another pass over it.
    edges = np.histogram_bin_edges(finite[:1], bins=bins, range=(lo, hi))
    cuts = np.concatenate(([0], np.searchsorted(finite, edges[1:-1], side="left"), [len(finite)]))
    stats["histogram"] = {"edges": [float(e) for e in edges], "counts": [int(c) for c in np.diff(cuts)]}
    return stats


def _quantiles(ordered: np.ndarray) -> np.ndarray:
    # numpy's default "linear" method term for term (its lerp included, so the
    # results are bit-identical), on data that is already sorted.
    pos = np.asarray(_QUANTILE_LEVELS) * (len(ordered) - 1)
    below = np.floor(pos).astype(np.intp)
    gamma = pos - below
    a, b = ordered[below], ordered[np.minimum(below + 1, len(ordered) - 1)]
    return np.where(gamma >= 0.5, b - (b - a) * (1 - gamma), a + (b - a) * gamma)


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _frequencies(valid: pa.Array, max_categories: int) -> dict[str, Any]:
    values: list[Any] = []
    counts: list[int] = []
    if len(valid) and max_categories:
        vc = pc.value_counts(valid)
        table = pa.Table.from_arrays([vc.field("values"), vc.field("counts")], names=["values", "counts"])
        # Values are unique here, so (count desc, value asc) is a total order
        # and the "unstable" top-k selection is still deterministic.
        keys = [("counts", "descending"), ("values", "ascending")]
        top = table.take(pc.select_k_unstable(table, k=min(max_categories, len(table)), sort_keys=keys))
        values = [v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v
                  for v in top.column("values").to_pylist()]
        counts = top.column("counts").to_pylist()
    return {"values": values, "counts": counts, "other": len(valid) - sum(counts)}


def _datetime_range(valid: pa.Array) -> dict[str, Any]:
    if not len(valid):
        return {"min": None, "max": None}
    t = valid.type
    # Through integers and numpy: pyarrow's as_py() cannot hold nanoseconds.
    ints = valid.view(pa.int32() if t.bit_width == 32 else pa.int64()).to_numpy()
    extremes = [ints.min(), ints.max()]
    if pa.types.is_timestamp(t):  # tz-aware values are stored as UTC instants
        iso = np.datetime_as_string(np.array(extremes, f"datetime64[{t.unit}]"), timezone="UTC" if t.tz else "naive")
    else:
        iso = np.datetime_as_string(np.array(extremes, "datetime64[D]" if pa.types.is_date32(t) else "datetime64[ms]"),
                                    unit="D")
    return {"min": str(iso[0]), "max": str(iso[1])}
