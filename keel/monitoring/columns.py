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

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keel.errors import InvalidInput

__all__ = ["ColumnSummary", "Summary", "aligned_counts", "load_table", "summarize"]

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
    """A normalised Arrow table from anything ``keel.tracking.datasets.to_arrow`` accepts.

    Raises:
        InvalidInput: The file does not exist, cannot be parsed, or a column
            mixes types that Arrow cannot hold in one column.
    """
    from keel.tracking.datasets import to_arrow

    try:
        return to_arrow(data)
    except FileNotFoundError as exc:
        raise InvalidInput(f"{what} file not found: {exc.filename}") from exc
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInput(f"{what} could not be read as a table: {exc}. If a column mixes numbers and text, "
                           f"cast it to one type first.") from exc


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
    names, columns = table.column_names, table.columns
    workers = min(len(columns), os.cpu_count() or 1) or 1
    with ThreadPoolExecutor(workers) as pool:
        summaries = list(pool.map(lambda nc: summarize_column(nc[0], nc[1]), zip(names, columns)))
    return Summary(table.num_rows, {s.name: s for s in summaries}, source)


def summarize_column(name: str, column: pa.ChunkedArray | pa.Array) -> ColumnSummary:
    """Summarise one column (NaN counts as missing, as in keel's dataset profiles)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    t, rows = column.type, len(column)
    if pa.types.is_dictionary(t):
        column, t = column.cast(t.value_type), t.value_type
    kind = _kind(t)
    if kind == NUMERIC and pa.types.is_floating(t) and column.null_count < rows:
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, t), column)  # NaN is missing
    missing = rows if kind == EMPTY else column.null_count
    base = {"name": name, "type": str(t), "kind": kind, "rows": rows, "missing": missing}
    if kind in (NUMERIC, DATETIME):
        return ColumnSummary(**base, **_numeric(column.drop_null(), t))
    if kind == CATEGORICAL:
        return ColumnSummary(**base, **_categorical(column.drop_null()))
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


def _numeric(valid: pa.Array, t: pa.DataType) -> dict[str, Any]:
    if pa.types.is_decimal(t) or pa.types.is_floating(t) and t.bit_width != 64:
        valid = valid.cast(pa.float64())
    elif pa.types.is_temporal(t):
        valid = valid.view(pa.int32() if t.bit_width == 32 else pa.int64())
    # float64 everywhere: integers beyond 2**53 lose their last digits, which
    # no distribution test can see anyway.
    values = np.sort(valid.to_numpy(zero_copy_only=False).astype(np.float64, copy=False))
    finite = np.isfinite(values)
    non_finite = len(values) - int(np.count_nonzero(finite))
    if non_finite:
        values = values[finite]
    n_unique = int(np.count_nonzero(values[1:] != values[:-1])) + 1 if len(values) else 0
    return {"values": values, "non_finite": non_finite, "n_unique": n_unique}


def _categorical(valid: pa.Array) -> dict[str, Any]:
    if pa.types.is_string(valid.type) or getattr(pa.types, "is_string_view", lambda _t: False)(valid.type):
        valid = valid.cast(pa.large_string())  # one string type, so two sides' categories compare
    counts = pc.value_counts(valid)
    categories, freq = counts.field("values"), counts.field("counts")
    order = pc.sort_indices(categories)
    return {"categories": categories.take(order), "counts": freq.take(order).to_numpy().astype(np.int64),
            "n_unique": len(categories)}


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
