"""`keel quickstart`, the README's main job, end to end through the console script: train through a
pipeline, govern, serve, detect drift in served traffic, retrain on the alert, gate, approve, audit."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path


def _keel_exe() -> list[str]:
    exe = shutil.which("keel", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "keel.cli.main"]


def _keel_json(env: dict[str, str], *args: str):
    proc = subprocess.run([*_keel_exe(), *args, "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_quickstart_runs_the_whole_loop_and_verifies_the_chain(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    home = tmp_path / "qs"
    proc = subprocess.run([*_keel_exe(), "quickstart", "--home", str(home)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    flat = " ".join(out.split())
    steps = [line for line in out.splitlines() if re.match(r"\d+\. ", line)]
    assert re.match(r"\d+\. audit +chain OK", steps[-1]), steps[-1]  # the audit check comes last
    assert "Traceback" not in proc.stderr, proc.stderr
    env["KEEL_HOME"] = str(home)

    # Version 1 comes from a pipeline run: a pipeline run, and a child run per step.
    runs = _keel_json(env, "runs", "list")
    assert all(r["status"] == "FINISHED" for r in runs)
    assert sorted(r["name"] for r in runs) == ["breast-cancer", "breast-cancer", "fit", "fit", "load", "load"]
    v1 = _keel_json(env, "models", "show", "models:/breast-cancer/1")
    run_id = v1["source"].removeprefix("runs:/").removesuffix("/model")
    run = next(r for r in runs if r["id"] == run_id)
    assert run["name"] == "fit" and run["metrics"]["accuracy"] > 0.9 and run["params"]["model"] == "SGDClassifier"
    shown = _keel_json(env, "runs", "show", run_id)
    assert shown["metric_values_logged"]["train_loss"] == 15
    assert {d["context"] for d in shown["datasets"]} == {"training", "evaluation"}
    paths = {a["path"] for a in shown["artifacts"]}
    assert {"evaluation/report.txt", "details/coefficients.json", "model/keel.yaml", "model/model.skops",
            "model/requirements.lock"} <= paths
    assert f"model    runs:/{run_id}/model" in out and "test accuracy as logged: True" in out
    pipelines = _keel_json(env, "pipeline", "runs")
    assert len(pipelines) == 2 and sorted(bool(p["replay_of"]) for p in pipelines) == [False, True]
    # Governance of version 1: promoted by a second person, and its card says so.
    assert "risk-officer approved -> models:/breast-cancer@production = version 1" in flat
    card = (home / "model-card-v1.html").read_text()
    assert "risk-officer" in card and "metrics and card reviewed" in card

    # The loop: a clean window passes, the recalibrated one alerts on the columns that moved.
    monitor = _keel_json(env, "monitor", "show", "breast-cancer")
    shifted, clean = monitor["results"]  # newest first
    assert (clean["status"], clean["alerts"], clean["rows"]) == ("ok", [], 143)
    assert shifted["status"] == "alert" and shifted["rows"] == 143
    drift = next(a for a in shifted["alerts"] if a.startswith("data drift:"))
    assert "mean_radius" in drift and "worst_area" in drift and "mean_texture" not in drift
    # The trigger fired once, on that window, and retrained through the recorded pipeline.
    trigger = _keel_json(env, "triggers", "show", "retrain-on-drift")
    [firing] = trigger["firings"]
    assert firing["status"] == "succeeded" and firing["dedupe_key"] == f"monitor-result:{shifted['id']}"
    assert firing["outcome"]["challenger"] == 2 and firing["outcome"]["blessed"] is True
    # The gate's decision is recorded with both models' numbers, and printed.
    events = _keel_json(env, "audit", "log", "--limit", "0")
    [gate] = [e for e in events if e["action"] == "gate.decision"]
    decision = json.loads(gate["details"]) if isinstance(gate["details"], str) else gate["details"]
    scores = decision["scores"]
    assert decision["blessed"] and decision["champion_version"] == 1
    assert scores["challenger"]["accuracy"] > scores["champion"]["accuracy"]
    assert f"accuracy {scores['champion']['accuracy']:.3f} -> {scores['challenger']['accuracy']:.3f}" in flat
    # Production moved to version 2 only on the reviewer's approval; the requester's own was refused twice.
    prod = _keel_json(env, "models", "show", "models:/breast-cancer@production")
    assert prod["version"] == 2 and prod["source"] != v1["source"]
    assert [e["action"] for e in events if e["action"].startswith(("promotion.", "access."))] == \
        ["promotion.request", "access.denied", "promotion.approve"] * 2
    assert "risk-officer approved -> models:/breast-cancer@production = version 2" in flat
    # The server was stopped; version 2's lineage leads back to the alerting window.
    [deployment] = _keel_json(env, "deployments", "list")
    assert deployment["model_version"] == 1 and deployment["status"] == "stopped"
    lineage = _keel_json(env, "lineage", "models:/breast-cancer/2")
    triggered = [e for e in lineage["edges"] if e["kind"] == "triggered"]
    assert [e["source"] for e in triggered] == [f"monitor-result:{shifted['id']}"]
    assert f"monitor-result:{shifted['id']}" in out
    verify = subprocess.run([*_keel_exe(), "audit", "verify"], env=env, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr


def test_quickstart_refuses_a_non_empty_home(tmp_path):
    home = tmp_path / "used"
    home.mkdir()
    (home / "something").write_text("x")
    proc = subprocess.run([*_keel_exe(), "quickstart", "--home", str(home)], capture_output=True, text=True)
    assert proc.returncode == 1 and "is not empty" in proc.stderr
