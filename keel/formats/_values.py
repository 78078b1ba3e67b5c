"""Reading and converting the values a model is given, for :mod:`keel.formats.signature`.

Every form of input a signature accepts (pandas and polars frames, records, a
dict of columns, arrays, lists of rows) is read here into plain columns, each
value sorted into a type category, and each column converted to a numpy dtype,
safely or not at all: a refusal names the column and shows an offending value.
Nothing here depends on the signature types: callers pass the numpy dtype to convert to.

pandas and polars are not imported to recognise their objects: they are looked
up in ``sys.modules``, so only a caller that already uses one of them pays for it.
"""

from __future__ import annotations

import datetime
import math
import sys
import warnings
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from keel.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

_ACCEPTED_FORMS = "a DataFrame, a list of records, a dict of columns, an array, or a list of rows"


# --- reading the accepted forms -------------------------------------------


def _columns_of(data: Any, what: str) -> tuple[list[str] | None, list[Any], int]:
    """Split any accepted form into (names or None for bare rows, columns, row count).

    Each column is a typed 1-D array, an object array or a list of Python values.
    """
    pd = sys.modules.get("pandas")
    pl = sys.modules.get("polars")
    if pd is not None and isinstance(data, pd.DataFrame):
        columns = [_pandas_values(a) for a in _pandas_arrays(data)]
        return [str(c) for c in data.columns.tolist()], columns, len(data)
    if pl is not None and isinstance(data, pl.DataFrame):
        return list(data.columns), [_polars_values(s) for s in data.get_columns()], data.height
    if isinstance(data, dict):
        return _dict_columns(data, what)
    if isinstance(data, (list, tuple)):
        if not data:
            return None, [], 0
        first = data[0]
        if isinstance(first, dict):
            return _record_columns(data, what)
        if isinstance(first, (list, tuple, np.ndarray)):
            width = len(first)
            for i, row in enumerate(data):
                if not isinstance(row, (list, tuple, np.ndarray)) or len(row) != width:
                    got = f"{len(row)} values" if hasattr(row, "__len__") else type(row).__name__
                    raise InvalidInput(f"{what} row {i} has {got}, expected {width} like row 0")
            return None, list(zip(*data)), len(data)
        return None, [[v] for v in data], 1  # a flat list is one row
    if isinstance(data, np.ndarray):
        if data.ndim == 1:
            return None, [data[j:j + 1] for j in range(data.shape[0])], 1
        if data.ndim == 2:
            return None, [data[:, j] for j in range(data.shape[1])], data.shape[0]
        raise InvalidInput(f"{what} must be a 2-D array (rows of columns), got a {data.ndim}-D array")
    if _is_series(data):
        raise InvalidInput(
            f"{what} must be {_ACCEPTED_FORMS}, got a Series; use a one-column or one-row DataFrame"
        )
    raise InvalidInput(f"{what} must be {_ACCEPTED_FORMS}, got {type(data).__name__}")


def _dict_columns(data: dict, what: str) -> tuple[list[str], list[Any], int]:
    names = [str(k) for k in data]
    values = list(data.values())
    listy = [_is_column_like(v) for v in values]
    if not any(listy):
        return names, [[v] for v in values], 1  # one record of scalars
    columns: list[Any] = []
    rows = -1
    for name, value, is_list in zip(names, values, listy):
        if not is_list:
            raise InvalidInput(
                f"{what} column {name!r} is a single value ({value!r}) while other columns are lists; "
                "send every column as a list, or one record of single values"
            )
        column = _series_array(value) if not isinstance(value, (list, tuple, np.ndarray)) else value
        if isinstance(column, np.ndarray) and column.ndim != 1:
            raise InvalidInput(f"{what} column {name!r} must be 1-D, got shape {column.shape}")
        if rows >= 0 and len(column) != rows:
            raise InvalidInput(
                f"{what} column {name!r} has {len(column)} values, but column {names[0]!r} has {rows}"
            )
        rows = len(column)
        columns.append(column)
    return names, columns, rows


