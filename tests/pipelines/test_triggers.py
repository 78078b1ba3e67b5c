"""Triggers: a new file fires once, also across a killed and restarted scheduler; schedules and by hand."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from keel.pipelines.triggers import fire_manually, scheduler_pass
from keel.service import triggers as service
from keel.testing.cli import run_cli as keel

pytestmark = pytest.mark.store

LINES = """
import keel


@keel.step
def count(path):
    with open(path) as fh:
        return sum(1 for _ in fh)


@keel.pipeline(datasets=["data"])
def lines(data="x.csv"):
    return count(data)
"""


@pytest.fixture
def watched(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "proj").mkdir()
    pipe = tmp_path / "proj" / "lines.py"
    pipe.write_text(textwrap.dedent(LINES))
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "old.csv").write_text("x\n1\n")
    return pipe, incoming


def fired_files(ctx, trigger_id: str) -> list[tuple[str, str]]:
    return sorted((Path(f.outcome["file"]).name, f.status) for f in service.firings(ctx, trigger_id))


def test_a_new_file_fires_once_also_across_a_killed_and_restarted_scheduler(watched, keel_env, client):
    pipe, incoming = watched
    created = json.loads(keel(keel_env, "triggers", "create", "watch", "--on", "new-data", "--path",
                              str(incoming / "*.csv"), "--pipeline", str(pipe), "--json").stdout)
    (incoming / "a.csv").write_text("x\n1\n2\n")
    text = keel(keel_env, "scheduler", "--once").stdout
    assert "trigger watch fired (file=" in text and "a.csv" in text and "old.csv" not in text

    scheduler = subprocess.Popen([sys.executable, "-m", "keel.cli.main", "scheduler", "--interval", "0.2"],
                                 env=keel_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        (incoming / "b.csv").write_text("x\n1\n2\n3\n")
        for _ in range(600):  # bounded wait for the running scheduler to pick b.csv up
            if ("b.csv", "succeeded") in fired_files(client.ctx, created["id"]):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the running scheduler never fired for b.csv")
    finally:
        scheduler.kill()  # no graceful shutdown: SIGKILL
        scheduler.wait()

    (incoming / "c.csv").write_text("x\n4\n")  # arrives while no scheduler runs
    keel(keel_env, "scheduler", "--once")
    keel(keel_env, "scheduler", "--once")  # nothing new: nothing fires

    assert fired_files(client.ctx, created["id"]) == [("a.csv", "succeeded"), ("b.csv", "succeeded"),
                                                      ("c.csv", "succeeded")]
    shown = json.loads(keel(keel_env, "triggers", "show", "watch", "--json").stdout)
    counts = {Path(f["outcome"]["file"]).name: f["outcome"]["pipeline_run_id"] for f in shown["firings"]}
    assert set(counts) == {"a.csv", "b.csv", "c.csv"}
    from keel.service.pipelines import get_pipeline_run

    assert get_pipeline_run(client.ctx, counts["c.csv"]).datasets["data"]["filename"] == "c.csv"


def test_a_changed_file_is_new_data(watched, settings, client):
    pipe, incoming = watched
    trigger = service.create_trigger(client.ctx, "watch", "new_data", {"path": str(incoming)},
                                     {"pipeline": str(pipe)})
    assert scheduler_pass(client.ctx, settings) == 1  # old.csv: the trigger was created without a baseline
    assert scheduler_pass(client.ctx, settings) == 0
    (incoming / "old.csv").write_text("x\n1\n2\n")
    assert scheduler_pass(client.ctx, settings) == 1
    assert [s for _, s in fired_files(client.ctx, trigger.id)] == ["succeeded", "succeeded"]


def test_a_schedule_fires_once_per_tick_and_only_the_latest_missed_one(watched, settings, client):
    pipe, incoming = watched
    trigger = service.create_trigger(client.ctx, "nightly", "schedule", {"cron": "0 3 * * *"},
                                     {"pipeline": str(pipe), "data": str(incoming / "old.csv")})
    start = datetime.fromtimestamp(trigger.created_at / 1000, tz=timezone.utc)
    next_day = (start + timedelta(days=1)).replace(hour=3, minute=30, second=0, microsecond=0)
    assert scheduler_pass(client.ctx, settings, now=next_day) == 1
    assert scheduler_pass(client.ctx, settings, now=next_day + timedelta(minutes=5)) == 0
    assert scheduler_pass(client.ctx, settings, now=next_day + timedelta(days=3)) == 1  # 3 missed ticks: one firing
    ticks = [f.outcome["tick"] for f in service.firings(client.ctx, trigger.id)]
    assert ticks == [next_day.replace(minute=0).isoformat(), (next_day + timedelta(days=3)).replace(minute=0).isoformat()]


def test_a_bad_cron_and_a_trigger_without_action_are_refused(keel_env, watched):
    pipe, _ = watched
    proc = keel(keel_env, "triggers", "create", "t", "--on", "schedule", "--cron", "every day", "--pipeline",
                str(pipe), check=False)
    assert proc.returncode == 1 and "--cron must be a cron expression" in proc.stderr
    proc = keel(keel_env, "triggers", "create", "t", "--on", "new-data", "--path", "/tmp", check=False)
    assert proc.returncode == 1 and "exactly one action" in proc.stderr


def test_by_hand_list_and_delete(watched, keel_env, client, settings):
    pipe, incoming = watched
    keel(keel_env, "triggers", "create", "hand", "--on", "manual", "--pipeline", str(pipe), "--data",
         str(incoming / "old.csv"))
    first = json.loads(keel(keel_env, "triggers", "fire", "hand", "--json").stdout)
    assert first["status"] == "succeeded"
    _, status, outcome = fire_manually(client.ctx, "hand", settings)
    assert status == "succeeded" and outcome["cached"] == ["count"]  # same data, same code: cached
    assert [t["name"] for t in json.loads(keel(keel_env, "triggers", "list", "--json").stdout)] == ["hand"]
    keel(keel_env, "triggers", "delete", "hand")
    assert json.loads(keel(keel_env, "triggers", "list", "--json").stdout) == []
    assert [e.action for e in client.audit_log(action="trigger.delete")] == ["trigger.delete"]


ROWS = """
import keel
import pyarrow.parquet as pq


