"""keel retrain --env build: the challenger is trained in a virtual environment built from the
lock its pipeline recorded, not in the one that runs keel (a real venv: uv and the package index)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from keel.envs.lock import EnvironmentLock
from keel.pipelines import runner
from keel.pipelines.fingerprint import sha256_text
from keel.pipelines.runner import run_file
from keel.testing.cli import run_cli as keel

pytestmark = pytest.mark.store

# The lock differs from this interpreter in one small pure-Python package that scikit-learn
# needs (>=3.5.0): the build stays quick, and the difference is visible in what was trained.
RECORDED_THREADPOOLCTL = "3.5.0"


def test_retrain_env_build_trains_the_challenger_with_the_recorded_versions(churn_project, settings, keel_env,
                                                                              monkeypatch, client) -> None:
    import threadpoolctl

    assert threadpoolctl.__version__ != RECORDED_THREADPOOLCTL
    real = runner.environment_lock

    def recorded_elsewhere(files):  # the champion's pipeline ran where threadpoolctl was 3.5.0
        lock = EnvironmentLock.from_text(real(files)[0])
        assert "threadpoolctl" in lock.packages
        text = dataclasses.replace(lock, packages={**lock.packages, "threadpoolctl": RECORDED_THREADPOOLCTL}).to_text()
        return text, sha256_text(text)

    monkeypatch.setattr(runner, "environment_lock", recorded_elsewhere)
    first = run_file(churn_project / "pipe.py", {"data": str(churn_project / "weak.csv")}, settings=settings)
    monkeypatch.undo()

    args = ["retrain", "churn", "--data", str(churn_project / "new.csv"), "--eval", str(churn_project / "eval.csv")]
    refused = keel(keel_env, *args, "--strict", check=False)
    assert refused.returncode == 1
    assert f"threadpoolctl: locked {RECORDED_THREADPOOLCTL}, installed {threadpoolctl.__version__}" in refused.stderr

    done = keel(keel_env, *args, "--env", "build", "--json", check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["replay_of"] == first.run_id and result["challenger"] == 2 and result["blessed"]
    python = Path(result["environment"])
    assert python.is_relative_to(settings.home / "envs") and python.is_file()
    version = subprocess.run([str(python), "-c", "import threadpoolctl; print(threadpoolctl.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == RECORDED_THREADPOOLCTL

    # The challenger was trained there: its own lock (captured when the step logged it) and its
    # pipeline run's record say so; the champion's say what this interpreter has.
    def model_lock(version: int) -> dict[str, str]:
        shown = keel(keel_env, "env", "show", f"models:/churn/{version}", "--json")
        return json.loads(shown.stdout)["packages"]

    assert model_lock(2)["threadpoolctl"] == RECORDED_THREADPOOLCTL
    assert model_lock(1)["threadpoolctl"] == threadpoolctl.__version__
    replayed = json.loads(client.read_artifact(result["pipeline_run_id"], "pipeline/replay.json"))
    assert f"threadpoolctl=={RECORDED_THREADPOOLCTL}" in replayed["lock"].splitlines()
    assert client.get_run(result["pipeline_run_id"]).status == "FINISHED"
