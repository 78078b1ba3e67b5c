"""Model signatures: the names, dtypes and shapes a model takes and returns.

A signature is inferred once from an input example when a model is logged,
stored as plain data (:meth:`Signature.to_dict`), and enforced on every
``predict`` by :func:`prepare_input`, which refuses bad input with a message
naming the column and hands the model exactly what it was trained on.

pandas and polars are imported only when the caller hands us one of their
objects or asks for a DataFrame back, so plain-array serving never pays for
them.
"""

from __future__ import annotations

import datetime
import math
import sys
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from keel.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DTYPES", "Signature", "TensorSpec", "infer_outputs", "infer_signature", "prepare_input"]

#: Every dtype a TensorSpec may name: numpy dtype names, plus "string" for text.
DTYPES: tuple[str, ...] = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "string", "datetime64[ns]",
)
_NUMPY = {name: np.dtype(object if name == "string" else name) for name in DTYPES}
_ACCEPTED_FORMS = "a DataFrame, a list of records, a dict of columns, an array, or a list of rows"


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output.

    Attributes:
        name: The column name, or ``"input"``/``"output"`` for a plain tensor.
        dtype: One of :data:`DTYPES`.
        shape: The full shape, ``-1`` for the batch dimension (and for any
            other dimension whose size may vary): ``(-1,)`` for a column,
            ``(-1, 20)`` for rows of 20 values.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if isinstance(self.shape, list):
            object.__setattr__(self, "shape", tuple(self.shape))
        problem = _spec_problem(self.name, self.dtype, self.shape)
        if problem:
            raise InvalidInput(f"TensorSpec {problem[0]} {problem[1]}")