def _record_columns(records: Sequence[Any], what: str) -> tuple[list[str], list[Any], int]:
    if len(records) == 1:  # the hot path of online serving: one request, one record
        only = records[0]
        return [str(k) for k in only], [[v] for v in only.values()], 1
    keys: dict[Any, None] = {}
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise InvalidInput(f"{what} record {i} must be a dict like record 0, got {type(record).__name__}")
        keys.update(dict.fromkeys(record))
    # A key absent from some records reads as a missing value there, as JSON clients drop nulls.
    return [str(k) for k in keys], [[r.get(k) for r in records] for k in keys], len(records)


def _is_column_like(value: Any) -> bool:
    if isinstance(value, (str, int, float, type(None))):
        return False
    if isinstance(value, (list, tuple)):
        return True
    if isinstance(value, np.ndarray):
        return value.ndim > 0
    return _is_series(value)


def _is_series(value: Any) -> bool:
    pd = sys.modules.get("pandas")
    pl = sys.modules.get("polars")
    return (pd is not None and isinstance(value, pd.Series)) or (pl is not None and isinstance(value, pl.Series))


def _is_frame(value: Any) -> bool:
    pd = sys.modules.get("pandas")
    pl = sys.modules.get("polars")
    return (pd is not None and isinstance(value, pd.DataFrame)) or (pl is not None and isinstance(value, pl.DataFrame))


def _is_tensor_form(data: Any) -> bool:
    """An array, or a list that is rows or a single row, rather than named columns."""
    if isinstance(data, np.ndarray):
        return True
    if isinstance(data, (list, tuple)):
        return bool(data) and not isinstance(data[0], dict)
    return False


# --- turning library columns into arrays -----------------------------------


def _series_array(series: Any) -> np.ndarray:
    if isinstance(series, np.ndarray):
        return series
    pl = sys.modules.get("polars")
    if pl is not None and isinstance(series, pl.Series):
        return _polars_values(series)
    return _pandas_values(series.array)


def _pandas_arrays(frame: pd.DataFrame) -> list[Any]:
    """Each column's array (numpy or pandas extension array), by position."""
    # _get_column_array skips building a Series per column (about 20x cheaper on
    # a one-row frame); fall back to the public route if pandas drops it.
    getter = getattr(frame, "_get_column_array", None)
    if getter is None:
        return [s.to_numpy() if isinstance(s.dtype, np.dtype) else s.array for _, s in frame.items()]
    return [getter(i) for i in range(frame.shape[1])]


def _pandas_values(values: Any) -> np.ndarray:
    """A pandas column's values as numpy, missing values as NaN (numbers) or None/NaN (objects)."""
    if isinstance(values, np.ndarray):
        return values
    dtype = values.dtype
    kind = getattr(dtype, "kind", "O")
    if kind == "M":
        if getattr(values, "tz", None) is not None:
            values = values.tz_convert("UTC").tz_localize(None)  # a model sees one clock: UTC
        return np.asarray(values)
    if kind in "iufb" and hasattr(dtype, "numpy_dtype"):  # nullable Int64/Float64/boolean, Arrow numbers
        if values.isna().any():
            return values.to_numpy(dtype=np.float64, na_value=np.nan)
        return values.to_numpy(dtype=dtype.numpy_dtype)
    return np.asarray(values, dtype=object)  # text, categories and anything else, checked value by value


def _polars_values(series: Any) -> np.ndarray:
    import polars as pl

    dtype = series.dtype
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        series = series.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    elif dtype in (pl.Categorical, pl.Enum):
        series = series.cast(pl.String)
    # Numbers with nulls come back as float with NaN, bools with nulls as objects.
    return series.to_numpy()


def _to_array(data: Any, what: str) -> np.ndarray:
    """Any array-like as an ndarray, without numpy quietly turning mixed values into text."""
    if isinstance(data, np.ndarray):
        return data
    if _is_frame(data):
        return data.to_numpy()
    if _is_series(data):
        return _series_array(data)
    try:
        array = np.asarray(data)
    except ValueError:
        raise InvalidInput(f"{what} rows must all have the same length") from None
    if array.dtype.kind in "USO":
        # np.asarray([1, "a"]) gives strings; look at the values themselves instead.
        objects = np.empty(array.shape, dtype=object)
        objects[...] = data if array.dtype.kind != "O" else array
        if array.dtype.kind != "O" and _categories(objects.ravel()) == {_STR}:
            return array
        return objects
    return array


