"""The drift engine: sound defaults, known drift found, Evidently's verdicts reproduced, edge cases."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from keel.errors import InvalidInput
from keel.monitoring.columns import summarize
from keel.monitoring.drift import detect_drift

CARDINALITIES = (3, 8, 15, 30, 50)


def _frame(rng: np.random.Generator, n: int) -> dict[str, Any]:
    """10 numeric columns of mixed shapes and 5 categorical ones with 3 to 50 categories."""
    cols: dict[str, Any] = {
        "normal": rng.normal(0, 1, n), "lognormal": rng.lognormal(0, 1, n), "exponential": rng.exponential(2, n),
        "uniform": rng.uniform(0, 1, n), "student_t": rng.standard_t(3, n), "poisson": rng.poisson(3, n),
        "int_wide": rng.integers(0, 500, n), "rounded": np.round(rng.normal(10, 2, n), 1),
        "binary": rng.integers(0, 2, n), "with_missing": np.where(rng.random(n) < 0.1, np.nan, rng.gamma(2, 1, n))}
    for k in CARDINALITIES:
        weights = np.geomspace(1, 20, k)  # skewed: the rarest categories expect few rows
        cols[f"cat_{k}"] = np.array([f"c{i}" for i in range(k)])[rng.choice(k, n, p=weights / weights.sum())]
    return cols


# ---------------------------------------------------------------- sound defaults
def test_false_positive_rate_under_no_drift_is_at_most_5_percent() -> None:
    rng = np.random.default_rng(2024)
    flagged = tested = dataset_alarms = raw_hits = raw_tested = 0
    trials = 0
    for n_ref, n_cur in ((200, 150), (1000, 1000), (3000, 800)):
        for _ in range(60):
            result = detect_drift(_frame(rng, n_ref), _frame(rng, n_cur))
            trials += 1
            dataset_alarms += result.dataset_drift.detected
            for col in result.columns:
                assert col.drift.status != "not_tested", col
                tested += 1
                flagged += col.drift.detected
                raw_tested += 1
                raw_hits += col.drift.p_value <= 0.05
    assert tested == trials * 15
    assert flagged / tested <= 0.05
    assert dataset_alarms == 0
    # The per-column tests themselves hold their level (pooled chi-square on
    # rare categories, KS with ties); 2,700 tests: 6.5 % is 3.6 standard errors above 5 %.
    assert raw_hits / raw_tested <= 0.065


def _known_drift(rng: np.random.Generator, n: int, drift: bool) -> dict[str, Any]:
    d = 1 if drift else 0
    k = np.array([f"k{i}" for i in range(50)] + ["k_new"])
    p50 = np.append(np.full(50, (1 - 0.01 * d) / 50), 0.01 * d)
    return {
        "lognormal_scale": rng.lognormal(0, 1, n) * (1.03 if drift else 1.0),  # Evidently's default misses this
        "normal_shift": rng.normal(0.05 * d, 1, n),
        "poisson_shift": rng.poisson(5 + 0.2 * d, n),
        "cat_3_shift": np.array(["a", "b", "c"])[rng.choice(3, n, p=[0.5 - 0.02 * d, 0.3, 0.2 + 0.02 * d])],
        "cat_50_new": k[rng.choice(51, n, p=p50)],
        "normal": rng.normal(0, 1, n), "lognormal": rng.lognormal(0, 1, n), "uniform": rng.uniform(0, 1, n),
        "int_wide": rng.integers(0, 1000, n), "binary": rng.integers(0, 2, n),
        "cat_8": np.array([f"c{i}" for i in range(8)])[rng.integers(0, 8, n)],
        "cat_30": np.array([f"c{i}" for i in range(30)])[rng.integers(0, 30, n)]}


DRIFTED = {"lognormal_scale", "normal_shift", "poisson_shift", "cat_3_shift", "cat_50_new"}


def test_defaults_flag_exactly_the_drifted_columns() -> None:
    rng = np.random.default_rng(7)
    ref, cur = _known_drift(rng, 100_000, False), _known_drift(rng, 100_000, True)
    result = detect_drift(ref, cur)
    assert set(result.drifted) == DRIFTED
    lognormal = result.column("lognormal_scale").drift
    assert lognormal.test == "ks" and lognormal.p_value < 1e-6 and lognormal.effect_size < 0.05
    assert result.column("cat_50_new").quality.unseen_categories == 1
    # Evidently's rule (normed Wasserstein >= 0.1 above 1,000 reference rows) misses the 3 % scale change.
    evid = detect_drift(ref, cur, preset="evidently").column("lognormal_scale").drift
    assert evid.test == "wasserstein" and evid.status == "no_drift" and evid.statistic < 0.1


def test_min_effect_keeps_only_shifts_above_a_size() -> None:
    rng = np.random.default_rng(8)
    ref, cur = _known_drift(rng, 100_000, False), _known_drift(rng, 100_000, True)
    cur["normal_shift"] = cur["normal_shift"] + 0.5  # a large shift: KS distance about 0.2
    result = detect_drift(ref, cur, min_effect=0.05)
    assert result.drifted == ["normal_shift"]
    small = result.column("lognormal_scale").drift
    assert small.status == "no_drift" and small.p_adjusted < 0.05 and "min_effect" in small.reason


def test_reference_summary_is_computed_once_and_reused() -> None:
    rng = np.random.default_rng(9)
    ref_data = _frame(rng, 2000)
    reference = summarize(ref_data)
    for _ in range(2):
        window = _frame(rng, 500)
        assert detect_drift(reference, window).to_dict() == detect_drift(ref_data, window).to_dict()


# ---------------------------------------------------------------- options
def test_per_column_test_and_threshold_overrides() -> None:
    rng = np.random.default_rng(10)
    ref, cur = _frame(rng, 3000), _frame(rng, 3000)
    result = detect_drift(ref, cur, tests={"normal": "psi", "cat_8": "hellinger", "uniform": "wasserstein"},
                          thresholds={"normal": 0.0, "lognormal": 1.0})
    assert result.column("normal").drift.test == "psi" and result.column("normal").drift.detected  # 0.0: always
    assert result.column("cat_8").drift.test == "hellinger"
    assert result.column("uniform").drift.threshold == 0.1  # the registered default
    lognormal = result.column("lognormal").drift
    assert lognormal.threshold == 1.0 and lognormal.threshold_on == "p_adjusted" and lognormal.detected


@pytest.mark.parametrize("kwargs,message", [
    ({"preset": "nannyml"}, "preset must be one of"),
    ({"tests": {"normal": "t-test"}}, "unknown test"),
    ({"tests": {"nope": "ks"}}, "not in the reference"),
    ({"tests": {"cat_3": "ks"}}, "needs numeric values"),
    ({"fdr": 0.0}, "fdr must be"),
    ({"min_effect": -1.0}, "min_effect"),
    ({"drift_share": 1.5}, "drift_share"),
])
def test_bad_options_are_clear_errors(kwargs: dict[str, Any], message: str) -> None:
    rng = np.random.default_rng(11)
    with pytest.raises(InvalidInput, match=message):
        detect_drift(_frame(rng, 100), _frame(rng, 100), **kwargs)


# ---------------------------------------------------------------- edge cases
def _no_nan(value: Any) -> None:
    if isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, dict):
        for v in value.values():
            _no_nan(v)
    elif isinstance(value, list):
        for v in value:
            _no_nan(v)


def test_edge_cases_give_clear_results() -> None:
    n = 400
    rng = np.random.default_rng(12)
    ref = {"all_missing_ref": pa.nulls(n, pa.float64()), "all_missing_cur": rng.normal(size=n),
           "null_typed": pa.nulls(n), "constant": np.ones(n), "constant_moves": np.ones(n),
           "new_categories": np.array(["a", "b"] * (n // 2)), "infinite": rng.normal(size=n),
           "when": pa.array(np.arange(n).astype("datetime64[s]")), "flag": np.array([True, False] * (n // 2)),
           "gone": rng.normal(size=n), "ids": np.array([f"id{i}" for i in range(n)]),
           "only_inf": rng.integers(0, 3, n).astype(float)}
    cur = {"all_missing_ref": rng.normal(size=n), "all_missing_cur": np.full(n, np.nan),
           "null_typed": pa.nulls(n), "constant": np.ones(n), "constant_moves": np.full(n, 2.0),
           "new_categories": np.array(["a", "b", "c", "d"] * (n // 4)),
           "infinite": np.where(np.arange(n) < 10, np.inf, rng.normal(size=n)),
           "when": pa.array((np.arange(n) + 10 ** 6).astype("datetime64[s]")), "flag": np.array(["yes"] * n),
           "extra": np.zeros(n), "ids": np.array([f"id{i + n}" for i in range(n)]),
           "only_inf": np.full(n, -np.inf)}
    result = detect_drift(ref, cur)
    doc = result.to_dict()
    _no_nan(doc)
    json.dumps(doc, allow_nan=False)
    status = {c.name: (c.drift.status, c.drift.reason) for c in result.columns}
    assert status["all_missing_ref"][0] == "not_tested" and "no values in the reference" in status["all_missing_ref"][1]
    assert status["all_missing_cur"][0] == "not_tested" and "all 400 rows missing" in status["all_missing_cur"][1]
    assert result.column("all_missing_cur").quality.missing_share_current == 1.0
    assert status["null_typed"][0] == "not_tested"
    constant = result.column("constant").drift
    assert (constant.status, constant.p_value, constant.effect_size) == ("no_drift", 1.0, 0.0)
    assert result.column("constant_moves").drift.status == "drift"
    assert result.column("constant_moves").quality.out_of_range_share == 1.0
    new = result.column("new_categories")
    assert new.drift.status == "drift" and new.quality.unseen_categories == 2
    assert new.quality.unseen_share == pytest.approx(0.5) and new.quality.unseen_examples == ["c", "d"]
    assert result.column("infinite").quality.non_finite_current == 10
    assert status["only_inf"] == ("not_tested", "no finite values in the current data (only infinite ones)")
    assert result.column("only_inf").quality.non_finite_current == n
    assert status["when"][0] == "not_tested" and "datetime" in status["when"][1]
    assert status["flag"][0] == "not_tested" and "type changed from bool to" in status["flag"][1]
    assert status["gone"] == ("not_tested", "column missing from the current data")
    assert status["ids"][0] == "not_tested" and "identifier" in status["ids"][1]
    assert doc["schema_changes"]["missing_columns"] == ["gone"]
    assert doc["schema_changes"]["extra_columns"] == ["extra"]
    assert doc["schema_changes"]["type_changes"] == [{"column": "flag", "reference": "bool", "current": "string"}]
    assert not result.schema_ok
    # A datetime column can still be tested on request.
    forced = detect_drift(ref, cur, tests={"when": "ks"}).column("when").drift
    assert forced.status == "drift" and forced.effect_size == 1.0


def test_empty_window_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="current data has no rows"):
        detect_drift({"x": [1.0, 2.0]}, {"x": pa.array([], pa.float64())})
    with pytest.raises(InvalidInput, match="reference data has no rows"):
        detect_drift({"x": pa.array([], pa.float64())}, {"x": [1.0]})


def test_mixed_types(tmp_path: Path) -> None:
    # In memory, a column mixing numbers and text cannot become one Arrow column: a clear error.
    with pytest.raises(InvalidInput, match="mixes numbers and text"):
        detect_drift(pd.DataFrame({"x": [1, "a", 2.5]}), pd.DataFrame({"x": [1, 2, 3]}))
    # In a CSV it reads as text: a schema break on that column, the others still tested.
    (tmp_path / "ref.csv").write_text("x,y\n" + "".join(f"{i},{i % 7}\n" for i in range(200)))
    (tmp_path / "cur.csv").write_text("x,y\n" + "".join(f"{'oops' if i == 3 else i},{i % 7}\n" for i in range(200)))
    result = detect_drift(tmp_path / "ref.csv", tmp_path / "cur.csv")
    assert result.column("x").schema == "type_changed" and result.column("x").drift.status == "not_tested"
    assert result.column("y").drift.status == "no_drift"


def test_files_parquet_and_csv_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    ref, cur = pa.table(_frame(rng, 1500)), pa.table(_frame(rng, 1200))
    pq.write_table(ref, tmp_path / "ref.parquet")
    pcsv.write_csv(cur, tmp_path / "cur.csv")
    pq.write_table(cur, tmp_path / "cur.parquet")
    from_files = detect_drift(tmp_path / "ref.parquet", tmp_path / "cur.csv").to_dict()
    in_memory = detect_drift(ref, cur).to_dict()
    for a, b in zip(from_files["columns"], in_memory["columns"]):
        assert a["drift"]["status"] == b["drift"]["status"]
        assert a["drift"]["p_value"] == pytest.approx(b["drift"]["p_value"], rel=1e-9)
    assert from_files["current"]["source"].endswith("cur.csv")
    with pytest.raises(InvalidInput, match="file not found"):
        detect_drift(tmp_path / "nope.parquet", tmp_path / "cur.csv")
    with pytest.raises(InvalidInput, match="unsupported extension"):
        detect_drift(tmp_path / "ref.parquet", tmp_path / "cur.json")


def test_json_schema_is_stable() -> None:
    rng = np.random.default_rng(14)
    doc = detect_drift(_frame(rng, 300), _frame(rng, 300)).to_dict()
    assert doc["schema"] == "keel.drift/1" and doc["kind"] == "data_drift"
    assert set(doc) == {"schema", "kind", "preset", "settings", "reference", "current", "dataset_drift",
                        "schema_changes", "columns", "drifted_columns", "schema_ok"}
    assert set(doc["dataset_drift"]) == {"detected", "drifted_columns", "tested_columns", "share", "threshold"}
    col = doc["columns"][0]
    assert set(col) == {"name", "kind", "type_reference", "type_current", "schema", "drift", "quality",
                        "histogram", "role"}
    assert set(col["drift"]) == {"status", "test", "statistic", "p_value", "p_adjusted", "effect_size",
                                 "effect_measure", "threshold", "threshold_on", "min_effect", "reason"}
    assert set(col["quality"]) == {"missing_share_reference", "missing_share_current", "non_finite_current",
                                   "out_of_range_share", "unseen_categories", "unseen_share", "unseen_examples"}
    assert col["role"] == "feature" and col["histogram"]["kind"] in ("bins", "categories")


# ---------------------------------------------------------------- Evidently's own verdicts
EVIDENTLY_VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "keel-test-evidently"
EVIDENTLY_SPECS = ["evidently==0.7.*", "pandas<3"]  # Evidently 0.7 does not import under pandas 3
METHODS = {"K-S p_value": "ks", "chi-square p_value": "chisquare_gof", "Z-test p_value": "z",
           "Wasserstein distance (normed)": "wasserstein", "Jensen-Shannon distance": "jensenshannon"}
EVIDENTLY_SCRIPT = """
import json, sys
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

