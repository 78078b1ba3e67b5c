"""`keel quickstart`, the README's main job, end to end through the console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


def _keel_exe() -> list[str]:
    exe = shutil.which("keel", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "keel.cli.main"]


def test_quickstart_tracks_a_run_and_verifies_the_chain(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    home = tmp_path / "qs"
    proc = subprocess.run([*_keel_exe(), "quickstart", "--home", str(home)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "10. audit   chain OK" in proc.stdout
    env["KEEL_HOME"] = str(home)
    runs = json.loads(subprocess.run([*_keel_exe(), "runs", "list", "--json"], env=env, capture_output=True,
                                     text=True, check=True).stdout)
    assert len(runs) == 1 and runs[0]["status"] == "FINISHED"
    run = runs[0]
    assert run["metrics"]["accuracy"] > 0.9 and run["params"]["model"] == "SGDClassifier"
    shown = json.loads(subprocess.run([*_keel_exe(), "runs", "show", run["id"], "--json"], env=env,
                                      capture_output=True, text=True, check=True).stdout)
    assert shown["metric_values_logged"]["train_loss"] == 15
    assert {d["context"] for d in shown["datasets"]} == {"training", "evaluation"}
    paths = {a["path"] for a in shown["artifacts"]}
    assert {"evaluation/report.txt", "details/coefficients.json", "model/keel.yaml", "model/model.skops",
            "model/requirements.lock"} <= paths
    assert "5. model    runs:/" in proc.stdout and "predictions identical: True" in proc.stdout
    verify = subprocess.run([*_keel_exe(), "audit", "verify"], env=env, capture_output=True, text=True)
    assert verify.returncode == 0
    # Governance: promoted to production by a second person, and the card says so.
    assert "risk-officer approved -> models:/breast-cancer@production = version 1" in " ".join(proc.stdout.split())
    prod = json.loads(subprocess.run([*_keel_exe(), "models", "show", "models:/breast-cancer@production", "--json"],
                                     env=env, capture_output=True, text=True, check=True).stdout)
    assert prod["version"] == 1 and prod["source"] == f"runs:/{run['id']}/model"
    card = (home / "model-card.html").read_text()
    assert "risk-officer" in card and "metrics and card reviewed" in card
    log = subprocess.run([*_keel_exe(), "audit", "log", "--json"], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert [e["action"] for e in json.loads(log) if e["action"].startswith(("promotion.", "access."))] == \
        ["promotion.request", "access.denied", "promotion.approve"]


def test_quickstart_refuses_a_non_empty_home(tmp_path):
    home = tmp_path / "used"
    home.mkdir()
    (home / "something").write_text("x")
    proc = subprocess.run([*_keel_exe(), "quickstart", "--home", str(home)], capture_output=True, text=True)
    assert proc.returncode == 1 and "is not empty" in proc.stderr