@dataclass(frozen=True)
class Signature:
    """What a model takes and returns.

    Attributes:
        inputs: One spec per input column (``columnar``) or the one input tensor.
        outputs: One spec per output; empty when no output example was given.
        columnar: True when inputs are named columns (a frame or records);
            False when the model takes one tensor.
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    columnar: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        if not isinstance(self.columnar, bool):
            raise InvalidInput(f"signature field 'columnar' must be true or false, got {self.columnar!r}")
        if not self.inputs:
            raise InvalidInput("signature field 'inputs' must name at least one input, got none")
        if not self.columnar and len(self.inputs) != 1:
            raise InvalidInput(
                f"signature field 'inputs' must hold exactly one tensor when columnar is false, "
                f"got {len(self.inputs)}"
            )
        for field in ("inputs", "outputs"):
            seen: set[str] = set()
            for i, spec in enumerate(getattr(self, field)):
                if not isinstance(spec, TensorSpec):
                    raise InvalidInput(
                        f"signature field '{field}[{i}]' must be a TensorSpec, got {type(spec).__name__}"
                    )
                if spec.name in seen:
                    raise InvalidInput(f"signature field '{field}[{i}].name' repeats {spec.name!r}")
                seen.add(spec.name)
                if field == "inputs" and self.columnar and spec.shape != (-1,):
                    raise InvalidInput(
                        f"signature field 'inputs[{i}].shape' must be [-1] in a columnar signature, "
                        f"got {list(spec.shape)}"
                    )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe data; :meth:`from_dict` reads it back."""
        return {
            "inputs": [_spec_to_dict(s) for s in self.inputs],
            "outputs": [_spec_to_dict(s) for s in self.outputs],
            "columnar": self.columnar,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Signature:
        """Read a signature written by :meth:`to_dict`.

        Unknown keys are ignored so that a file written by a newer keel still loads.

        Raises:
            InvalidInput: a field is missing or malformed; the message names it.
        """
        if not isinstance(data, dict):
            raise InvalidInput(f"signature must be a dict, got {type(data).__name__}")
        for key in ("inputs", "columnar"):
            if key not in data:
                raise InvalidInput(f"signature is missing field {key!r}")
        specs = {field: _specs_from_list(field, data.get(field, [])) for field in ("inputs", "outputs")}
        return cls(inputs=specs["inputs"], outputs=specs["outputs"], columnar=data["columnar"])

    @cached_property
    def _plan(self) -> _Plan:
        # Computed once per signature: prepare_input reads it on every call.
        return _Plan(self.inputs)


class _Plan:
    """What prepare_input needs about a columnar signature, precomputed."""

    def __init__(self, specs: tuple[TensorSpec, ...]) -> None:
        self.names = [s.name for s in specs]
        self.name_set = set(self.names)
        self.listing = ", ".join(self.names)
        self.dtypes = [_NUMPY[s.dtype] for s in specs]
        distinct = set(self.dtypes)
        if len(distinct) == 1:
            self.common = self.dtypes[0]
        elif any(d.kind in "OM" for d in distinct):
            self.common = np.dtype(object)  # text or dates beside numbers: only object holds both
        else:
            self.common = np.result_type(*distinct)
        # Set when every column shares one array-friendly dtype: a 2-D array of it passes untouched.
        self.uniform = self.common if len(distinct) == 1 and self.common.kind != "O" else None
        # Set when every column is int or float and the result is float: plain Python numbers can
        # then become the result in one numpy call, checking only the int columns afterwards.
        self.numeric = self.common.kind == "f" and all(d.kind in "iuf" for d in self.dtypes)
        self.int_columns = [(j, np.iinfo(d)) for j, d in enumerate(self.dtypes) if d.kind in "iu"]


def infer_signature(input_example: Any, output_example: Any = None) -> Signature:
    """Infer a signature from an example of the model's input (and its prediction).

    Args:
        input_example: A pandas or polars DataFrame, a list of records, a dict
            of columns or one record (columnar signature), or an array or list
            of rows (tensor signature; a 1-D array is one row).
        output_example: The model's prediction on ``input_example``, or None.

    Returns:
        The signature; ``outputs`` is empty when ``output_example`` is None.

    Raises:
        InvalidInput: the example is empty, of an unsupported form, or a
            column mixes types.
    """
    if _is_tensor_form(input_example):
        array = _to_array(input_example, "input example")
        if array.ndim == 0:
            raise InvalidInput("input example must be rows of values, got a single scalar")
        if array.ndim == 1:
            array = array[np.newaxis]  # one row, as prepare_input reads a 1-D array
        if array.shape[0] == 0:
            raise InvalidInput("input example has no rows")
        dtype = _infer_dtype(array.ravel() if array.dtype == object else array, "input example")
        inputs: tuple[TensorSpec, ...] = (TensorSpec("input", dtype, (-1, *array.shape[1:])),)
        columnar = False
    else:
        names, columns, rows = _columns_of(input_example, "input example")
        if rows == 0:
            raise InvalidInput("input example has no rows")
        if not names:
            raise InvalidInput("input example has no columns")
        _refuse_duplicates(names, "input example")
        inputs = tuple(
            TensorSpec(name, _infer_dtype(col, f"input example column {name!r}"), (-1,))
            for name, col in zip(names, columns)
        )
        columnar = True
    outputs = () if output_example is None else infer_outputs(output_example)
    return Signature(inputs=inputs, outputs=outputs, columnar=columnar)


def infer_outputs(prediction: Any, name: str = "output") -> tuple[TensorSpec, ...]:
    """Specs for a model's prediction on an example.

    A 1-D array, list or Series gives one spec of shape ``(-1,)`` named
    ``name``; a 2-D array (e.g. class probabilities) gives ``(-1, k)``; a
    DataFrame or records give one spec per column; a dict gives one spec per
    key, each inferred like an array.

    Raises:
        InvalidInput: the prediction is a scalar, empty, or mixes types.
    """
    if _is_series(prediction):
        return (_output_spec(name, _series_array(prediction)),)
    if isinstance(prediction, dict):
        return tuple(_output_spec(str(k), _to_array(v, f"output {k!r}")) for k, v in prediction.items())
    if _is_tensor_form(prediction) or isinstance(prediction, (int, float, str, np.generic)):
        return (_output_spec(name, _to_array(prediction, "output example")),)
    names, columns, rows = _columns_of(prediction, "output example")
    if rows == 0:
        raise InvalidInput("output example has no rows")
    _refuse_duplicates(names, "output example")
    return tuple(
        TensorSpec(col_name, _infer_dtype(col, f"output column {col_name!r}"), (-1,))
        for col_name, col in zip(names, columns)
    )


def prepare_input(signature: Signature, data: Any, *, as_frame: bool = False) -> np.ndarray | pd.DataFrame:
    """Check ``data`` against the signature and convert it for the model.

    Columns may come in any order and are put in the signature's. Safe
    widenings (bool to int, int to float, float32 to float64, int32 to int64)
    are applied silently; a float column is accepted by an int input only
    when every value is integral. NaN is allowed in float inputs only.

    Args:
        signature: The model's signature.
        data: Any form :func:`infer_signature` accepts. A columnar signature
            also takes a 2-D array or list of rows whose width matches (columns
            in signature order) and a single record (a dict of scalars).
        as_frame: Return a pandas DataFrame with exactly the signature's
            columns and dtypes instead of an array.

    Returns:
        For a columnar signature, a 2-D array with columns in signature order
        and their common dtype (object when text or dates sit beside numbers),
        or the DataFrame. For a tensor signature, an array of the signature's
        dtype and shape. Input that already matches is returned without a copy.

    Raises:
        InvalidInput: a column is missing, unexpected or of the wrong type, the
            shape is wrong, or there are no rows. The message names the column.
    """
    if signature.columnar:
        return _prepare_columns(signature, data, as_frame)
    spec = signature.inputs[0]
    if not _is_tensor_form(data) and not _is_frame(data):
        raise InvalidInput(
            f"the model takes one tensor input, not named columns; send an array or a list of rows, "
            f"got {type(data).__name__}"
        )
    array = _to_array(data, "input")
    want = spec.shape
    if array.ndim == len(want) - 1:
        array = array[np.newaxis]  # one row without its batch dimension
    label = "input" if spec.name == "input" else f"input {spec.name!r}"
    if array.ndim != len(want):
        raise InvalidInput(
            f"{label} must have {len(want)} dimensions (shape {_shape_text(want)}), got {array.ndim}"
        )
    if array.shape[0] == 0:
        raise InvalidInput(f"{label} has no rows")
    for got, expected in zip(array.shape[1:], want[1:]):
        if expected != -1 and got != expected:
            if len(want) == 2:
                raise InvalidInput(f"{label} must have {expected} columns, got {got}")
            raise InvalidInput(f"{label} must have shape {_shape_text(want)}, got {tuple(array.shape)}")
    if array.dtype == object:
        result = _coerce_objects(array.ravel(), spec, label).reshape(array.shape)
    else:
        result = _coerce_array(array, spec, label)
    if not as_frame:
        return result
    if result.ndim != 2:
        raise InvalidInput(f"as_frame needs a 2-D input; the model's input has shape {_shape_text(want)}")
    import pandas as pd

    return pd.DataFrame(result)


# --- columnar input -------------------------------------------------------


def _prepare_columns(signature: Signature, data: Any, as_frame: bool) -> np.ndarray | pd.DataFrame:
    plan: _Plan = signature._plan
    specs = signature.inputs
    if (  # hot path: a 2-D array of the one dtype every column has goes through untouched
        not as_frame and plan.uniform is not None and isinstance(data, np.ndarray)
        and data.dtype == plan.uniform and data.ndim == 2 and data.shape[0] > 0 and data.shape[1] == len(specs)
    ):
        return data
    if as_frame and _is_exact_frame(data, plan):
        return data  # nothing to check or convert: hand it back rather than rebuild it
    names, columns, rows = _columns_of(data, "input")
    if rows == 0:
        raise InvalidInput("input has no rows")
    if names is None:
        if len(columns) != len(specs):
            raise InvalidInput(f"input must have {len(specs)} columns, got {len(columns)}")
    elif names != plan.names:
        columns = _reorder(names, columns, plan)
    if not as_frame and plan.numeric:
        fast = _plain_numbers(columns, plan)
        if fast is not None:
            return fast
    converted = [
        col if type(col) is np.ndarray and col.dtype == dtype and dtype.kind != "O"
        else _coerce(col, spec, f"input column {spec.name!r}")
        for col, spec, dtype in zip(columns, specs, plan.dtypes)
    ]
    if as_frame:
        return _frame(converted, plan)
    if plan.common.kind == "O":
        # datetime64[ns] turns into bare integers in an object array; keep the datetime64 values.
        converted = [np.array(list(c), dtype=object) if c.dtype.kind == "M" else c for c in converted]
    return np.stack(converted, axis=1, dtype=plan.common, casting="unsafe")


_PLAIN_NUMBERS = frozenset({float, int, bool, np.float64, np.float32, np.int64, np.int32})
_PLAIN_INTS = frozenset({int, bool, np.int64, np.int32})
_STR_ONLY = {str}


def _plain_numbers(columns: list[Any], plan: _Plan) -> np.ndarray | None:
    """The whole result in one numpy call when every value is a plain number; None to take the slow road.

    Records and rows from a JSON request are Python lists; converting each column
    on its own costs a few microseconds apiece, which dominates a one-row request.
    """
    types: set[type] = set()
    for col in columns:
        if not isinstance(col, (list, tuple)):
            return None
        types.update(map(type, col))
    if not types <= _PLAIN_NUMBERS:
        return None
    try:
        matrix = np.array(columns, dtype=plan.common)
    except OverflowError:
        return None
    for j, info in plan.int_columns:
        col = matrix[j]
        # NaN fails the equality; anything the slow road refuses it explains properly.
        if not ((col == np.trunc(col)).all() and col.min() >= info.min and col.max() <= info.max):
            return None
    return np.ascontiguousarray(matrix.T)


def _reorder(names: list[str], columns: list[Any], plan: _Plan) -> list[Any]:
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in index:
            raise InvalidInput(f"input column {name!r} appears more than once")
        index[name] = i
    missing = [name for name in plan.names if name not in index]
    if missing:
        listed = ", ".join(repr(m) for m in missing)
        noun = "column" if len(missing) == 1 else "columns"
        raise InvalidInput(f"missing input {noun} {listed} (expected columns: {plan.listing})")
    extra = [name for name in names if name not in plan.name_set]
    if extra:
        listed = ", ".join(repr(e) for e in extra)
        noun = "column" if len(extra) == 1 else "columns"
        raise InvalidInput(f"unexpected input {noun} {listed}; the model takes: {plan.listing}")
    return [columns[index[name]] for name in plan.names]


def _frame(converted: list[np.ndarray], plan: _Plan) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(dict(zip(plan.names, converted)), columns=plan.names)


def _is_exact_frame(data: Any, plan: _Plan) -> bool:
    """A pandas frame with the signature's columns, in order, of exactly its dtypes."""
    pd = sys.modules.get("pandas")
    return (
        pd is not None and isinstance(data, pd.DataFrame) and len(data) > 0
        and data.columns.tolist() == plan.names
        and all(_same_frame_dtype(col.dtype, want) for col, want in zip(_pandas_arrays(data), plan.dtypes))
    )


def _same_frame_dtype(have: Any, want: np.dtype) -> bool:
    if want.kind == "O":  # a "string" input: pandas' own text dtypes qualify, object may hold anything
        return getattr(have, "name", "") in ("str", "string")
    return have == want


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


# --- inference -------------------------------------------------------------


def _infer_dtype(column: Any, label: str) -> str:
    if isinstance(column, np.ndarray) and column.dtype != object:
        kind = column.dtype.kind
        if kind in "biuf" and column.dtype.name in DTYPES:
            return column.dtype.name
        if kind in "UT":
            return "string"
        if kind == "M":
            return "datetime64[ns]"
        raise InvalidInput(
            f"{label} has dtype {column.dtype}, which a signature cannot hold; supported: {', '.join(DTYPES)}"
        )
    cats = _categories(column)
    if _STR in cats and _FLOAT in cats and _nan_only_floats(column):
        cats.discard(_FLOAT)
    present = cats - {_MISSING}
    if not present:
        raise InvalidInput(f"{label} has only missing values; its type cannot be inferred")
    if _OTHER in present:
        value = _example(column, _OTHER)
        raise InvalidInput(
            f"{label} holds {type(value).__name__} values (e.g. {_show(value)}), which a signature cannot hold"
        )
    if present == {_STR}:
        return "string"
    if present == {_TIME}:
        return "datetime64[ns]"
    if present <= {_BOOL, _INT, _FLOAT}:
        if present == {_BOOL} and _MISSING not in cats:
            return "bool"
        if present <= {_BOOL, _INT} and _MISSING not in cats:
            return "int64"
        return "float64"  # as pandas does: a missing value makes an int column float
    first, second = sorted(present)[:2]
    raise InvalidInput(
        f"{label} mixes {first} and {second} values (e.g. {_show(_example(column, first))} and "
        f"{_show(_example(column, second))}); a column must hold one type"
    )


def _output_spec(name: str, array: np.ndarray) -> TensorSpec:
    if array.ndim == 0:
        raise InvalidInput(f"output {name!r} must hold one prediction per input row, got a single scalar")
    if array.shape[0] == 0:
        raise InvalidInput(f"output {name!r} has no rows")
    dtype = _infer_dtype(array.ravel() if array.dtype == object else array, f"output {name!r}")
    return TensorSpec(name, dtype, (-1, *array.shape[1:]))


def _refuse_duplicates(names: list[str] | None, what: str) -> None:
    if names is not None and len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise InvalidInput(f"{what} column {twice!r} appears more than once")


# --- conversion ------------------------------------------------------------


def _coerce(column: Any, spec: TensorSpec, label: str) -> np.ndarray:
    if isinstance(column, np.ndarray) and column.dtype != object:
        return _coerce_array(column, spec, label)
    return _coerce_objects(column, spec, label)


def _coerce_array(array: np.ndarray, spec: TensorSpec, label: str) -> np.ndarray:
    """Convert a typed array to the spec's dtype where that is safe; refuse otherwise."""
    target = _NUMPY[spec.dtype]
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
            raise InvalidInput(f"{label} has missing values; the model expects {spec.dtype}")
        if want in "iu":
            fractional = array != np.trunc(array)
            if fractional.any():
                raise InvalidInput(
                    f"{label} must be {spec.dtype}, got non-integral float values "
                    f"(e.g. {_show(array[fractional].flat[0])})"
                )
            return _narrow(array, target, spec, label)
    elif want in "iu":
        if have == "b":
            return array.astype(target)
        if have in "iu":
            return array.astype(target) if np.can_cast(array.dtype, target) else _narrow(array, target, spec, label)
    raise InvalidInput(
        f"{label} must be {spec.dtype}, got {_describe(array)} values (e.g. {_show(array.flat[0])})"
    )


def _narrow(array: np.ndarray, target: np.dtype, spec: TensorSpec, label: str) -> np.ndarray:
    """int64 -> int32 and integral float -> int: allowed when every value fits."""
    info = np.iinfo(target)
    outside = (array < info.min) | (array > info.max)
    if outside.any():
        raise InvalidInput(
            f"{label} must be {spec.dtype}, got values outside its range (e.g. {_show(array[outside].flat[0])})"
        )
    return array.astype(target)


def _coerce_objects(values: Sequence[Any], spec: TensorSpec, label: str) -> np.ndarray:
    """Convert Python values (a list or an object array), checking each one's type."""
    types = set(map(type, values))
    target = _NUMPY[spec.dtype]
    want = target.kind
    # The common cases, decided from the types alone without sorting values into categories.
    if want == "f" and types <= _PLAIN_NUMBERS:
        return np.array(values, dtype=target)
    if want in "iu" and types <= _PLAIN_INTS:
        try:
            return _coerce_array(np.array(values, dtype=np.int64), spec, label)
        except OverflowError:
            pass  # beyond int64: the general road below words the refusal
    if want == "O" and types == _STR_ONLY:
        return np.array(values, dtype=object)
    cats = {_category(tp) for tp in types}
    if want == "O":
        if _FLOAT in cats and _nan_only_floats(values):
            cats = (cats - {_FLOAT}) | {_MISSING}
        _refuse(cats - {_STR, _MISSING}, values, spec, label)
        out = np.array(values, dtype=object)
        if _MISSING in cats:
            out[[_is_missing(v) for v in out]] = None
        return out
    if want == "M":
        _refuse(cats - {_TIME, _STR, _MISSING}, values, spec, label)
        return _to_datetimes(values, spec, label)
    _refuse(cats - {_BOOL, _INT, _FLOAT, _MISSING}, values, spec, label)
    if _MISSING in cats:  # as NaN: float inputs keep it, _coerce_array refuses it for the rest
        values = [np.nan if _is_missing(v) else v for v in values]
    if want == "b":
        _refuse(cats - {_BOOL}, values, spec, label)
    source = np.float64 if cats & {_FLOAT, _MISSING} else (np.bool_ if cats == {_BOOL} else np.int64)
    try:
        array = np.array(values, dtype=source)
    except OverflowError:
        try:  # past int64, but perhaps not past uint64 (or a float input)
            return np.array(values, dtype=_NUMPY[spec.dtype])
        except OverflowError:
            info = np.iinfo(_NUMPY[spec.dtype])
            value = next(v for v in values if not info.min <= v <= info.max)
            raise InvalidInput(
                f"{label} must be {spec.dtype}, got values outside its range (e.g. {_show(value)})"
            ) from None
    return _coerce_array(array, spec, label)


def _refuse(bad: set[str], values: Sequence[Any], spec: TensorSpec, label: str) -> None:
    if not bad:
        return
    cat = next(c for c in (_STR, _TIME, _OTHER, _FLOAT, _INT, _BOOL) if c in bad)
    value = _example(values, cat)
    kind = type(value).__name__ if cat == _OTHER else cat
    raise InvalidInput(f"{label} must be {spec.dtype}, got {kind} values (e.g. {_show(value)})")


def _to_datetimes(values: Sequence[Any], spec: TensorSpec, label: str) -> np.ndarray:
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
                    f"{label} must be {spec.dtype}, got values that are not dates (e.g. {_show(value)})"
                ) from None
    raise InvalidInput(f"{label} must be {spec.dtype}, got values that are not dates")


