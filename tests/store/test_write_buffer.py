"""The fluent API's write buffer: runs and values reach the store without a call per value."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest
import sqlalchemy as sa

import keel
from keel.entities import RunStatus
from keel.service import metric_chunks

pytestmark = pytest.mark.store


def _run_row(engine, run_id):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT status FROM runs WHERE id = :r"), {"r": run_id}).first()


def test_started_run_reaches_the_store_within_the_flush_interval(settings, raw_engine):
    quick = dataclasses.replace(settings, metric_flush_interval=0.2)
    with keel.start_run("buffered", settings=quick) as run:
        keel.log_metric("loss", 0.5)
        deadline = time.time() + 5
        while _run_row(raw_engine, run.id) is None and time.time() < deadline:
            time.sleep(0.05)
        assert _run_row(raw_engine, run.id) == ("RUNNING",)  # visible while still running
    assert _run_row(raw_engine, run.id) == ("FINISHED",)


def test_a_short_run_is_one_transaction_with_its_audit_events(settings, client):
    with keel.start_run("one-tx", settings=settings) as run:
        keel.log_params({"a": 1})
        keel.set_tags({"t": "x"})
        keel.log_metrics({"m": 1.0, "n": 2.0}, step=3)
    events = client.audit_log(object_id=run.id)
    assert [e.action for e in events] == ["run.create", "params.log", "tags.set", "metrics.log", "run.end"]
    assert len({e.time for e in events}) == 1  # appended by one commit
    got = client.get_run(run.id)
    assert got.status == RunStatus.FINISHED and got.params == {"a": "1"} and got.metrics == {"m": 1.0, "n": 2.0}


def test_exception_marks_the_run_failed_and_keeps_what_was_logged(settings, client):
    with pytest.raises(RuntimeError):
        with keel.start_run("failing", settings=settings) as run:
            keel.log_metric("loss", 1.5)
            raise RuntimeError("diverged")
    got = client.get_run(run.id)
    assert got.status == RunStatus.FAILED and got.metrics == {"loss": 1.5}


def test_nested_runs_keep_parent_and_experiment(settings, client):
    with keel.start_run("nest", settings=settings) as parent:
        with keel.start_run(nested=True) as child:
            keel.log_metric("x", 1.0)
        with pytest.raises(keel.KeelError, match="already active"):
            keel.start_run()
    got = client.get_run(child.id)
    assert got.parent_run_id == parent.id and got.experiment_id == client.get_run(parent.id).experiment_id


def test_logging_without_an_active_run_is_a_clear_error():
    with pytest.raises(keel.KeelError, match="no active run"):
        keel.log_metric("x", 1.0)


def test_metric_chunks_round_trip_exactly():
    rows = [("r", "loss", None if i == 3 else i * 0.5, i == 3, i, 1000 + i) for i in range(10)]
    rows += [("r", "loss", math.inf, False, 20, 5), ("r", "acc", -math.inf, False, 0, 7)]
    packed, summary = metric_chunks.pack(rows)
    assert summary["r"]["count"] == 12 and summary["r"]["keys"] == ["acc", "loss"]
    assert summary["r"]["steps"] == [0, 20] and len(summary["r"]["sha256"]) == 64
    loss = metric_chunks.unpack([c[5:] for c in packed if c[1] == "loss"])
    assert [s for s, _, _ in loss] == list(range(10)) + [20]
    assert math.isnan(loss[3][1]) and loss[10][1] == math.inf and loss[4] == (4, 2.0, 1004)


def test_large_series_are_split_into_bounded_chunks(monkeypatch):
    monkeypatch.setattr(metric_chunks, "CHUNK_LIMIT", 4)
    rows = [("r", "k", float(i), False, i, i) for i in range(10)]
    packed, _ = metric_chunks.pack(rows)
    assert [c[2] for c in packed] == [4, 4, 2]
    assert [s for s, _, _ in metric_chunks.unpack([c[5:] for c in packed])] == list(range(10))
