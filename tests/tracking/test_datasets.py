"""Tests for keel.tracking.datasets: conversion, digest and profile."""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel.tracking.datasets import DatasetDescription, describe_dataset, to_arrow

REPO_ROOT = Path(__file__).resolve().parents[2]


def _digest(data, **kwargs) -> str:
    return describe_dataset(data, **kwargs).digest


@pytest.fixture
def matrix() -> np.ndarray:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(50, 3))
    x[4, 1] = np.nan  # a missing value must survive every route identically
    return x


# --- digest: same content, same digest --------------------------------------------------


def test_digest_has_sha256_format(matrix):
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", _digest(matrix))


def test_same_content_same_digest_across_sources(matrix, tmp_path):
    names = ["a", "b", "c"]
    df = pd.DataFrame(matrix, columns=names)
    df.to_parquet(tmp_path / "data.parquet")
    expected = _digest(df)
    assert _digest(pa.Table.from_pandas(df, preserve_index=False)) == expected
    assert _digest(pa.table({n: matrix[:, i] for i, n in enumerate(names)})) == expected
    assert _digest(matrix, columns=names) == expected
    assert _digest(np.asfortranarray(matrix), columns=names) == expected
    assert _digest(tmp_path / "data.parquet") == expected
    assert _digest(str(tmp_path / "data.parquet")) == expected
    assert _digest({n: matrix[:, i].tolist() for i, n in enumerate(names)}) == expected
    assert _digest(pl.DataFrame({n: matrix[:, i] for i, n in enumerate(names)})) == expected
    assert _digest(pa.table({n: matrix[:, i] for i, n in enumerate(names)}).to_batches()[0]) == expected


def test_string_digest_ignores_physical_string_flavour():
    values = ["x", None, "zz", ""]
    expected = _digest(pa.table({"s": pa.array(values, pa.string())}))
    assert _digest(pa.table({"s": pa.array(values, pa.large_string())})) == expected
    assert _digest(pd.DataFrame({"s": values})) == expected
    assert _digest(pd.DataFrame({"s": pd.Categorical(values)})) == expected
    assert _digest(pl.DataFrame({"s": values})) == expected
    assert _digest(pl.DataFrame({"s": pl.Series(values, dtype=pl.Categorical)})) == expected
    assert _digest(np.array(values, dtype=object), columns=["s"]) == expected


def test_digest_ignores_chunking_and_slicing():
    strings = [f"v{i}" if i % 3 else None for i in range(10)]
    ints = [i if i % 4 else None for i in range(10)]
    whole = pa.table({"s": strings, "i": ints})
    chunked = pa.Table.from_batches(whole.to_batches(max_chunksize=3))
    assert chunked.column("s").num_chunks > 1
    assert _digest(chunked) == _digest(whole)
    # A slice has a non-zero buffer offset: the digest must read only its own rows.
    assert _digest(whole.slice(4, 5)) == _digest(pa.table({"s": strings[4:9], "i": ints[4:9]}))
    dense = pa.table({"s": pa.array(["aa", "b", "cc", "d"], pa.large_string()), "f": [0.5, 1.5, 2.5, 3.5],
                      "t": [True, False, False, True]})
    assert _digest(dense.slice(1, 2)) == _digest({"s": ["b", "cc"], "f": [1.5, 2.5], "t": [False, False]})


def test_digest_ignores_bytes_hidden_behind_nulls():
    validity = pa.py_buffer(np.packbits([1, 0, 1], bitorder="little").tobytes())

    def ints(hidden: int) -> pa.Array:
        return pa.Array.from_buffers(pa.int64(), 3, [validity, pa.py_buffer(np.array([7, hidden, 9]).tobytes())])

    def strings(hidden: bytes) -> pa.Array:
        offsets = np.array([0, 1, 1 + len(hidden), 2 + len(hidden)], dtype=np.int32)
        data = pa.py_buffer(b"a" + hidden + b"c")
        return pa.Array.from_buffers(pa.string(), 3, [validity, pa.py_buffer(offsets.tobytes()), data])

    assert ints(0).to_pylist() == ints(12345).to_pylist() == [7, None, 9]
    assert _digest(pa.table({"i": ints(12345)})) == _digest(pa.table({"i": ints(0)})) == _digest({"i": [7, None, 9]})
    assert strings(b"junk").to_pylist() == ["a", None, "c"]
    assert _digest(pa.table({"s": strings(b"junk")})) == _digest({"s": ["a", None, "c"]})