out = {}
for name, ref_path, cur_path in json.loads(sys.argv[1]):
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        Dataset.from_pandas(pd.read_parquet(cur_path), data_definition=DataDefinition()),
        Dataset.from_pandas(pd.read_parquet(ref_path), data_definition=DataDefinition()))
    result = snapshot.dict()
    cols = {}
    for metric in result["metrics"]:
        cfg = metric["config"]
        if cfg["type"].endswith("ValueDrift"):
            cols[cfg["column"]] = {"method": cfg["method"], "threshold": cfg["threshold"], "score": metric["value"]}
        elif cfg["type"].endswith("DriftedColumnsCount"):
            share = metric["value"]["share"]
    for test in result["tests"]:
        params = test["metric_config"]["params"]
        if params["type"].endswith("ValueDrift"):
            cols[params["column"]]["drift"] = test["status"] == "FAIL"
    out[name] = {"columns": cols, "share": share}
json.dump(out, sys.stdout)
"""


def _evidently_python() -> str:
    """Evidently in its own venv (created once, reused): it pins dependencies keel's environment does not."""
    py = EVIDENTLY_VENV / "bin" / "python"
    probe = [str(py), "-c", "import evidently.presets, pandas"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return str(py)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(EVIDENTLY_VENV)], check=True)
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", *EVIDENTLY_SPECS], capture_output=True, text=True)
    assert pip.returncode == 0, f"could not install {EVIDENTLY_SPECS} into {EVIDENTLY_VENV}:\n{pip.stderr[-3000:]}"
    return str(py)


