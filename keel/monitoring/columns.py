"""One side of a comparison, summarised once per column.

A :class:`Summary` keeps what every drift test and data-quality check needs
from one side, and nothing else:

- numeric and datetime columns: the finite values, sorted (float64), and the
  count of infinite ones;
- categorical and boolean columns: the distinct values and their counts;
- every column: its Arrow type, its kind, its row and missing counts.

A reference is summarised once (:func:`summarize`) and compared with any
number of windows: a window costs its own sort or count, and the tests then
binary-search into the reference. A summary could equally be built from a
logged dataset profile (``keel.tracking.datasets``: 101 quantiles, category
frequencies, missing counts), with the quantiles standing in for the sorted
values; that is why tests take these summaries and never the raw table.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keel.errors import InvalidInput

__all__ = ["ColumnSummary", "Summary", "aligned_counts", "comparable", "load_table", "summarize"]

# Kinds a column can have; only numeric and categorical columns get a test by default.
NUMERIC, CATEGORICAL, DATETIME, EMPTY, OTHER = "numeric", "categorical", "datetime", "empty", "other"


@dataclass(frozen=True)
class ColumnSummary:
    """One column of one side.

    Attributes:
        name: Column name.
        type: Arrow type, as text (``"double"``, ``"large_string"``, ...).
        kind: ``numeric``, ``categorical`` (strings, booleans), ``datetime``,
            ``empty`` (Arrow's null type: no value at all) or ``other``.
        rows: Rows on this side.
        missing: Null (or NaN) values.
        values: numeric/datetime: finite values sorted ascending.
        non_finite: numeric: +-inf values, left out of ``values``.
        categories: categorical: distinct values (an Arrow array), sorted.
        counts: categorical: count of each of ``categories``.
        n_unique: Distinct non-missing values.
    """

    name: str
    type: str
    kind: str
    rows: int
    missing: int
    values: np.ndarray | None = field(default=None, repr=False)
    non_finite: int = 0
    categories: pa.Array | None = field(default=None, repr=False)
    counts: np.ndarray | None = field(default=None, repr=False)
    n_unique: int = 0

    @property
    def present(self) -> int:
        """Non-missing values (infinite ones included)."""
        return self.rows - self.missing

    @property
    def integer(self) -> bool:
        return self.type.startswith(("int", "uint"))

    def category_counts(self) -> tuple[pa.Array, np.ndarray]:
        """Distinct values and counts: stored for categorical columns, derived from the sorted values otherwise."""
        if self.categories is not None and self.counts is not None:
            return self.categories, self.counts
        values = self.values if self.values is not None else np.empty(0)
        if not len(values):
            return pa.array(values), np.zeros(0, np.int64)
        last = np.empty(len(values), dtype=bool)
        last[:-1] = values[1:] != values[:-1]
        last[-1] = True
        ends = np.flatnonzero(last) + 1
        return pa.array(values[ends - 1]), np.diff(ends, prepend=0)


@dataclass(frozen=True)
class Summary:
    """Every column of one side, in the side's column order."""

    rows: int
    columns: dict[str, ColumnSummary]
    source: str | None = None


def load_table(data: Any, *, what: str = "data") -> pa.Table:
    """An Arrow table from a CSV/Parquet path, or anything ``keel.tracking.datasets.to_arrow`` accepts.

    Files are read with their text columns dictionary-encoded: categories are
    then counted over small integer codes instead of hashing every string.

    Raises:
        InvalidInput: The file does not exist, has an unknown extension or
            cannot be parsed, or a column mixes types that Arrow cannot hold in one column.
    """
    try:
        if isinstance(data, (str, os.PathLike)):
            return _read_file(os.fsdecode(os.fspath(data)), what)
        from keel.tracking.datasets import to_arrow

        return to_arrow(data)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInput(f"{what} could not be read as a table: {exc}. If a column mixes numbers and text, "
                           f"cast it to one type first.") from exc


def _read_file(path: str, what: str) -> pa.Table:
    lower = path.lower()
    if not lower.endswith((".parquet", ".pq", ".csv", ".csv.gz")):
        raise InvalidInput(f"{what} file {path}: unsupported extension; expected .csv, .csv.gz, .parquet or .pq")
    if not os.path.exists(path):
        raise InvalidInput(f"{what} file not found: {path}")
    if lower.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        table = pq.read_table(path, read_dictionary=text)
        index = json.loads((schema.metadata or {}).get(b"pandas", b"{}")).get("index_columns", [])
        # A file written from pandas may hold its index as columns: that is not data.
        return table.drop_columns([c for c in index if isinstance(c, str) and c in table.column_names])
    import pyarrow.csv as pcsv

    return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(auto_dict_encode=True))


