"""Signatures: inferred from an example, stored as plain data, enforced at predict time."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import polars as pl
import pytest

from keel.errors import InvalidInput
from keel.formats.signature import (
    Signature,
    TensorSpec,
    infer_outputs,
    infer_signature,
    prepare_input,
)

COLUMNS = ("age", "income", "city")


@pytest.fixture
def tabular() -> Signature:
    """age int64, income float64, city string; predicts one label."""
    return Signature(
        inputs=(
            TensorSpec("age", "int64", (-1,)),
            TensorSpec("income", "float64", (-1,)),
            TensorSpec("city", "string", (-1,)),
        ),
        outputs=(TensorSpec("output", "int64", (-1,)),),
        columnar=True,
    )


@pytest.fixture
def numeric() -> Signature:
    """Two numeric columns, so the prepared array is float64."""
    return Signature(
        inputs=(TensorSpec("age", "int64", (-1,)), TensorSpec("income", "float64", (-1,))),
        outputs=(),
        columnar=True,
    )


@pytest.fixture
def tensor() -> Signature:
    return Signature(inputs=(TensorSpec("input", "float64", (-1, 4)),), outputs=(), columnar=False)


def specs(signature: Signature) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(s.name, s.dtype, s.shape) for s in signature.inputs]


# --- inference -------------------------------------------------------------

EXPECTED_TABULAR = [("age", "int64", (-1,)), ("income", "float64", (-1,)), ("city", "string", (-1,))]


def test_infer_from_pandas_frame() -> None:
    frame = pd.DataFrame({"age": [31, 40], "income": [1.5, 2.0], "city": ["Oslo", "Rome"]})
    signature = infer_signature(frame)
    assert signature.columnar is True
    assert specs(signature) == EXPECTED_TABULAR
    assert signature.outputs == ()


def test_infer_from_pandas_frame_with_object_text_and_narrow_numbers() -> None:
    frame = pd.DataFrame({
        "a": np.array([1, 2], dtype=np.int32),
        "b": np.array([1.0, 2.0], dtype=np.float32),
        "c": pd.Series(["x", "y"], dtype=object),
        "d": [True, False],
        "e": pd.to_datetime(["2024-01-01", "2024-01-02"]),
    })
    assert [(s.name, s.dtype) for s in infer_signature(frame).inputs] == [
        ("a", "int32"), ("b", "float32"), ("c", "string"), ("d", "bool"), ("e", "datetime64[ns]"),
    ]


def test_infer_from_polars_frame() -> None:
    frame = pl.DataFrame({"age": [31, 40], "income": [1.5, 2.0], "city": ["Oslo", "Rome"]})
    assert specs(infer_signature(frame)) == EXPECTED_TABULAR


def test_infer_from_records() -> None:
    records = [{"age": 31, "income": 1.5, "city": "Oslo"}, {"age": 40, "income": 2.0, "city": "Rome"}]
    signature = infer_signature(records)
    assert signature.columnar is True
    assert specs(signature) == EXPECTED_TABULAR


def test_infer_from_dict_of_columns() -> None:
    columns = {"age": [31, 40], "income": np.array([1.5, 2.0]), "city": ["Oslo", "Rome"]}
    assert specs(infer_signature(columns)) == EXPECTED_TABULAR


def test_infer_int_column_with_a_missing_value_as_float() -> None:
    signature = infer_signature([{"age": 31}, {"age": None}])
    assert specs(signature) == [("age", "float64", (-1,))]


def test_infer_from_2d_array_is_a_tensor_signature() -> None:
    signature = infer_signature(np.zeros((3, 20), dtype=np.float32))
    assert signature.columnar is False
    assert specs(signature) == [("input", "float32", (-1, 20))]


def test_infer_from_list_of_rows_is_a_tensor_signature() -> None:
    signature = infer_signature([[1, 2.5, 3], [4, 5, 6]])
    assert signature.columnar is False
    assert specs(signature) == [("input", "float64", (-1, 3))]


def test_infer_from_1d_array_reads_it_as_one_row() -> None:
    assert specs(infer_signature(np.arange(5))) == [("input", "int64", (-1, 5))]


def test_infer_outputs_for_labels_and_probabilities() -> None:
    assert infer_outputs(np.array([0, 1, 1])) == (TensorSpec("output", "int64", (-1,)),)
    assert infer_outputs(np.array([[0.2, 0.8], [0.6, 0.4]])) == (TensorSpec("output", "float64", (-1, 2)),)
    assert infer_outputs(["cat", "dog"]) == (TensorSpec("output", "string", (-1,)),)


def test_infer_outputs_from_series_and_frame() -> None:
    assert infer_outputs(pd.Series([0.1, 0.2], name="ignored")) == (TensorSpec("output", "float64", (-1,)),)
    assert infer_outputs(pl.Series("p", [1, 2])) == (TensorSpec("output", "int64", (-1,)),)
    frame = pd.DataFrame({"label": [1, 0], "score": [0.9, 0.1]})
    assert infer_outputs(frame) == (
        TensorSpec("label", "int64", (-1,)), TensorSpec("score", "float64", (-1,)),
    )


def test_infer_outputs_from_records_and_dict() -> None:
    assert infer_outputs([{"label": "cat", "p": 0.9}]) == (
        TensorSpec("label", "string", (-1,)), TensorSpec("p", "float64", (-1,)),
    )
    assert infer_outputs({"label": ["cat"], "proba": [[0.1, 0.9]]}) == (
        TensorSpec("label", "string", (-1,)), TensorSpec("proba", "float64", (-1, 2)),
    )


def test_infer_outputs_refuses_a_scalar() -> None:
    with pytest.raises(InvalidInput, match="one prediction per input row"):
        infer_outputs(0.5)


def test_infer_from_polars_categorical_and_tz_aware_datetime() -> None:
    frame = pl.DataFrame({
        "colour": pl.Series(["red", "blue"], dtype=pl.Categorical),
        "at": pl.Series([0, 3_600_000_000], dtype=pl.Datetime("us", "Europe/Oslo")),
    })
    signature = infer_signature(frame)
    assert specs(signature) == [("colour", "string", (-1,)), ("at", "datetime64[ns]", (-1,))]
    out = prepare_input(signature, frame, as_frame=True)
    assert out["colour"].tolist() == ["red", "blue"]
    assert out["at"].iloc[1] == pd.Timestamp("1970-01-01T01:00:00")  # in UTC, without the zone


def test_infer_from_a_single_record() -> None:
    assert specs(infer_signature({"age": 31, "city": "Oslo"})) == [("age", "int64", (-1,)), ("city", "string", (-1,))]


def test_infer_signature_records_outputs_of_the_prediction() -> None:
    signature = infer_signature(np.zeros((2, 3)), np.array([[0.3, 0.7], [0.5, 0.5]]))
    assert signature.outputs == (TensorSpec("output", "float64", (-1, 2)),)


@pytest.mark.parametrize("example", [
    pd.DataFrame({"a": pd.Series([], dtype="float64")}),
    np.zeros((0, 3)),
    [],
    {"a": []},
], ids=["frame", "array", "list", "dict"])
def test_infer_refuses_an_empty_example(example: object) -> None:
    with pytest.raises(InvalidInput, match="no rows"):
        infer_signature(example)


def test_infer_refuses_an_empty_output_example() -> None:
    with pytest.raises(InvalidInput, match="no rows"):
        infer_signature(np.zeros((2, 3)), np.array([]))


def test_infer_refuses_a_column_of_mixed_types() -> None:
    with pytest.raises(InvalidInput, match=r"column 'x' mixes int and string values"):
        infer_signature({"x": [1, "a"]})


def test_infer_refuses_a_column_of_only_missing_values() -> None:
    with pytest.raises(InvalidInput, match=r"column 'x' has only missing values"):
        infer_signature({"x": [None, None]})


def test_infer_refuses_a_series_as_input() -> None:
    with pytest.raises(InvalidInput, match="got a Series"):
        infer_signature(pd.Series([1, 2]))


# --- to_dict / from_dict ---------------------------------------------------


def test_to_dict_round_trips_through_json(tabular: Signature) -> None:
    data = json.loads(json.dumps(tabular.to_dict()))
    assert data["inputs"][0] == {"name": "age", "dtype": "int64", "shape": [-1]}
    assert Signature.from_dict(data) == tabular


def test_tensor_signature_round_trips() -> None:
    signature = infer_signature(np.zeros((2, 28, 28), dtype=np.float32), np.zeros((2, 10)))
    assert Signature.from_dict(json.loads(json.dumps(signature.to_dict()))) == signature
    assert signature.inputs[0].shape == (-1, 28, 28)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("columnar"), "'columnar'"),
    (lambda d: d.update(columnar="yes"), "'columnar'"),
    (lambda d: d.update(inputs="age"), "'inputs'"),
    (lambda d: d["inputs"][1].update(dtype="float128"), r"'inputs\[1\]\.dtype'"),
    (lambda d: d["inputs"][0].update(shape=[20]), r"'inputs\[0\]\.shape'"),
    (lambda d: d["inputs"][0].update(name=""), r"'inputs\[0\]\.name'"),
    (lambda d: d["inputs"][2].pop("dtype"), r"'inputs\[2\]'"),
    (lambda d: d["outputs"].append("output"), r"'outputs\[1\]'"),
    (lambda d: d["inputs"][1].update(name="age"), r"'inputs\[1\]\.name' repeats 'age'"),
    (lambda d: d["inputs"][0].update(shape=[-1, 3]), r"'inputs\[0\]\.shape' must be \[-1\]"),
])
def test_from_dict_names_the_bad_field(tabular: Signature, mutate, field: str) -> None:
    data = tabular.to_dict()
    mutate(data)
    with pytest.raises(InvalidInput, match=field):
        Signature.from_dict(data)


def test_from_dict_refuses_several_tensors_in_a_tensor_signature(tensor: Signature) -> None:
    data = tensor.to_dict()
    data["inputs"].append({"name": "other", "dtype": "float64", "shape": [-1, 4]})
    with pytest.raises(InvalidInput, match="exactly one tensor"):
        Signature.from_dict(data)


# --- prepare_input: columnar -----------------------------------------------


def test_records_are_converted_in_signature_order(tabular: Signature) -> None:
    out = prepare_input(tabular, [{"city": "Oslo", "income": 1.5, "age": 31}, {"city": "Rome", "income": 2, "age": 40}])
    assert out.dtype == object  # text beside numbers
    assert out.tolist() == [[31, 1.5, "Oslo"], [40, 2.0, "Rome"]]


def test_frame_columns_are_reordered(numeric: Signature) -> None:
    out = prepare_input(numeric, pd.DataFrame({"income": [1.5, 2.5], "age": [31, 40]}))
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[31.0, 1.5], [40.0, 2.5]])


def test_int_input_into_a_float_column_is_widened(numeric: Signature) -> None:
    frame = prepare_input(numeric, {"age": [31], "income": [1000]}, as_frame=True)
    assert frame["income"].dtype == np.float64
    assert frame["income"].tolist() == [1000.0]


@pytest.mark.parametrize("column, values, dtype", [
    ("age", np.array([True, False]), "bool"),
    ("age", np.array([31, 40], dtype=np.int32), "int32"),
    ("income", np.array([1.5, 2.5], dtype=np.float32), "float32"),
])
def test_safe_widenings_are_applied(numeric: Signature, column: str, values: np.ndarray, dtype: str) -> None:
    data = {"age": [31, 40], "income": [1.0, 2.0], column: values}
    frame = prepare_input(numeric, data, as_frame=True)
    assert frame.dtypes.tolist() == [np.dtype("int64"), np.dtype("float64")]
    assert frame[column].tolist() == values.astype(frame[column].dtype).tolist()


def test_as_frame_has_exactly_the_signature_columns_and_dtypes(tabular: Signature) -> None:
    data = pl.DataFrame({
        "city": ["Oslo", "Rome"],
        "age": pl.Series([31, 40], dtype=pl.Int32),
        "income": [1.5, None],
    })
    frame = prepare_input(tabular, data, as_frame=True)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(COLUMNS)
    assert frame["age"].dtype == np.int64
    assert frame["income"].dtype == np.float64
    assert pd.api.types.is_string_dtype(frame["city"])
    assert frame["age"].tolist() == [31, 40]
    assert frame["city"].tolist() == ["Oslo", "Rome"]
    assert np.isnan(frame["income"].iloc[1])  # NaN is allowed in a float column


def test_dict_of_columns_and_a_single_record(tabular: Signature) -> None:
    columns = prepare_input(tabular, {"age": [31, 40], "income": [1.5, 2.5], "city": ["Oslo", "Rome"]})
    assert columns.tolist() == [[31, 1.5, "Oslo"], [40, 2.5, "Rome"]]
    record = prepare_input(tabular, {"age": 31, "income": 1.5, "city": "Oslo"})
    assert record.tolist() == [[31, 1.5, "Oslo"]]


def test_pandas_nullable_and_text_dtypes_are_accepted(tabular: Signature) -> None:
    frame = pd.DataFrame({
        "age": pd.array([31, 40], dtype="Int64"),
        "income": pd.array([1.5, None], dtype="Float64"),
        "city": pd.array(["Oslo", "Rome"], dtype="string"),
    })
    out = prepare_input(tabular, frame, as_frame=True)
    assert out.dtypes.tolist()[:2] == [np.dtype("int64"), np.dtype("float64")]
    assert out["city"].tolist() == ["Oslo", "Rome"]


def test_frames_are_read_without_pandas_private_column_access(tabular: Signature, monkeypatch) -> None:
    # The fast column access is private to pandas; the public fallback must give the same result.
    frame = pd.DataFrame({"city": ["Oslo"], "income": pd.array([1], dtype="Int64"), "age": [31]})
    expected = prepare_input(tabular, frame).tolist()
    monkeypatch.delattr(pd.DataFrame, "_get_column_array")
    assert prepare_input(tabular, frame).tolist() == expected == [[31, 1.0, "Oslo"]]
    assert prepare_input(tabular, frame, as_frame=True).dtypes.tolist()[:2] == [np.dtype("int64"), np.dtype("float64")]


def test_a_frame_that_already_matches_is_returned_as_is(tabular: Signature) -> None:
    frame = pd.DataFrame({"age": [31], "income": [1.5], "city": ["Oslo"]})
    assert prepare_input(tabular, frame, as_frame=True) is frame


def test_rows_without_names_are_taken_in_signature_order(tabular: Signature) -> None:
    out = prepare_input(tabular, [[31, 1.5, "Oslo"], [40, 2, "Rome"]])
    assert out.tolist() == [[31, 1.5, "Oslo"], [40, 2.0, "Rome"]]


def test_a_2d_array_for_a_columnar_signature_is_taken_by_position(numeric: Signature) -> None:
    out = prepare_input(numeric, np.array([[31, 1.5], [40, 2.5]]), as_frame=True)
    assert list(out.columns) == ["age", "income"]
    assert out["age"].dtype == np.int64
    assert out["age"].tolist() == [31, 40]


def test_uniform_float_array_for_a_columnar_signature_is_not_copied() -> None:
    signature = infer_signature(pd.DataFrame({"a": [1.0], "b": [2.0]}))
    data = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert prepare_input(signature, data) is data


def test_integral_floats_are_accepted_by_an_int_column(numeric: Signature) -> None:
    frame = prepare_input(numeric, {"age": [31.0, 40.0], "income": [1.0, 2.0]}, as_frame=True)
    assert frame["age"].dtype == np.int64
    assert frame["age"].tolist() == [31, 40]


def test_non_integral_floats_are_refused_by_an_int_column(numeric: Signature) -> None:
    expected = r"input column 'age' must be int64, got non-integral float values \(e\.g\. 31\.5\)"
    with pytest.raises(InvalidInput, match=expected):
        prepare_input(numeric, {"age": [30.0, 31.5], "income": [1.0, 2.0]})


@pytest.mark.parametrize("data", [
    {"age": [31, None], "income": [1.0, 2.0]},
    {"age": [31.0, float("nan")], "income": [1.0, 2.0]},
    pd.DataFrame({"age": pd.array([31, None], dtype="Int64"), "income": [1.0, 2.0]}),
    pl.DataFrame({"age": [31, None], "income": [1.0, 2.0]}),
    [{"age": 31, "income": 1.0}, {"income": 2.0}],
], ids=["none", "nan", "pandas-nullable", "polars-null", "absent-key"])
def test_missing_value_in_an_int_column_is_refused(numeric: Signature, data: object) -> None:
    with pytest.raises(InvalidInput, match=r"input column 'age' has missing values; the model expects int64"):
        prepare_input(numeric, data)


def test_string_into_a_number_column_is_refused(tabular: Signature) -> None:
    with pytest.raises(InvalidInput, match=r"input column 'age' must be int64, got string values \(e\.g\. 'abc'\)"):
        prepare_input(tabular, {"age": "abc", "income": 1.0, "city": "Oslo"})


def test_string_into_a_float_column_is_refused_even_when_numeric_text(tabular: Signature) -> None:
    expected = r"input column 'income' must be float64, got string values \(e\.g\. '1\.5'\)"
    with pytest.raises(InvalidInput, match=expected):
        prepare_input(tabular, pd.DataFrame({"age": [1], "income": ["1.5"], "city": ["Oslo"]}))


def test_number_into_a_string_column_is_refused(tabular: Signature) -> None:
    with pytest.raises(InvalidInput, match=r"input column 'city' must be string, got int values \(e\.g\. 3\)"):
        prepare_input(tabular, {"age": [1], "income": [1.0], "city": [3]})


def test_int_into_a_bool_column_is_refused() -> None:
    signature = Signature(inputs=(TensorSpec("flag", "bool", (-1,)),), outputs=(), columnar=True)
    with pytest.raises(InvalidInput, match=r"input column 'flag' must be bool, got int values"):
        prepare_input(signature, {"flag": [1]})


def test_missing_value_in_a_bool_column_is_refused() -> None:
    signature = Signature(inputs=(TensorSpec("flag", "bool", (-1,)),), outputs=(), columnar=True)
    with pytest.raises(InvalidInput, match=r"input column 'flag' has missing values; the model expects bool"):
        prepare_input(signature, pd.DataFrame({"flag": pd.array([True, None], dtype="boolean")}))


def test_missing_text_is_kept_as_none() -> None:
    signature = infer_signature({"city": ["Oslo"]})
    assert prepare_input(signature, pd.DataFrame({"city": ["Oslo", None]})).tolist() == [["Oslo"], [None]]


def test_int_out_of_range_for_a_narrow_column_is_refused() -> None:
    signature = Signature(inputs=(TensorSpec("n", "int32", (-1,)),), outputs=(), columnar=True)
    assert prepare_input(signature, {"n": [7]}, as_frame=True)["n"].dtype == np.int32
    with pytest.raises(InvalidInput, match=r"input column 'n' must be int32, got values outside its range"):
        prepare_input(signature, {"n": [3_000_000_000]})


def test_missing_column_is_refused_with_the_expected_list(tabular: Signature) -> None:
    with pytest.raises(
        InvalidInput, match=r"missing input column 'income' \(expected columns: age, income, city\)"
    ):
        prepare_input(tabular, {"age": [31], "city": ["Oslo"]})


def test_unexpected_column_is_refused(tabular: Signature) -> None:
    with pytest.raises(InvalidInput, match=r"unexpected input column 'colour'; the model takes: age, income, city"):
        prepare_input(tabular, [{"age": 31, "income": 1.0, "city": "Oslo", "colour": "red"}])


def test_duplicate_frame_column_is_refused(numeric: Signature) -> None:
    frame = pd.DataFrame([[1, 2.0, 3]], columns=["age", "income", "age"])
    with pytest.raises(InvalidInput, match=r"input column 'age' appears more than once"):
        prepare_input(numeric, frame)


def test_rows_of_the_wrong_width_are_refused(tabular: Signature) -> None:
    with pytest.raises(InvalidInput, match=r"input must have 3 columns, got 2"):
        prepare_input(tabular, [[31, 1.5], [40, 2.5]])


def test_ragged_rows_are_refused(tabular: Signature) -> None:
    with pytest.raises(InvalidInput, match=r"input row 1 has 2 values, expected 3"):
        prepare_input(tabular, [[31, 1.5, "Oslo"], [40, 2.5]])


@pytest.mark.parametrize("data", [
    pd.DataFrame({"age": pd.Series([], dtype="int64"), "income": pd.Series([], dtype="float64")}),
    np.zeros((0, 2)),
    [],
    {"age": [], "income": []},
], ids=["frame", "array", "list", "dict"])
def test_empty_input_is_refused(numeric: Signature, data: object) -> None:
    with pytest.raises(InvalidInput, match="input has no rows"):
        prepare_input(numeric, data)


def test_unsupported_input_form_is_refused(numeric: Signature) -> None:
    with pytest.raises(InvalidInput, match="input must be a DataFrame, .* got set"):
        prepare_input(numeric, {1, 2})


def test_datetime_column_takes_iso_text_and_datetimes() -> None:
    signature = infer_signature(pd.DataFrame({"t": pd.to_datetime(["2024-01-01"])}))
    assert signature.inputs == (TensorSpec("t", "datetime64[ns]", (-1,)),)
    out = prepare_input(signature, {"t": ["2024-05-06T07:08:09"]}, as_frame=True)
    assert out["t"].dtype == np.dtype("datetime64[ns]")
    assert out["t"].iloc[0] == pd.Timestamp("2024-05-06T07:08:09")
    expected = r"input column 't' must be datetime64\[ns\], got values that are not dates \(e\.g\. 'soon'\)"
    with pytest.raises(InvalidInput, match=expected):
        prepare_input(signature, {"t": ["soon"]})


# --- prepare_input: tensor -------------------------------------------------


def test_tensor_of_the_right_dtype_and_shape_is_not_copied(tensor: Signature) -> None:
    data = np.ones((3, 4))
    assert prepare_input(tensor, data) is data


def test_1d_array_is_one_row_of_a_tensor(tensor: Signature) -> None:
    out = prepare_input(tensor, np.array([1.0, 2.0, 3.0, 4.0]))
    assert out.shape == (1, 4)
    assert out.tolist() == [[1.0, 2.0, 3.0, 4.0]]


def test_tensor_from_list_of_int_rows_is_widened(tensor: Signature) -> None:
    out = prepare_input(tensor, [[1, 2, 3, 4], [5, 6, 7, 8]])
    assert out.dtype == np.float64
    assert out.shape == (2, 4)


def test_tensor_from_frame_is_taken_by_position(tensor: Signature) -> None:
    out = prepare_input(tensor, pd.DataFrame(np.ones((2, 4), dtype=np.float32)))
    assert out.dtype == np.float64
    assert out.shape == (2, 4)


def test_tensor_of_the_wrong_width_is_refused() -> None:
    signature = infer_signature(np.zeros((2, 20)))
    with pytest.raises(InvalidInput, match=r"input must have 20 columns, got 19"):
        prepare_input(signature, np.zeros((2, 19)))


def test_tensor_with_the_wrong_number_of_dimensions_is_refused(tensor: Signature) -> None:
    with pytest.raises(InvalidInput, match=r"input must have 2 dimensions \(shape \(-1, 4\)\), got 3"):
        prepare_input(tensor, np.zeros((2, 4, 1)))


def test_image_tensor_of_the_wrong_shape_is_refused() -> None:
    signature = infer_signature(np.zeros((2, 28, 28), dtype=np.float32))
    assert prepare_input(signature, np.zeros((28, 28), dtype=np.float32)).shape == (1, 28, 28)
    with pytest.raises(InvalidInput, match=r"input must have shape \(-1, 28, 28\), got \(5, 28, 27\)"):
        prepare_input(signature, np.zeros((5, 28, 27), dtype=np.float32))


def test_tensor_refuses_strings_mixed_into_numbers(tensor: Signature) -> None:
    with pytest.raises(InvalidInput, match=r"input must be float64, got string values \(e\.g\. 'a'\)"):
        prepare_input(tensor, [[1, 2, 3, "a"]])


def test_int_tensor_takes_integral_floats_and_refuses_others() -> None:
    signature = infer_signature(np.zeros((1, 2), dtype=np.int64))
    assert prepare_input(signature, np.array([[1.0, 2.0]])).dtype == np.int64
    with pytest.raises(InvalidInput, match=r"input must be int64, got non-integral float values \(e\.g\. 2\.5\)"):
        prepare_input(signature, np.array([[1.0, 2.5]]))


def test_tensor_refuses_named_columns(tensor: Signature) -> None:
    with pytest.raises(InvalidInput, match="the model takes one tensor input, not named columns"):
        prepare_input(tensor, [{"a": 1}])


def test_tensor_refuses_empty_input(tensor: Signature) -> None:
    with pytest.raises(InvalidInput, match="input has no rows"):
        prepare_input(tensor, np.zeros((0, 4)))


def test_tensor_named_input_is_named_in_messages() -> None:
    signature = Signature(inputs=(TensorSpec("pixels", "float32", (-1, 3)),), outputs=(), columnar=False)
    with pytest.raises(InvalidInput, match=r"input 'pixels' must have 3 columns, got 2"):
        prepare_input(signature, np.zeros((1, 2), dtype=np.float32))


def test_string_tensor_refuses_numbers() -> None:
    signature = infer_signature([["a", "b"]])
    assert specs(signature) == [("input", "string", (-1, 2))]
    assert prepare_input(signature, [["x", "y"]]).tolist() == [["x", "y"]]
    with pytest.raises(InvalidInput, match=r"input must be string, got int values \(e\.g\. 1\)"):
        prepare_input(signature, [["x", 1]])


def test_float64_into_a_float32_tensor_is_converted() -> None:
    signature = Signature(inputs=(TensorSpec("input", "float32", (-1, 2)),), outputs=(), columnar=False)
    assert prepare_input(signature, [[1.5, 2.5]]).dtype == np.float32