def test_nested_digest_ignores_list_flavour_but_not_content():
    values = [[1, 2], None, [], [3]]
    expected = _digest(pa.table({"l": pa.array(values, pa.list_(pa.int64()))}))
    assert _digest(pa.table({"l": pa.array(values, pa.large_list(pa.int64()))})) == expected
    assert _digest(pl.DataFrame({"l": values})) == expected
    assert _digest(pa.table({"l": pa.array([[1, 2], [], [], [3]], pa.list_(pa.int64()))})) != expected
    assert _digest(pa.table({"l": pa.array([[1], [2], [], [3]], pa.list_(pa.int64()))})) != expected


# --- digest: any change, another digest ---------------------------------------------------


BASE = {"a": [1, 2, 3, 4], "b": ["w", "x", "y", "z"]}


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param({"a": [1, 2, 3, 5], "b": ["w", "x", "y", "z"]}, id="int-value"),
        pytest.param({"a": [1, 2, 3, 4], "b": ["w", "x", "y", "Z"]}, id="string-value"),
        pytest.param({"a": [1, 2, 3, None], "b": ["w", "x", "y", "z"]}, id="value-to-null"),
        pytest.param({"a": [1, 2, 3, 4], "b": ["w", "x", "y", None]}, id="string-to-null"),
        pytest.param({"a": [1, 2, 3, 4], "b": ["w", "x", "yz", ""]}, id="string-boundary"),
        pytest.param({"A": [1, 2, 3, 4], "b": ["w", "x", "y", "z"]}, id="renamed-column"),
        pytest.param({"b": ["w", "x", "y", "z"], "a": [1, 2, 3, 4]}, id="swapped-columns"),
        pytest.param({"a": [2, 1, 3, 4], "b": ["x", "w", "y", "z"]}, id="reordered-rows"),
        pytest.param({"a": [1, 2, 3], "b": ["w", "x", "y"]}, id="dropped-row"),
        pytest.param({"a": [1, 2, 3, 4]}, id="dropped-column"),
    ],
)
def test_any_change_changes_digest(changed):
    assert _digest(changed) != _digest(BASE)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        pytest.param([1, 0], [1, None], id="zero-vs-null"),
        pytest.param([1.0, 0.0], [1.0, None], id="float-zero-vs-null"),
        pytest.param(["a", ""], ["a", None], id="empty-string-vs-null"),
        pytest.param([True, False], [True, None], id="false-vs-null"),
        pytest.param([[1], []], [[1], None], id="empty-list-vs-null"),
        pytest.param([None, 0], [0, None], id="null-position"),
    ],
)
def test_null_differs_from_its_fill_value(left, right):
    assert _digest({"a": left}) != _digest({"a": right})


def test_type_change_changes_digest():
    ints = pa.table({"a": pa.array([1, 2, 3], pa.int64())})
    assert _digest(pa.table({"a": pa.array([1, 2, 3], pa.int32())})) != _digest(ints)
    assert _digest(pa.table({"a": pa.array([1.0, 2.0, 3.0])})) != _digest(ints)
    assert _digest(pa.table({"a": pa.array(["1", "2", "3"])})) != _digest(ints)


def test_pandas_index_does_not_affect_digest(tmp_path):
    plain = pd.DataFrame({"a": [1.5, 2.5, 3.5], "b": ["x", "y", "z"]})
    indexed = plain.set_axis(pd.Index([10, 20, 30], name="id"))
    assert _digest(indexed) == _digest(plain)
    assert _digest(plain.iloc[::-1].iloc[::-1]) == _digest(plain)
    # Parquet from pandas stores a non-range index as a column: still not content.
    indexed.to_parquet(tmp_path / "indexed.parquet")
    assert "id" in pq.read_table(tmp_path / "indexed.parquet").column_names
    assert _digest(tmp_path / "indexed.parquet") == _digest(plain)
    assert _digest(pa.Table.from_pandas(indexed)) == _digest(plain)


# --- conversion -----------------------------------------------------------------------


