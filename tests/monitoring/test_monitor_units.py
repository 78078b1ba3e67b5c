"""The pieces of a monitor: stored reference summaries, window boundaries, references from logged
profiles, and the clear errors of `keel monitor create`."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from keel.errors import Conflict, InvalidInput, NotFound
from keel.monitoring.columns import summarize
from keel.monitoring.drift import detect_drift
from keel.monitoring.summary_io import PROFILE_POINTS, dump_summary, load_summary, summary_from_profile
from keel.monitoring.window import due_windows, parse_duration, split_window

pytestmark = pytest.mark.store  # also on PostgreSQL


def mixed_table(rng, n=2000):
    return pa.table({
        "x": rng.normal(0, 1, n),
        "k": pa.array(rng.choice(["red", "green", "blue"], n)),
        "flag": pa.array(rng.random(n) < 0.3),
        "n": pa.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 5, n)).tolist(), pa.int64()),
        "empty": pa.nulls(n),
    })


def test_a_stored_summary_gives_the_same_drift_result_as_the_data_itself():
    rng = np.random.default_rng(0)
    ref, cur = mixed_table(rng), mixed_table(rng, 700)
    summary = summarize(ref)
    restored = load_summary(dump_summary(summary))
    assert list(restored.columns) == list(summary.columns) and restored.rows == summary.rows
    direct = detect_drift(ref, cur).to_dict()
    stored = detect_drift(restored, cur).to_dict()
    assert stored["columns"] == direct["columns"]


def test_a_summary_blob_is_not_pickle_and_bad_bytes_are_refused():
    data = dump_summary(summarize(pa.table({"x": [1.0, 2.0]})))
    assert data.startswith(b"KEELSUM1") and b"pickle" not in data
    with pytest.raises(InvalidInput, match="not a keel reference summary"):
        load_summary(b"\x80\x04garbage")


def test_windows_are_complete_consecutive_and_capped():
    windows, skipped = due_windows(1000, 500, 2600, max_windows=10)
    assert [(w.start_ms, w.end_ms) for w in windows] == [(1000, 1500), (1500, 2000), (2000, 2500)]
    assert skipped == 0
    windows, skipped = due_windows(0, 100, 10_050, max_windows=3)
    assert skipped == 97 and [(w.start_ms, w.end_ms) for w in windows] == [(9700, 9800), (9800, 9900),
                                                                          (9900, 10_000)]
    assert due_windows(1000, 500, 1499, max_windows=5) == ([], 0)


@pytest.mark.parametrize("text, ms", [("90s", 90_000), ("15m", 900_000), ("1h", 3_600_000), ("1d", 86_400_000),
                                      ("1.5h", 5_400_000)])
def test_durations(text, ms):
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["1 hour", "10", "500ms", "-1h", ""])
def test_bad_durations_name_the_allowed_forms(text):
    with pytest.raises(InvalidInput, match="window"):
        parse_duration(text)


def test_split_window_names_the_prediction_and_finds_labels_and_scores():
    table = pa.table({"request_id": ["r1", "r2"], "version": pa.array([1, 2], pa.int32()), "row": [0, 0],
                      "received_ms": [1, 2], "latency_ms": [0.1, 0.2], "a": [1.0, 2.0], "input:label": [3, 4],
                      "output:label": [0, 1], "output:probabilities_0": [0.8, 0.3],
                      "output:probabilities_1": [0.2, 0.7], "label": pa.array([None, 1], pa.int64())})
    data = split_window(table)
    assert data.features.column_names == ["a", "label", "prediction"]  # an input named "label" keeps its name
    assert data.features["prediction"].to_pylist() == [0, 1]
    assert data.labels.to_pylist() == [None, 1]
    assert data.scores.tolist() == [0.2, 0.7]
    assert data.versions == [1, 2]


def test_a_reference_from_a_logged_profile_detects_a_shift_and_not_the_same_distribution(client):
    import keel.tracking.datasets as datasets

    rng = np.random.default_rng(3)
    ref = pa.table({"x": rng.lognormal(0, 1, 50_000), "k": pa.array(rng.choice(["a", "b", "c"], 50_000))})
    profile = datasets.describe_dataset(ref).profile["columns"]
    summary, left_out = summary_from_profile(profile, ref.num_rows)
    assert left_out == [] and len(summary.columns["x"].values) == PROFILE_POINTS
    same = pa.table({"x": rng.lognormal(0, 1, 5000), "k": pa.array(rng.choice(["a", "b", "c"], 5000))})
    moved = pa.table({"x": rng.lognormal(0.3, 1, 5000), "k": pa.array(rng.choice(["a", "b", "c"], 5000))})
    assert detect_drift(summary, same).drifted == []
    assert detect_drift(summary, moved).drifted == ["x"]


@pytest.fixture
def registered(client, tmp_path):
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import keel

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(0, 1, 300), "b": rng.normal(0, 1, 300)})
    y = (frame.a > 0).astype(int)
    with keel.start_run("m", settings=client.settings):
        keel.log_model(LogisticRegression().fit(frame, y), "model", input_example=frame[:3], register="m")
    path = tmp_path / "ref.csv"
    frame.assign(y=y, note="x").to_csv(path, index=False)
    return path


def test_create_keeps_the_model_inputs_and_measures_the_reference(client, registered):
    from keel.service.monitors import create_monitor, get_monitor

    created = create_monitor(client.ctx, "models:/m/1", window="1h",
                             reference=str(registered), target="y")
    assert created.version == 1 and created.model == "m" and created.window_ms == 3_600_000
    assert created.reference["left_out"] == ["y", "note"]
    assert created.reference["performance"]["metrics"]["accuracy"] > 0.9
    reference = load_summary(client.ctx.blobs.get_bytes(created.reference_sha256))
    assert list(reference.columns) == ["a", "b", "prediction"]
    assert get_monitor(client.ctx, "m").to_dict() == created.to_dict()


def test_create_refuses_bad_input_clearly(client, registered):
    from keel.service.monitors import create_monitor, list_monitors

    ctx, ref = client.ctx, str(registered)
    with pytest.raises(InvalidInput, match="webhook must be an http"):
        create_monitor(ctx, "models:/m/1", window="1h", reference=ref, webhook="file:///etc/passwd")
    with pytest.raises(InvalidInput, match="sensitive column 'gender' is not in the reference"):
        create_monitor(ctx, "models:/m/1", window="1h", reference=ref, sensitive="gender")
    with pytest.raises(InvalidInput, match="target column 'label'"):
        create_monitor(ctx, "models:/m/1", window="1h", reference=ref, target="label")
    with pytest.raises(NotFound, match="no alias 'prod'"):
        create_monitor(ctx, "models:/m@prod", window="1h", reference=ref)
    with pytest.raises(InvalidInput, match="not a registry URI"):
        create_monitor(ctx, "m", window="1h", reference=ref)
    with pytest.raises(NotFound, match="no dataset datasets:/nope"):
        create_monitor(ctx, "models:/m/1", window="1h", reference="datasets:/nope")
    assert list_monitors(ctx) == []  # nothing half-made
    create_monitor(ctx, "models:/m/1", window="1h", reference=ref, target="y")
    with pytest.raises(Conflict, match="a monitor named 'm' exists"):
        create_monitor(ctx, "models:/m/1", window="1h", reference=ref, target="y")


def test_a_pass_over_no_traffic_records_empty_windows_once(client, registered):
    from keel.service.monitors import create_monitor, list_results, run_monitors

    created = create_monitor(client.ctx, "models:/m/1", window="1m", reference=str(registered), target="y",
                             since_ms=0)
    now = 3 * 60_000 + 5
    results = run_monitors(client.ctx, now=now)
    assert [(r.start_ms, r.status, r.rows) for r in results] == [(0, "empty", 0), (60_000, "empty", 0),
                                                                  (120_000, "empty", 0)]
    assert run_monitors(client.ctx, now=now) == []
    assert [r.start_ms for r in list_results(client.ctx, created.name)] == [120_000, 60_000, 0]
    assert json.loads(json.dumps([r.to_dict() for r in results]))  # plain JSON


def test_a_stored_result_renders_the_same_report_as_the_live_one():
    from keel.monitoring.fairness import evaluate_fairness
    from keel.monitoring.performance import evaluate_performance
    from keel.monitoring.report import render_html
    from keel.monitoring.window_report import render_result_html, result_from_dict

    rng = np.random.default_rng(5)
    live = detect_drift(mixed_table(rng), mixed_table(rng, 900))
    y, pred = rng.integers(0, 2, 900), rng.integers(0, 2, 900)
    import dataclasses

    live = dataclasses.replace(live, performance=evaluate_performance(y, pred, scores=rng.random(900)),
                               fairness=evaluate_fairness(rng.integers(0, 3, 900), pred, y))
    stored = json.loads(json.dumps(live.to_dict()))
    assert result_from_dict(stored) == live
    page = render_result_html({**stored, "alerts": ["data drift: <x>"], "window": {"rows": 900}})
    assert page.replace("<h1>keel monitor window</h1>", "") .count("<svg") == render_html(live).count("<svg")
    assert "data drift: &lt;x&gt;" in page


def test_reference_performance_can_come_from_a_labelled_holdout(client, registered, tmp_path):
    import pandas as pd

    from keel.service.monitors import create_monitor

    rng = np.random.default_rng(9)
    holdout = pd.DataFrame({"a": rng.normal(0, 1, 200), "b": rng.normal(0, 1, 200)})
    holdout["y"] = (holdout.a + rng.normal(0, 1, 200) > 0).astype(int)  # noisier labels: lower accuracy
    holdout.to_csv(tmp_path / "holdout.csv", index=False)
    with pytest.raises(InvalidInput, match="needs --target"):
        create_monitor(client.ctx, "models:/m/1", window="1h", reference=str(registered),
                       performance_reference=str(tmp_path / "holdout.csv"))
    created = create_monitor(client.ctx, "models:/m/1", window="1h", reference=str(registered), target="y",
                             performance_reference=str(tmp_path / "holdout.csv"), max_error_increase=0.5)
    on_holdout = created.reference["performance"]
    assert on_holdout["rows"] == 200 and on_holdout["metrics"]["accuracy"] < 0.9
    assert created.reference["performance_source"].endswith("holdout.csv")
    assert created.options["max_error_increase"] == 0.5


def test_a_monitor_far_behind_skips_old_windows_once_and_keeps_going(client, registered):
    from keel.service.monitors import create_monitor, get_monitor, run_monitors

    create_monitor(client.ctx, "models:/m/1", window="1m", reference=str(registered), target="y", since_ms=0)
    results = run_monitors(client.ctx, now=30 * 60_000 + 5, max_windows=3)
    assert [r.start_ms for r in results] == [27 * 60_000, 28 * 60_000, 29 * 60_000]
    assert get_monitor(client.ctx, "m").next_ms == 30 * 60_000
    assert [r.start_ms for r in run_monitors(client.ctx, now=31 * 60_000 + 5)] == [30 * 60_000]
    [skip] = [e for e in client.audit_log() if e.action == "monitor.skip"]
    assert json.loads(skip.details) == {"from_ms": 0, "to_ms": 27 * 60_000, "windows": 27}