def _evidently_case(rng: np.random.Generator, n: int, drift: float) -> pa.Table:
    nulls = rng.random(n) < 0.1
    return pa.table({
        "f_cont": rng.normal(drift, 1, n),
        "f_small_shift": rng.normal(drift / 4, 1, n),
        "f_lognormal": rng.lognormal(0, 1, n) * (1 + drift / 10),
        "f_three": rng.choice([0.5, 1.5, 2.5], n, p=[0.4 - drift / 4, 0.3, 0.3 + drift / 4]),
        "f_two": rng.choice([0.0, 1.0], n, p=[0.5 + drift / 4, 0.5 - drift / 4]),
        "i_cat": rng.integers(0, 8, n),
        "i_mid": rng.integers(0, 15, n) + (rng.random(n) < drift / 2),
        "i_wide": rng.integers(0, 1000, n),
        "i_nulls": pa.array(rng.integers(0, 4, n), mask=nulls),  # pandas reads it back as float
        "f_missing": np.where(nulls, np.nan, rng.gamma(2, 1 + drift / 5, n)),
        "s_two": rng.choice(["no", "yes"], n, p=[0.7 - drift / 4, 0.3 + drift / 4]),
        "s_four": rng.choice(list("abcd"), n, p=[0.4 - drift / 4, 0.3, 0.2, 0.1 + drift / 4]),
        "s_twelve": np.array([f"k{i}" for i in range(13)])[
            rng.choice(13, n, p=np.append(np.full(12, (1 - drift / 20) / 12), drift / 20))],
        "b": rng.random(n) < 0.4 + drift / 5,
    })