def test_csv_input_records_source(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("age,city\n31,Oslo\n45,Lima\n")
    desc = describe_dataset(path)
    assert desc.source == str(path)
    assert desc.num_rows == 2
    assert [c["name"] for c in desc.schema] == ["age", "city"]
    assert desc.schema[0]["type"] == "int64"
    assert describe_dataset(path, source="s3://bucket/train.csv").source == "s3://bucket/train.csv"
    assert describe_dataset(pd.read_csv(path)).source is None


def test_gzipped_csv_matches_plain_csv(tmp_path):
    content = "x,y\n1,a\n2,b\n3,\n"
    (tmp_path / "d.csv").write_text(content)
    with gzip.open(tmp_path / "d.csv.gz", "wt") as f:
        f.write(content)
    assert _digest(tmp_path / "d.csv.gz") == _digest(tmp_path / "d.csv")
    assert _digest(str(tmp_path / "d.csv.gz")) == _digest(tmp_path / "d.csv")


def test_to_arrow_normalises_names_metadata_and_dictionaries():
    df = pd.DataFrame({0: [1, 2], "c": pd.Categorical(["u", "v"])}, index=[5, 6])
    table = to_arrow(df)
    assert table.column_names == ["0", "c"]
    assert table.schema.metadata is None
    assert not pa.types.is_dictionary(table.schema.field("c").type)
    assert to_arrow(np.zeros((2, 3))).column_names == ["0", "1", "2"]
    assert to_arrow(np.arange(4)).column_names == ["0"]
    assert to_arrow(pd.Series([1, 2], name="s")).column_names == ["s"]


def test_structured_numpy_array_uses_field_names():
    arr = np.array([(1, 2.5), (3, 4.5)], dtype=[("id", "i8"), ("score", "f8")])
    assert _digest(arr) == _digest({"id": [1, 3], "score": [2.5, 4.5]})
    assert to_arrow(arr, columns=["x", "y"]).column_names == ["x", "y"]


def test_columns_selects_and_orders_for_non_numpy_input():
    table = to_arrow(pd.DataFrame({"a": [1], "b": [2], "c": [3]}), columns=["c", "a"])
    assert table.column_names == ["c", "a"]
    assert _digest({"a": [1], "b": [2]}, columns=["a"]) == _digest({"a": [1]})


def test_description_is_plain_data():
    desc = describe_dataset({"a": [1, 2]})
    assert isinstance(desc, DatasetDescription)
    assert json.loads(json.dumps(desc.to_dict(), allow_nan=False))["digest"] == desc.digest
    assert "table" not in repr(desc)
    assert desc.table.num_rows == 2
    assert desc == describe_dataset(pd.DataFrame({"a": [1, 2]}))


# --- profile --------------------------------------------------------------------------


def test_quantiles_are_monotone_and_match_numpy():
    rng = np.random.default_rng(3)
    x = rng.lognormal(size=997)
    x[::50] = np.nan
    prof = describe_dataset({"x": x}).profile["columns"]["x"]
    quantiles = prof["quantiles"]
    assert len(quantiles["levels"]) == 101
    assert quantiles["levels"][0] == 0 and quantiles["levels"][1] == 0.01 and quantiles["levels"][-1] == 1.0
    values = quantiles["values"]
    assert all(a <= b for a, b in zip(values, values[1:]))
    clean = x[~np.isnan(x)]
    assert values == pytest.approx(np.quantile(clean, quantiles["levels"]).tolist(), rel=1e-12)
    assert values[0] == prof["min"] == clean.min() and values[-1] == prof["max"] == clean.max()


def test_numeric_summary_on_known_values():
    prof = describe_dataset({"v": [0, 2, 4, 6, None]}).profile["columns"]["v"]
    assert prof["kind"] == "numeric"
    assert (prof["count"], prof["missing"], prof["n_unique"], prof["zeros"]) == (4, 1, 4, 1)
    assert prof["min"] == 0 and isinstance(prof["min"], int) and prof["max"] == 6
    assert prof["mean"] == 3.0
    assert prof["std"] == pytest.approx(math.sqrt(5.0))  # population std (ddof=0)
    assert prof["missing_share"] == pytest.approx(0.2)


def test_histogram_counts_sum_to_non_missing_count():
    rng = np.random.default_rng(5)
    x = rng.normal(size=1000)
    x[:37] = np.nan
    prof = describe_dataset({"x": x}, histogram_bins=13).profile["columns"]["x"]
    hist = prof["histogram"]
    assert len(hist["edges"]) == 14 and len(hist["counts"]) == 13
    assert sum(hist["counts"]) == prof["count"] == 963
    assert hist["edges"][0] == prof["min"] and hist["edges"][-1] == prof["max"]
    counts, _ = np.histogram(x[37:], bins=13, range=(prof["min"], prof["max"]))
    assert hist["counts"] == counts.tolist()


def test_nan_and_none_count_as_missing():
    df = pd.DataFrame({"f": [1.0, np.nan, None, 4.0], "s": ["a", None, "b", None]})
    cols = describe_dataset(df).profile["columns"]
    assert (cols["f"]["count"], cols["f"]["missing"], cols["f"]["missing_share"]) == (2, 2, 0.5)
    assert (cols["s"]["count"], cols["s"]["missing"]) == (2, 2)
    # NaN that arrow holds as a value (not null) is missing too.
    raw = pa.table({"f": pa.array([1.0, float("nan"), None, 4.0], from_pandas=False)})
    assert raw.column("f").null_count == 1
    prof = describe_dataset(raw).profile["columns"]["f"]
    assert (prof["count"], prof["missing"], prof["n_unique"]) == (2, 2, 2)
    assert prof["mean"] == 2.5


def test_categorical_frequencies_and_other():
    values = ["b", "a", "c", "a", "b", None, "d", "c", "b", "a"]
    prof = describe_dataset({"s": values}, max_categories=2).profile["columns"]["s"]
    assert prof["kind"] == "categorical"
    assert prof["n_unique"] == 4 and prof["missing"] == 1
    # a and b both occur 3 times: the tie goes to the smaller value first.
    assert prof["frequencies"] == {"values": ["a", "b"], "counts": [3, 3], "other": 3}
    full = describe_dataset({"s": values}).profile["columns"]["s"]["frequencies"]
    assert full == {"values": ["a", "b", "c", "d"], "counts": [3, 3, 2, 1], "other": 0}


def test_boolean_frequencies():
    prof = describe_dataset({"flag": [True, False, True, None]}).profile["columns"]["flag"]
    assert prof["kind"] == "boolean"
    assert prof["frequencies"] == {"values": [True, False], "counts": [2, 1], "other": 0}


def test_binary_values_are_decoded_for_frequencies():
    prof = describe_dataset({"b": pa.array([b"ok", b"ok", b"\xff"])}).profile["columns"]["b"]
    assert prof["kind"] == "categorical"
    assert prof["frequencies"]["values"] == ["ok", "\\xff"]


def test_low_cardinality_int_column_gets_frequencies():
    codes = [3, 1, 3, 2, 3, 1]
    cols = describe_dataset({"code": codes, "id": list(range(6)), "f": [0.5] * 6},
                            max_categories=3).profile["columns"]
    assert cols["code"]["frequencies"] == {"values": [3, 1, 2], "counts": [3, 2, 1], "other": 0}
    assert "quantiles" in cols["code"]
    assert "frequencies" not in cols["id"]  # 6 distinct values > max_categories
    assert "frequencies" not in cols["f"]  # floats are continuous


def test_datetime_profile():
    ts = pd.to_datetime(["2024-03-01 12:00", None, "2023-01-02 00:00:00.000000001"], format="ISO8601")
    prof = describe_dataset(pd.DataFrame({"t": ts})).profile["columns"]["t"]
    assert prof["kind"] == "datetime"
    assert prof["min"] == "2023-01-02T00:00:00.000000001"
    assert prof["max"].startswith("2024-03-01T12:00:00")
    assert (prof["count"], prof["missing"]) == (2, 1)
    aware = pa.table({"t": pa.array([0], pa.timestamp("s", tz="Europe/Oslo"))})
    assert describe_dataset(aware).profile["columns"]["t"]["min"] == "1970-01-01T00:00:00Z"


def test_polars_input():
    frame = pl.DataFrame({"a": [1, 2, None], "s": ["x", "y", "x"]})
    desc = describe_dataset(frame)
    assert desc.num_rows == 3
    assert desc.profile["columns"]["a"]["missing"] == 1
    assert desc.profile["columns"]["s"]["frequencies"]["values"] == ["x", "y"]
    assert _digest(frame.lazy()) == desc.digest
    assert _digest(frame.get_column("a")) == _digest(frame.select("a"))
    assert desc.digest == _digest(pd.DataFrame({"a": [1, 2, None], "s": ["x", "y", "x"]}).astype({"a": "Int64"}))


def test_zero_row_table_gives_sane_profile():
    table = pa.table({"n": pa.array([], pa.float64()), "s": pa.array([], pa.string()),
                      "t": pa.array([], pa.timestamp("us"))})
    desc = describe_dataset(table)
    cols = desc.profile["columns"]
    assert desc.num_rows == 0 and desc.profile["num_columns"] == 3
    assert (cols["n"]["count"], cols["n"]["missing"], cols["n"]["n_unique"]) == (0, 0, 0)
    assert cols["n"]["missing_share"] is None
    assert all(cols["n"][k] is None for k in ("min", "max", "mean", "std", "quantiles", "histogram"))
    assert cols["s"]["frequencies"] == {"values": [], "counts": [], "other": 0}
    assert cols["t"]["min"] is None and cols["t"]["max"] is None
    json.dumps(desc.profile, allow_nan=False)
    assert describe_dataset(pd.DataFrame({"a": pd.Series([], dtype="int64")})).num_rows == 0


def test_all_missing_columns_give_sane_profile():
    cols = describe_dataset({"nan": [np.nan] * 3, "none": pa.array([None] * 3, pa.int64()),
                             "str": pa.array([None] * 3, pa.string()), "null": [None] * 3}).profile["columns"]
    for name in ("nan", "none", "str", "null"):
        assert (cols[name]["count"], cols[name]["missing"], cols[name]["missing_share"]) == (0, 3, 1.0), name
        assert cols[name]["n_unique"] == 0, name
    assert cols["nan"]["mean"] is None and cols["nan"]["quantiles"] is None and cols["nan"]["histogram"] is None
    assert cols["str"]["frequencies"] == {"values": [], "counts": [], "other": 0}


def test_profile_survives_strict_json():
    df = pd.DataFrame({
        "f": [1.0, np.inf, -np.inf, np.nan, 2.0],
        "i": np.arange(5, dtype=np.int32),
        "s": ["a", "b", None, "a", "c"],
        "b": [True, False, True, True, False],
        "t": pd.date_range("2024-01-01", periods=5, freq="h"),
        "d": pd.Series([{"k": 1}] * 5).map(json.dumps),
    })
    desc = describe_dataset(df)
    text = json.dumps(desc.profile, allow_nan=False)
    assert json.loads(text) == desc.profile
    f = desc.profile["columns"]["f"]
    assert (f["count"], f["missing"], f["infinite"]) == (4, 1, 2)
    assert (f["min"], f["max"], f["mean"]) == (1.0, 2.0, 1.5)
    assert sum(f["histogram"]["counts"]) == 2
    assert json.dumps(desc.schema) and desc.profile["profile_version"] == 1


def test_nested_columns_are_profiled_as_other():
    table = pa.table({"l": pa.array([[1], None, [2, 3]]), "st": pa.array([{"x": 1}, None, {"x": 2}])})
    cols = describe_dataset(table).profile["columns"]
    assert cols["l"]["kind"] == cols["st"]["kind"] == "other"
    assert (cols["l"]["count"], cols["l"]["missing"]) == (2, 1)


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [42, {1, 2}, object()])
def test_unsupported_input_raises_type_error_naming_type(bad):
    with pytest.raises(TypeError, match=rf"{type(bad).__qualname__}.*pandas DataFrame.*pyarrow Table"):
        to_arrow(bad)