@keel.step
def rows(path):
    return pq.read_table(path).num_rows


@keel.pipeline(datasets=["data"])
def count_rows(data="x.parquet"):
    return rows(data)
"""


def test_a_dataset_logged_under_a_name_fires_once_per_new_digest(tmp_path, client, settings):
    import keel
    from keel.pipelines import values
    from keel.service.pipelines import get_pipeline_run, steps_of

    (tmp_path / "proj").mkdir()
    pipe = tmp_path / "proj" / "rows.py"
    pipe.write_text(textwrap.dedent(ROWS))
    with keel.start_run("data", settings=settings):
        keel.log_dataset({"x": [1, 2]}, name="incoming", save=True)  # before the trigger: never fires
    trigger = service.create_trigger(client.ctx, "on-data", "dataset", {"dataset": "incoming"},
                                     {"pipeline": str(pipe)})
    time.sleep(0.002)
    with keel.start_run("data", settings=settings):
        keel.log_dataset({"x": [1, 2, 3]}, name="incoming", save=True)
        keel.log_dataset({"x": [9]}, name="other", save=True)  # another name: not watched
    now = datetime.now(timezone.utc)
    assert scheduler_pass(client.ctx, settings, now=now) == 1
    assert scheduler_pass(client.ctx, settings, now=now) == 0
    [fired] = service.firings(client.ctx, trigger.id)
    assert fired.status == "succeeded" and fired.dedupe_key.startswith("dataset:sha256:")
    run = get_pipeline_run(client.ctx, fired.outcome["pipeline_run_id"])
    assert run.status == "FINISHED" and fired.outcome["ran"] == ["rows"]
    # The step read the logged rows: the new digest's three, not the first dataset's two.
    [step] = steps_of(client.ctx, run.run_id)
    out = step.outputs[0]
    assert values.decode(out["kind"], client.ctx.blobs.get_bytes(out["sha256"])) == 3

    with keel.start_run("data", settings=settings):
        keel.log_dataset({"x": [4, 5, 6, 7]}, name="incoming")  # rows not saved: nothing to hand over
    assert scheduler_pass(client.ctx, settings, now=now) == 1
    failed = [f for f in service.firings(client.ctx, trigger.id) if f.status == "failed"]
    assert len(failed) == 1 and "logged without save=True" in failed[0].outcome["error"]


def test_reading_triggers_runs_and_gate_decisions_needs_a_known_user(client, settings):
    import dataclasses

    from keel.errors import PermissionDenied
    from keel.service import users
    from keel.service.context import Context
    from keel.service.gate import decisions_for
    from keel.service.pipelines import list_pipeline_runs

    users.add_user(client.ctx, "alice", "admin")  # the store now knows its users
    assert service.list_triggers(client.ctx) == []
    stranger = Context.from_settings(dataclasses.replace(settings, user="mallory"))
    try:
        for read in (lambda: service.list_triggers(stranger), lambda: list_pipeline_runs(stranger),
                     lambda: decisions_for(stranger, "churn")):
            with pytest.raises(PermissionDenied, match="mallory"):
                read()
    finally:
        stranger.close()