def test_evidently_preset_gives_evidentlys_verdicts(tmp_path: Path) -> None:
    rng = np.random.default_rng(15)
    cases = []
    for i, (n_ref, n_cur, drift) in enumerate([(300, 400, 0.0), (300, 250, 0.4), (1000, 800, 0.2), (1000, 1000, 0.0),
                                               (1001, 1500, 0.2), (3000, 2000, 0.0), (5000, 4000, 0.3),
                                               (20000, 20000, 0.1)]):
        ref, cur = _evidently_case(rng, n_ref, 0.0), _evidently_case(rng, n_cur, drift)
        paths = tmp_path / f"ref{i}.parquet", tmp_path / f"cur{i}.parquet"
        pq.write_table(ref, paths[0])
        pq.write_table(cur, paths[1])
        cases.append((f"case{i}", str(paths[0]), str(paths[1])))
    proc = subprocess.run([_evidently_python(), "-c", EVIDENTLY_SCRIPT, json.dumps(cases)], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    evidently = json.loads(proc.stdout)
    compared = drifted = 0
    for name, ref_path, cur_path in cases:
        result = detect_drift(ref_path, cur_path, preset="evidently")
        theirs = evidently[name]["columns"]
        assert set(theirs) == {c.name for c in result.columns}, name
        for col in result.columns:
            ev, d = theirs[col.name], col.drift
            where = f"{name}/{col.name}: keel {d} vs Evidently {ev}"
            assert d.test == METHODS[ev["method"]], where
            assert d.threshold == ev["threshold"], where
            score = d.p_value if d.threshold_on == "p_value" else d.statistic
            assert score == pytest.approx(ev["score"], rel=1e-6, abs=1e-12), where
            assert d.detected == ev["drift"], where
            compared += 1
            drifted += d.detected
        assert result.dataset_drift.share == pytest.approx(evidently[name]["share"])
    assert compared == len(cases) * 14
    assert 0 < drifted < compared  # both verdicts occur