def test_missing_file_raises_file_not_found_naming_path(tmp_path):
    path = tmp_path / "nope.parquet"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        describe_dataset(path)


def test_unknown_extension_raises_value_error(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"\.xlsx.*\.csv.*\.parquet"):
        describe_dataset(path)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: to_arrow(pd.DataFrame([[1, 2]], columns=["dup", "dup"])), id="pandas"),
        pytest.param(lambda: to_arrow(np.zeros((2, 2)), columns=["dup", "dup"]), id="numpy"),
        pytest.param(lambda: to_arrow({1: [1], "dup": [2], "1": [3]}), id="dict-after-str"),
        pytest.param(lambda: to_arrow(pa.table([[1], [2]], names=["dup", "dup"])), id="arrow"),
        pytest.param(lambda: to_arrow({"dup": [1]}, columns=["dup", "dup"]), id="selection"),
    ],
)
def test_duplicate_column_names_raise_naming_the_duplicate(make):
    with pytest.raises(ValueError, match=r"duplicate.*(dup|'1')"):
        make()


def test_wrong_number_of_numpy_column_names():
    with pytest.raises(ValueError, match=r"expected 3 column names.*got 2"):
        to_arrow(np.zeros((4, 3)), columns=["a", "b"])


def test_unknown_selected_column_and_bad_arguments():
    with pytest.raises(ValueError, match=r"columns not found: \['zz'\]"):
        to_arrow({"a": [1]}, columns=["zz"])
    with pytest.raises(ValueError, match=r"3-D"):
        to_arrow(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="histogram_bins"):
        describe_dataset({"a": [1]}, histogram_bins=0)
    with pytest.raises(ValueError, match="max_categories"):
        describe_dataset({"a": [1]}, max_categories=-1)


# --- imports ---------------------------------------------------------------------------


def test_plain_input_does_not_import_polars_or_pandas_at_import():
    code = (
        "import sys, numpy as np\n"
        "import keel.tracking.datasets as d\n"
        "assert 'pandas' not in sys.modules and 'polars' not in sys.modules, 'imported on load'\n"
        "d.describe_dataset(np.arange(10.0))\n"
        "assert 'polars' not in sys.modules, 'polars imported for numpy input'\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