# --- value categories ------------------------------------------------------

_BOOL, _INT, _FLOAT, _STR, _TIME, _MISSING, _OTHER = "bool", "int", "float", "string", "datetime", "missing", "other"
_CATEGORY: dict[type, str] = {bool: _BOOL, int: _INT, float: _FLOAT, str: _STR, type(None): _MISSING}


def _category(tp: type) -> str:
    cat = _CATEGORY.get(tp)
    if cat is None:
        if issubclass(tp, (bool, np.bool_)):
            cat = _BOOL
        elif issubclass(tp, (int, np.integer)):
            cat = _INT
        elif issubclass(tp, (float, np.floating)):
            cat = _FLOAT
        elif issubclass(tp, str):
            cat = _STR
        elif issubclass(tp, (datetime.date, np.datetime64)):
            cat = _TIME
        elif tp.__name__ in ("NAType", "NaTType"):  # pandas' markers, matched by name to avoid importing pandas
            cat = _MISSING
        else:
            cat = _OTHER
        _CATEGORY[tp] = cat  # a cache of a pure function: safe to share
    return cat


def _categories(values: Sequence[Any]) -> set[str]:
    return {_category(tp) for tp in set(map(type, values))}


def _is_missing(value: Any) -> bool:
    cat = _category(type(value))
    return cat == _MISSING or (cat == _FLOAT and math.isnan(value))


def _nan_only_floats(values: Sequence[Any]) -> bool:
    """True when every float among text values is NaN: pandas' way of writing a missing string."""
    return all(math.isnan(v) for v in values if _category(type(v)) == _FLOAT)


def _example(values: Any, cat: str) -> Any:
    for value in values:
        if _category(type(value)) == cat:
            return value
    return None


def _show(value: Any) -> str:
    if isinstance(value, np.generic):
        value = str(value) if isinstance(value, np.datetime64) else value.item()
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- conversion ------------------------------------------------------------

_PLAIN_NUMBERS = frozenset({float, int, bool, np.float64, np.float32, np.int64, np.int32})
_PLAIN_INTS = frozenset({int, bool, np.int64, np.int32})
_STR_ONLY = {str}


def _coerce(column: Any, target: np.dtype, label: str) -> np.ndarray:
    if isinstance(column, np.ndarray) and column.dtype != object:
        return _coerce_array(column, target, label)
    return _coerce_objects(column, target, label)


def _coerce_array(array: np.ndarray, target: np.dtype, label: str) -> np.ndarray:
    """Convert a typed array to ``target`` where that is safe; refuse otherwise."""
    if array.dtype == target:
        return array
    have, want = array.dtype.kind, target.kind
    if want == "O":  # string
        if have in "UT":
            return array.astype(object)
    elif want == "M":
        if have == "M":
            return array.astype(target)
    elif want == "f":
        if have in "biuf":
            return array.astype(target)
    elif have == "f":  # float into int or bool
        if np.isnan(array).any():
            raise InvalidInput(f"{label} has missing values; the model expects {_dtype_name(target)}")
        if want in "iu":
            fractional = array != np.trunc(array)
            if fractional.any():
                raise InvalidInput(
                    f"{label} must be {_dtype_name(target)}, got non-integral float values "
                    f"(e.g. {_show(array[fractional].flat[0])})"
                )
            return _narrow(array, target, label)
    elif want in "iu":
        if have == "b":
            return array.astype(target)
        if have in "iu":
            return array.astype(target) if np.can_cast(array.dtype, target) else _narrow(array, target, label)
    raise InvalidInput(
        f"{label} must be {_dtype_name(target)}, got {_describe(array)} values (e.g. {_show(array.flat[0])})"
    )


def _narrow(array: np.ndarray, target: np.dtype, label: str) -> np.ndarray:
    """int64 -> int32 and integral float -> int: allowed when every value fits."""
    info = np.iinfo(target)
    outside = (array < info.min) | (array > info.max)
    if outside.any():
        raise InvalidInput(
            f"{label} must be {_dtype_name(target)}, got values outside its range "
            f"(e.g. {_show(array[outside].flat[0])})"
        )
    return array.astype(target)


