"""Tracking through the service layer, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import math

import pytest
import sqlalchemy as sa

from keel.entities import Metric, RunStatus
from keel.errors import Conflict, InvalidInput, NotFound

pytestmark = pytest.mark.store


def test_run_records_params_tags_metrics_and_ends(client):
    run = client.create_run("churn", name="baseline", tags={"team": "risk"})
    client.log_params(run.id, {"C": 1.0, "penalty": "l2"})
    client.log_metric(run.id, "auc", 0.80, step=0)
    client.log_metric(run.id, "auc", 0.91, step=1)
    client.end_run(run.id)

    got = client.get_run(run.id)
    assert got.status == RunStatus.FINISHED and got.end_time >= got.start_time
    assert got.name == "baseline" and got.user == "alice"
    assert got.params == {"C": "1.0", "penalty": "l2"}
    assert got.tags == {"team": "risk"}
    assert got.metrics == {"auc": 0.91}
    assert [(m.step, m.value) for m in client.metric_history(run.id, "auc")] == [(0, 0.80), (1, 0.91)]
    assert client.get_experiment("churn").id == got.experiment_id


def test_latest_metric_is_highest_step_not_last_logged(client):
    run = client.create_run()
    client.log_metric(run.id, "loss", 0.2, step=5)
    client.flush()
    client.log_metric(run.id, "loss", 0.9, step=1)  # late value for an earlier step
    client.flush()
    assert client.get_run(run.id).metrics["loss"] == 0.2


def test_metrics_wait_in_buffer_until_flush(client, raw_engine):
    run = client.create_run()
    for i in range(100):
        client.log_metric(run.id, "loss", 1.0 / (i + 1), step=i)
    count = sa.text("SELECT COALESCE(SUM(count), 0) FROM metric_chunks")
    with raw_engine.connect() as conn:
        assert conn.execute(count).scalar() == 0  # no round trip per call
    client.flush()
    with raw_engine.connect() as conn:
        assert conn.execute(count).scalar() == 100


def test_buffer_flushes_itself_when_full(settings):
    from keel.tracking.client import Client

    small = Client(dataclasses.replace(settings, metric_buffer_size=10))
    run = small.create_run()
    for i in range(25):
        small.log_metric(run.id, "x", float(i), step=i)
    assert len(small._buffer) == 5  # two flushes of 10 happened from the logging calls
    small.close()  # closing flushes the rest
    assert [m.value for m in client_history(settings, run.id, "x")] == [float(i) for i in range(25)]


def client_history(settings, run_id, key):
    from keel.tracking.client import Client

    fresh = Client(settings)
    try:
        return fresh.metric_history(run_id, key)
    finally:
        fresh.close()


def test_nan_and_inf_are_kept_by_default(client):
    run = client.create_run()
    client.log_metric(run.id, "loss", math.nan, step=0)
    client.log_metric(run.id, "loss", math.inf, step=1)
    client.log_metric(run.id, "loss", -math.inf, step=2)
    history = client.metric_history(run.id, "loss")
    assert math.isnan(history[0].value)
    assert history[1].value == math.inf and history[2].value == -math.inf


def test_nonfinite_refused_when_configured(settings):
    from keel.tracking.client import Client

    strict = Client(dataclasses.replace(settings, allow_nonfinite_metrics=False))
    run = strict.create_run()
    with pytest.raises(InvalidInput, match=r"metric 'loss' value is nan"):
        strict.log_metric(run.id, "loss", float("nan"))
    with pytest.raises(InvalidInput, match=r"metric 'loss' value is inf"):
        strict.log_metric(run.id, "loss", float("inf"))
    strict.close()


@pytest.mark.parametrize("value", ["0.5", None, True, [1.0]])
def test_metric_value_must_be_a_number(client, value):
    run = client.create_run()
    with pytest.raises(InvalidInput, match=r"metric 'acc' value must be a real number"):
        client.log_metric(run.id, "acc", value)


def test_numpy_scalars_are_accepted(client):
    import numpy as np
    run = client.create_run()
    client.log_metric(run.id, "acc", np.float32(0.5), step=np.int64(3))
    assert client.metric_history(run.id, "acc") == [Metric("acc", 0.5, 3, client.metric_history(run.id, "acc")[0].timestamp)]


def test_unknown_run_id_is_named(client):
    with pytest.raises(NotFound, match=r"run_id 'no-such-run' does not exist"):
        client.log_params("no-such-run", {"a": 1})
    with pytest.raises(NotFound, match=r"'no-such-run' does not exist"):
        client.get_run("no-such-run")
    with pytest.raises(NotFound, match=r"run_id 'no-such-run' does not exist"):
        client.log_metric("no-such-run", "x", 1.0)  # checked at the call, not at a later flush
    with pytest.raises(NotFound, match=r"run_id 'no-such-run' does not exist"):
        client.end_run("no-such-run")


def test_param_changed_by_another_process_is_refused_at_flush_without_losing_other_runs(client, settings):
    from keel.tracking.client import Client

    run, other = client.create_run(), client.create_run()
    client.log_params(run.id, {"lr": 0.1})
    client.flush()
    second = Client(settings)  # another process's view: it does not know what the first logged
    second.log_params(run.id, {"lr": 0.5})
    second.log_metric(other.id, "acc", 0.7)
    second.log_params(other.id, {"depth": 3})
    with pytest.raises(Conflict, match=r"param 'lr' of run \w+ is already '0.1'; cannot change it to '0.5'"):
        second.flush()
    assert client.get_run(run.id).params == {"lr": "0.1"}
    kept = client.get_run(other.id)  # the other run's part of the batch was written
    assert kept.params == {"depth": "3"} and kept.metrics == {"acc": 0.7}
    second.flush()  # the refused part was dropped, not retried forever
    second.close()


def test_over_long_keys_and_values_are_refused(client):
    run = client.create_run()
    with pytest.raises(InvalidInput, match=r"param key .* is 251 characters long; at most 250"):
        client.log_params(run.id, {"k" * 251: 1})
    with pytest.raises(InvalidInput, match=r"metric key .* is 300 characters long"):
        client.log_metric(run.id, "m" * 300, 1.0)
    with pytest.raises(InvalidInput, match=r"param 'big' value is 6001 characters long"):
        client.log_params(run.id, {"big": "x" * 6001})
    with pytest.raises(InvalidInput, match=r"tag key 'bad\\nkey' has characters"):
        client.set_tags(run.id, {"bad\nkey": 1})


def test_param_is_immutable_but_relogging_same_value_is_fine(client):
    run = client.create_run()
    client.log_params(run.id, {"lr": 0.1})
    client.log_params(run.id, {"lr": 0.1})
    with pytest.raises(Conflict, match=r"param 'lr' of run \w+ is already '0.1'; cannot change it to '0.2'"):
        client.log_params(run.id, {"lr": 0.2, "other": 1})
    assert client.get_run(run.id).params == {"lr": "0.1"}  # the whole call was refused, nothing half-written


def test_tags_are_mutable(client):
    run = client.create_run(tags={"stage": "dev"})
    client.set_tags(run.id, {"stage": "prod", "owner": "bob"})
    assert client.get_run(run.id).tags == {"owner": "bob", "stage": "prod"}


def test_child_run_points_at_parent_and_unknown_parent_is_refused(client):
    parent = client.create_run("exp")
    child = client.create_run("exp", parent_run_id=parent.id)
    assert client.get_run(child.id).parent_run_id == parent.id
    with pytest.raises(NotFound, match=r"parent_run_id 'ghost' does not exist"):
        client.create_run("exp", parent_run_id="ghost")


def test_end_run_rejects_unknown_status(client):
    run = client.create_run()
    with pytest.raises(InvalidInput, match=r"run status must be one of"):
        client.end_run(run.id, "DONE")


def test_search_filters_and_orders(client):
    ids = {}
    for i, (model, auc) in enumerate([("rf", 0.7), ("rf", 0.9), ("lr", 0.8), ("lr", 0.95)]):
        run = client.create_run("search", name=f"r{i}")
        client.log_params(run.id, {"model": model})
        client.log_metric(run.id, "auc", auc)
        client.end_run(run.id, RunStatus.FAILED if i == 3 else RunStatus.FINISHED)
        ids[auc] = run.id
    other = client.create_run("elsewhere")
    client.log_metric(other.id, "auc", 0.99)

    found = client.search_runs("search", "metrics.auc > 0.75", order_by=["metrics.auc DESC"])
    assert [r.id for r in found] == [ids[0.95], ids[0.9], ids[0.8]]
    found = client.search_runs("search", "params.model = 'rf' and metrics.auc >= 0.9")
    assert [r.id for r in found] == [ids[0.9]]
    found = client.search_runs(["search"], "attributes.status = 'FAILED'")
    assert [r.id for r in found] == [ids[0.95]]
    assert len(client.search_runs(None, "metrics.auc > 0.98")) == 1
    assert len(client.search_runs("search", max_results=2)) == 2


@pytest.mark.parametrize("bad, message", [
    ("metrics.auc >> 1", "cannot parse filter clause"),
    ("metrics.auc = 'high'", "must compare with a number"),
    ("colour.x = 'y'", "unknown filter kind 'colour'"),
    ("attributes.shoe = 'x'", "unknown run attribute 'shoe'"),
])
def test_bad_filter_names_the_clause(client, bad, message):
    with pytest.raises(InvalidInput, match=message):
        client.search_runs(None, bad)


def test_experiments_list_and_unknown_experiment(client):
    client.create_run("a")
    client.create_run("b")
    assert [e.name for e in client.list_experiments()] == ["a", "b"]
    with pytest.raises(NotFound, match=r"experiment 'zzz' does not exist"):
        client.get_experiment("zzz")


def test_a_refused_change_writes_no_audit_event(client):
    run = client.create_run()
    client.log_params(run.id, {"a": 1})
    before = len(client.audit_log())
    with pytest.raises(Conflict):
        client.log_params(run.id, {"a": 2})
    assert len(client.audit_log()) == before
    assert client.verify_audit().ok


def test_every_change_is_audited_with_actor(client):
    run = client.create_run("audited")
    client.log_params(run.id, {"a": 1})
    client.log_metric(run.id, "m", 1.0)
    client.end_run(run.id)
    events = client.audit_log(object_id=run.id)
    assert [e.action for e in events] == ["run.create", "params.log", "metrics.log", "run.end"]
    assert {e.actor for e in events} == {"alice"}
    assert client.verify_audit().ok
