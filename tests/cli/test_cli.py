"""The `keel` command as a user runs it: real processes, real stdout/stderr, exit codes."""

from __future__ import annotations

import json

import pytest

from keel.testing.cli import run_cli

from keel.store.engine import HEAD_REVISION

pytestmark = pytest.mark.store
keel = run_cli


@pytest.fixture
def populated(client):
    run = client.create_run("churn", name="forest", tags={"team": "risk"})
    client.log_params(run.id, {"n_estimators": 100})
    for step in range(3):
        client.log_metric(run.id, "auc", 0.8 + step / 100, step=step)
    client.log_dict(run.id, {"ok": True}, "report.json")
    client.log_dataset(run.id, {"x": [1.0, 2.0]}, "train")
    client.end_run(run.id)
    other = client.create_run("churn", name="linear")
    client.log_metric(other.id, "auc", 0.7)
    client.end_run(other.id)
    return run.id, other.id


def test_experiments_and_runs_json(populated, keel_env):
    forest, linear = populated
    exps = json.loads(keel(keel_env, "experiments", "list", "--json").stdout)
    assert [e["name"] for e in exps] == ["churn"]
    runs = json.loads(keel(keel_env, "runs", "list", "--json", "--filter", "metrics.auc > 0.75").stdout)
    assert [r["id"] for r in runs] == [forest]
    shown = json.loads(keel(keel_env, "runs", "show", forest, "--json").stdout)
    assert shown["params"] == {"n_estimators": "100"} and shown["metrics"] == {"auc": 0.8 + 2 / 100}
    assert shown["metric_values_logged"] == {"auc": 3}
    assert shown["experiment"] == "churn" and shown["tags"] == {"team": "risk"}
    assert [a["path"] for a in shown["artifacts"]] == ["report.json"]
    assert [d["name"] for d in shown["datasets"]] == ["train"]


def test_human_output_names_the_run(populated, keel_env):
    forest, _ = populated
    text = keel(keel_env, "runs", "show", forest).stdout
    assert f"run {forest}" in text and "n_estimators" in text and "report.json" in text
    listing = keel(keel_env, "runs", "list", "--experiment", "churn").stdout
    assert "forest" in listing and "linear" in listing


def test_audit_log_json(populated, keel_env):
    forest, _ = populated
    events = json.loads(keel(keel_env, "audit", "log", "--json", "--object", forest).stdout)
    assert [e["action"] for e in events] == [
        "run.create", "params.log", "metrics.log", "artifact.log", "dataset.use", "run.end"]
    assert all(e["actor"] == "alice" for e in events)


def test_errors_are_one_line_on_stderr_with_exit_1(populated, keel_env):
    proc = keel(keel_env, "runs", "show", "no-such-run", check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == ["error: run 'no-such-run' does not exist (see `keel runs list`)"]
    proc = keel(keel_env, "runs", "list", "--filter", "metrics.auc >> 1", check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "cannot parse filter clause 'metrics.auc >> 1'" in proc.stderr


def test_debug_shows_the_traceback(populated, keel_env):
    proc = keel(keel_env, "--debug", "runs", "show", "no-such-run", check=False)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "NotFound" in proc.stderr


def test_bad_setting_is_one_clear_line(keel_env):
    proc = keel({**keel_env, "KEEL_METRIC_BUFFER_SIZE": "lots"}, "runs", "list", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "error: setting metric_buffer_size (KEEL_METRIC_BUFFER_SIZE) must be a int: got 'lots' "
        "(invalid literal for int() with base 10: 'lots')")


def test_db_upgrade(keel_env):
    first = keel(keel_env, "db", "upgrade").stdout
    assert f"revision {HEAD_REVISION}" in first
    assert f"already at revision {HEAD_REVISION}" in keel(keel_env, "db", "upgrade").stdout


def test_global_flag_beats_environment(populated, keel_env, tmp_path):
    empty = f"sqlite:///{tmp_path / 'other.db'}"
    out = json.loads(keel(keel_env, "--store-uri", empty, "experiments", "list", "--json").stdout)
    assert out == []


def test_help_and_version(keel_env):
    assert "quickstart" in keel(keel_env, "--help").stdout
    assert keel(keel_env, "--version").stdout.startswith("keel ")
    for group in ("runs", "experiments", "audit", "db"):
        assert keel(keel_env, group, "--help").returncode == 0
