"""Model signatures: the names, dtypes and shapes a model takes and returns.

A signature is inferred once from an input example when a model is logged,
stored as plain data (:meth:`Signature.to_dict`), and enforced on every
``predict`` by :func:`prepare_input`, which refuses bad input with a message
naming the column and hands the model exactly what it was trained on.

pandas and polars are imported only when the caller hands us one of their
objects or asks for a DataFrame back, so plain-array serving never pays for
them. Reading those forms and converting their values is :mod:`keel.formats._values`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from keel.errors import InvalidInput
from keel.formats._values import (
    _BOOL,
    _FLOAT,
    _INT,
    _MISSING,
    _OTHER,
    _PLAIN_NUMBERS,
    _STR,
    _TIME,
    _categories,
    _coerce,
    _coerce_array,
    _coerce_objects,
    _columns_of,
    _example,
    _is_frame,
    _is_series,
    _is_tensor_form,
    _nan_only_floats,
    _pandas_arrays,
    _series_array,
    _show,
    _to_array,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DTYPES", "Signature", "TensorSpec", "infer_outputs", "infer_signature", "prepare_input"]

#: Every dtype a TensorSpec may name: numpy dtype names, plus "string" for text.
DTYPES: tuple[str, ...] = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "string", "datetime64[ns]",
)
_NUMPY = {name: np.dtype(object if name == "string" else name) for name in DTYPES}


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
    target = _NUMPY[spec.dtype]
    if array.dtype == object:
        result = _coerce_objects(array.ravel(), target, label).reshape(array.shape)
    else:
        result = _coerce_array(array, target, label)
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
        else _coerce(col, dtype, f"input column {spec.name!r}")
        for col, spec, dtype in zip(columns, specs, plan.dtypes)
    ]
    if as_frame:
        return _frame(converted, plan)
    if plan.common.kind == "O":
        # datetime64[ns] turns into bare integers in an object array; keep the datetime64 values.
        converted = [np.array(list(c), dtype=object) if c.dtype.kind == "M" else c for c in converted]
    return np.stack(converted, axis=1, dtype=plan.common, casting="unsafe")


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
