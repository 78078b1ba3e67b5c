"""The audit chain detects events edited, deleted, inserted or reordered in the database."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy as sa

from keel.governance.audit import GENESIS_HASH, event_hash

pytestmark = pytest.mark.store


@pytest.fixture
def audited(client):
    run = client.create_run("audit")
    client.log_params(run.id, {"a": 1})
    client.set_tags(run.id, {"t": "x"})
    client.log_metric(run.id, "m", 1.0)
    client.end_run(run.id)
    report = client.verify_audit()
    assert report.ok and report.events_checked == 6
    return client


def _exec(engine, sql: str, **params) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def test_chain_links_every_event_to_the_previous(audited):
    events = audited.audit_log()
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[0].prev_hash == GENESIS_HASH
    for prev, ev in zip(events, events[1:]):
        assert ev.prev_hash == prev.hash
    for ev in events:
        assert ev.hash == event_hash(ev.seq, ev.time, ev.actor, ev.action, ev.object_type, ev.object_id,
                                     ev.details, ev.prev_hash)


def test_edited_event_is_named(audited, raw_engine):
    _exec(raw_engine, "UPDATE audit_events SET details = :d WHERE seq = 3", d='{"params":{"a":"2"}}')
    report = audited.verify_audit()
    assert not report.ok and report.first_bad_seq == 3 and "edited" in report.reason


def test_edited_actor_is_named(audited, raw_engine):
    _exec(raw_engine, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 5")
    assert audited.verify_audit().first_bad_seq == 5


def test_deleted_event_is_named(audited, raw_engine):
    _exec(raw_engine, "DELETE FROM audit_events WHERE seq = 4")
    report = audited.verify_audit()
    assert not report.ok and report.first_bad_seq == 4


def test_deleted_and_renumbered_events_are_named(audited, raw_engine):
    _exec(raw_engine, "DELETE FROM audit_events WHERE seq = 2")
    for seq in range(3, 7):
        _exec(raw_engine, "UPDATE audit_events SET seq = :new WHERE seq = :old", new=seq - 1, old=seq)
    report = audited.verify_audit()
    assert not report.ok and report.first_bad_seq == 2


def test_reordered_events_are_named(audited, raw_engine):
    # Swap events 2 and 3 (each keeps its own hash, the seq numbers are exchanged).
    _exec(raw_engine, "UPDATE audit_events SET seq = 1000 WHERE seq = 2")
    _exec(raw_engine, "UPDATE audit_events SET seq = 2 WHERE seq = 3")
    _exec(raw_engine, "UPDATE audit_events SET seq = 3 WHERE seq = 1000")
    report = audited.verify_audit()
    assert not report.ok and report.first_bad_seq == 2


def test_inserted_event_is_named(audited, raw_engine):
    for seq in range(6, 3, -1):  # make room after event 3
        _exec(raw_engine, "UPDATE audit_events SET seq = :new WHERE seq = :old", new=seq + 1, old=seq)
    with raw_engine.connect() as conn:
        prev = conn.execute(sa.text("SELECT hash FROM audit_events WHERE seq = 3")).scalar()
    forged = ["2026-01-01T00:00:00.000000+00:00", "mallory", "run.end", "run", "x", "{}"]
    _exec(raw_engine,
          "INSERT INTO audit_events (seq, time, actor, action, object_type, object_id, details, prev_hash, hash) "
          "VALUES (4, :t, :a, :ac, :ot, :oid, :d, :p, :h)",
          t=forged[0], a=forged[1], ac=forged[2], ot=forged[3], oid=forged[4], d=forged[5], p=prev,
          h=event_hash(4, *forged, prev))
    report = audited.verify_audit()
    assert not report.ok and report.first_bad_seq == 5  # the forged event is well-formed; its successor no longer links


def test_truncated_tail_is_detected(audited, raw_engine):
    _exec(raw_engine, "DELETE FROM audit_events WHERE seq = 6")
    report = audited.verify_audit()
    assert not report.ok and report.first_bad_seq == 6


def test_cli_verify_exits_1_and_names_the_event(audited, raw_engine, keel_env):
    ok = subprocess.run([sys.executable, "-m", "keel.cli.main", "audit", "verify"], env=keel_env,
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "audit chain OK: 6 events" in ok.stdout
    _exec(raw_engine, "UPDATE audit_events SET action = 'run.delete' WHERE seq = 2")
    bad = subprocess.run([sys.executable, "-m", "keel.cli.main", "audit", "verify"], env=keel_env,
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "audit chain BROKEN at event 2: content does not match its hash (edited)"