def _describe(array: np.ndarray) -> str:
    kind = array.dtype.kind
    if kind in "UST":
        return "string"
    if kind == "M":
        return "datetime"
    if kind == "m":
        return "timedelta"
    return array.dtype.name


# --- (de)serialisation -----------------------------------------------------


def _spec_to_dict(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "dtype": spec.dtype, "shape": list(spec.shape)}


def _specs_from_list(field: str, items: Any) -> tuple[TensorSpec, ...]:
    if not isinstance(items, list):
        raise InvalidInput(f"signature field {field!r} must be a list, got {type(items).__name__}")
    specs = []
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        if not isinstance(item, dict):
            raise InvalidInput(
                f"signature field {where!r} must be a dict with name, dtype and shape, got {type(item).__name__}"
            )
        for key in ("name", "dtype", "shape"):
            if key not in item:
                raise InvalidInput(f"signature field {where!r} is missing {key!r}")
        shape = item["shape"]
        shape = tuple(shape) if isinstance(shape, list) else shape
        problem = _spec_problem(item["name"], item["dtype"], shape)
        if problem:
            raise InvalidInput(f"signature field '{where}.{problem[0]}' {problem[1]}")
        specs.append(TensorSpec(item["name"], item["dtype"], shape))
    return tuple(specs)


def _spec_problem(name: Any, dtype: Any, shape: Any) -> tuple[str, str] | None:
    """(field, what is wrong) for a bad spec, or None."""
    if not isinstance(name, str) or not name:
        return "name", f"must be a non-empty string, got {name!r}"
    if dtype not in DTYPES:
        return "dtype", f"must be one of {', '.join(DTYPES)}, got {dtype!r}"
    if (
        not isinstance(shape, tuple) or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and (d > 0 or d == -1) for d in shape)
        or shape[0] != -1
    ):
        return "shape", f"must be a list of sizes starting with -1 (the batch), e.g. [-1] or [-1, 20]; got {shape!r}"
    return None


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + (",)" if len(shape) == 1 else ")")
