"""`keel score`: batch scoring of CSV and Parquet files with a registered model, through the keel command."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from keel.testing.cli import run_cli as keel

FEATURES = ["f0", "f1", "f2", "visits"]


@pytest.fixture
def churn(settings):
    """churn version 1: a logistic regression on named columns (three floats and an int), and 300 new rows."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    import keel as k

    X, y = make_classification(n_samples=700, n_features=3, n_informative=2, n_redundant=0, random_state=3)
    visits = np.random.default_rng(3).integers(0, 20, size=700)
    frame = pd.DataFrame(X, columns=FEATURES[:3]).assign(visits=visits)
    model = LogisticRegression(max_iter=500).fit(frame.iloc[:400], y[:400])
    with k.start_run("score", settings=settings):
        k.log_model(model, "model", input_example=frame.iloc[:5], register="churn")
    # New rows as they arrive: an id first, the features in another order, no label.
    rows = frame.iloc[400:].reset_index(drop=True)
    rows = rows[["visits", "f2", "f0", "f1"]].assign(customer=[f"c{i}" for i in range(len(rows))])
    return {"rows": rows[["customer", "visits", "f2", "f0", "f1"]], "settings": settings}


def expected(settings, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    import keel as k

    model = k.load_model("models:/churn/1", settings=settings)
    return model.predict(rows[FEATURES]), model.predict_proba(rows[FEATURES])


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_keel_score_predicts_what_load_model_predicts(suffix, churn, keel_env, tmp_path) -> None:
    rows = churn["rows"]
    source = tmp_path / f"new.{suffix}"
    rows.to_csv(source, index=False) if suffix == "csv" else rows.to_parquet(source, index=False)
    target = tmp_path / "scored" / "out.parquet"
    done = keel(keel_env, "score", "models:/churn/1", "--input", str(source), "--output", str(target),
                "--batch-size", "64", "--json")
    report = json.loads(done.stdout)
    assert (report["rows"], report["batches"], report["model_uri"]) == (300, 5, "models:/churn/1")

    scored = pd.read_parquet(target)
    assert list(scored.columns) == [*rows.columns, "prediction", "probability_0", "probability_1"]
    pd.testing.assert_frame_equal(scored[list(rows.columns)], rows, check_dtype=False)
    labels, proba = expected(churn["settings"], rows)
    assert np.array_equal(scored["prediction"].to_numpy(), labels)
    assert np.allclose(scored[["probability_0", "probability_1"]].to_numpy(), proba, rtol=0, atol=1e-12)

    # The scoring is an audit event on the model version, with the output's hash.
    from keel.service.audit import list_events
    from keel.tracking.fluent import client_for

    events = list_events(client_for(churn["settings"]).ctx, action="model.score")
    assert [e.object_id for e in events] == ["churn/1"]
    details = json.loads(events[0].details)
    assert details["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest() and details["rows"] == 300


def test_a_bad_input_path_or_missing_columns_fail_clearly(churn, keel_env, tmp_path) -> None:
    target = tmp_path / "out.parquet"
    missing = keel(keel_env, "score", "models:/churn/1", "--input", str(tmp_path / "nope.csv"), "--output",
                   str(target), check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"error: --input {tmp_path / 'nope.csv'} does not exist (or is not a file)"

    source = tmp_path / "partial.csv"
    churn["rows"].drop(columns=["visits"]).to_csv(source, index=False)
    lacking = keel(keel_env, "score", "models:/churn/1", "--input", str(source), "--output", str(target),
                   check=False)
    assert lacking.returncode == 1
    assert "lacks the column(s) 'visits' that the model models:/churn/1 needs" in lacking.stderr
    assert len(lacking.stderr.strip().splitlines()) == 1 and "Traceback" not in lacking.stderr

    wrong = keel(keel_env, "score", "models:/churn/1", "--input", str(source), "--output", str(tmp_path / "o.csv"),
                 check=False)
    assert wrong.returncode == 1 and "--output must name a .parquet file" in wrong.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "partial.csv"]


def test_a_failure_part_way_leaves_no_partial_output(churn, keel_env, tmp_path) -> None:
    rows = churn["rows"]
    source, target = tmp_path / "new.csv", tmp_path / "out" / "scored.parquet"
    rows.to_csv(source, index=False)
    keel(keel_env, "score", "models:/churn/1", "--input", str(source), "--output", str(target))
    before = target.read_bytes()

    # Row 251 has 2.5 visits: the model takes whole visits. Five batches of 50 are scored before it.
    broken = rows.astype({"visits": float})
    broken.loc[250, "visits"] = 2.5
    broken.to_csv(source, index=False)
    failed = keel(keel_env, "score", "models:/churn/1", "--input", str(source), "--output", str(target),
                  "--batch-size", "50", check=False)
    assert failed.returncode == 1
    assert "rows 251-300" in failed.stderr and "visits" in failed.stderr
    # The earlier output is untouched and no temporary file is left beside it.
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["scored.parquet"]

    fresh = tmp_path / "never" / "scored.parquet"
    keel(keel_env, "score", "models:/churn/1", "--input", str(source), "--output", str(fresh), "--batch-size", "50",
         check=False)
    assert not fresh.exists() and list(fresh.parent.iterdir()) == []