def summarize(data: Any, *, source: str | None = None, what: str = "data") -> Summary:
    """Summarise every column of ``data`` (a table, a path, or anything :func:`load_table` takes).

    Columns are summarised in parallel threads: the sorts and counts run in
    numpy and Arrow, outside the GIL.
    """
    if isinstance(data, Summary):
        return data
    if source is None and isinstance(data, (str, os.PathLike)):
        source = os.fsdecode(os.fspath(data))
    table = data if isinstance(data, pa.Table) else load_table(data, what=what)
    names = table.column_names
    if len(set(names)) < len(names):
        raise InvalidInput(f"{what} has duplicate column names: {sorted({n for n in names if names.count(n) > 1})}")
    workers = min(len(names), os.cpu_count() or 1) or 1
    with ThreadPoolExecutor(workers) as pool:
        summaries = list(pool.map(summarize_column, names, table.columns))
    return Summary(table.num_rows, {s.name: s for s in summaries}, source)


def summarize_column(name: str, column: pa.ChunkedArray | pa.Array) -> ColumnSummary:
    """Summarise one column (NaN counts as missing, as in keel's dataset profiles)."""
    t, rows = column.type, len(column)
    value_type = t.value_type if pa.types.is_dictionary(t) else t
    kind = _kind(value_type)
    base = {"name": name, "type": str(value_type), "kind": kind, "rows": rows, "missing": column.null_count}
    if kind == EMPTY:
        return ColumnSummary(**{**base, "missing": rows})
    valid = column.drop_null() if column.null_count else column
    if kind in (NUMERIC, DATETIME):
        numeric = _numeric(valid, value_type)
        base["missing"] += numeric.pop("nan")
        return ColumnSummary(**base, **numeric)
    if kind == CATEGORICAL:
        return ColumnSummary(**base, **_categorical(valid))
    return ColumnSummary(**base)


def _kind(t: pa.DataType) -> str:
    if pa.types.is_null(t):
        return EMPTY
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return NUMERIC
    if pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        return CATEGORICAL
    if getattr(pa.types, "is_string_view", lambda _t: False)(t):
        return CATEGORICAL
    if pa.types.is_temporal(t) and not pa.types.is_interval(t):
        return DATETIME
    return OTHER


def _numeric(valid: pa.ChunkedArray | pa.Array, t: pa.DataType) -> dict[str, Any]:
    if pa.types.is_decimal(t):
        valid = valid.cast(pa.float64())
    elif pa.types.is_temporal(t):
        valid = valid.cast(pa.int32() if t.bit_width == 32 else pa.int64())
    # One copy, sorted in place. float64 everywhere: integers beyond 2**53
    # lose their last digits, which no distribution test can see anyway.
    values = valid.to_numpy(zero_copy_only=False) if len(valid) else np.empty(0)
    if values.dtype != np.float64 or not values.flags.writeable:
        values = values.astype(np.float64)
    values.sort()
    # Sorted: -inf first, then finite values, +inf, NaN last.
    lo = int(np.searchsorted(values, -np.inf, side="right"))
    hi = int(np.searchsorted(values, np.inf, side="left"))
    top = int(np.searchsorted(values, np.nan, side="left"))
    finite = values[lo:hi]
    n_unique = int(np.count_nonzero(finite[1:] != finite[:-1])) + 1 if len(finite) else 0
    return {"values": finite, "non_finite": lo + top - hi, "nan": len(values) - top, "n_unique": n_unique}


def _categorical(valid: pa.ChunkedArray | pa.Array) -> dict[str, Any]:
    counts = pc.value_counts(valid)
    categories, freq = counts.field("values"), counts.field("counts")
    if pa.types.is_dictionary(categories.type):
        categories = categories.cast(categories.type.value_type)
    if pa.types.is_string(categories.type) or getattr(pa.types, "is_string_view", lambda _t: False)(categories.type):
        categories = categories.cast(pa.large_string())  # one string type, so two sides' categories compare
    order = pc.sort_indices(categories)
    return {"categories": categories.take(order), "counts": freq.take(order).to_numpy().astype(np.int64),
            "n_unique": len(categories)}


def comparable(ref: ColumnSummary, cur: ColumnSummary) -> bool:
    """Whether two sides of a column can be compared: same kind, and booleans never against text."""
    return ref.kind == cur.kind and (ref.kind != CATEGORICAL or (ref.type == "bool") == (cur.type == "bool"))


def aligned_counts(ref: ColumnSummary, cur: ColumnSummary) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """The union of both sides' categories (or distinct values), sorted, and each side's counts over it."""
    rk, rc = ref.category_counts()
    ck, cc = cur.category_counts()
    if ck.type != rk.type:
        ck = ck.cast(rk.type)
    keys = pa.concat_arrays([rk, ck]).unique()
    keys = keys.take(pc.sort_indices(keys))
    r = np.zeros(len(keys), np.int64)
    c = np.zeros(len(keys), np.int64)
    r[pc.index_in(rk, value_set=keys).to_numpy()] = rc
    c[pc.index_in(ck, value_set=keys).to_numpy()] = cc
    return keys, r, c