def _coerce_objects(values: Sequence[Any], target: np.dtype, label: str) -> np.ndarray:
    """Convert Python values (a list or an object array), checking each one's type."""
    types = set(map(type, values))
    want = target.kind
    # The common cases, decided from the types alone without sorting values into categories.
    if want == "f" and types <= _PLAIN_NUMBERS:
        return np.array(values, dtype=target)
    if want in "iu" and types <= _PLAIN_INTS:
        try:
            return _coerce_array(np.array(values, dtype=np.int64), target, label)
        except OverflowError:
            pass  # beyond int64: the general road below words the refusal
    if want == "O" and types == _STR_ONLY:
        return np.array(values, dtype=object)
    cats = {_category(tp) for tp in types}
    if want == "O":
        if _FLOAT in cats and _nan_only_floats(values):
            cats = (cats - {_FLOAT}) | {_MISSING}
        _refuse(cats - {_STR, _MISSING}, values, target, label)
        out = np.array(values, dtype=object)
        if _MISSING in cats:
            out[[_is_missing(v) for v in out]] = None
        return out
    if want == "M":
        _refuse(cats - {_TIME, _STR, _MISSING}, values, target, label)
        return _to_datetimes(values, target, label)
    _refuse(cats - {_BOOL, _INT, _FLOAT, _MISSING}, values, target, label)
    if _MISSING in cats:  # as NaN: float inputs keep it, _coerce_array refuses it for the rest
        values = [np.nan if _is_missing(v) else v for v in values]
    if want == "b":
        _refuse(cats - {_BOOL}, values, target, label)
    source = np.float64 if cats & {_FLOAT, _MISSING} else (np.bool_ if cats == {_BOOL} else np.int64)
    try:
        array = np.array(values, dtype=source)
    except OverflowError:
        try:  # past int64, but perhaps not past uint64 (or a float input)
            return np.array(values, dtype=target)
        except OverflowError:
            info = np.iinfo(target)
            value = next(v for v in values if not info.min <= v <= info.max)
            raise InvalidInput(
                f"{label} must be {_dtype_name(target)}, got values outside its range (e.g. {_show(value)})"
            ) from None
    return _coerce_array(array, target, label)


def _refuse(bad: set[str], values: Sequence[Any], target: np.dtype, label: str) -> None:
    if not bad:
        return
    cat = next(c for c in (_STR, _TIME, _OTHER, _FLOAT, _INT, _BOOL) if c in bad)
    value = _example(values, cat)
    kind = type(value).__name__ if cat == _OTHER else cat
    raise InvalidInput(f"{label} must be {_dtype_name(target)}, got {kind} values (e.g. {_show(value)})")


def _to_datetimes(values: Sequence[Any], target: np.dtype, label: str) -> np.ndarray:
    clean = [None if _is_missing(v) else v for v in values]
    with warnings.catch_warnings():
        # numpy warns when it converts "...Z" or "+02:00" to UTC; UTC is what we want.
        warnings.simplefilter("ignore")
        try:
            return np.array(clean, dtype="datetime64[ns]")
        except (ValueError, TypeError, OverflowError):
            pass
        for value in clean:
            try:
                np.array([value], dtype="datetime64[ns]")
            except (ValueError, TypeError, OverflowError):
                raise InvalidInput(
                    f"{label} must be {_dtype_name(target)}, got values that are not dates (e.g. {_show(value)})"
                ) from None
    raise InvalidInput(f"{label} must be {_dtype_name(target)}, got values that are not dates")


def _describe(array: np.ndarray) -> str:
    kind = array.dtype.kind
    if kind in "UST":
        return "string"
    if kind == "M":
        return "datetime"
    if kind == "m":
        return "timedelta"
    return array.dtype.name


def _dtype_name(dtype: np.dtype) -> str:
    """The name a signature gives ``dtype``: "string" for the object dtype that holds text."""
    return "string" if dtype.kind == "O" else dtype.name
