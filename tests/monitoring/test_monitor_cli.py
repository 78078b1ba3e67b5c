"""`keel monitor drift` as a user runs it: a real process, its output, its exit code, its report."""

from __future__ import annotations

import json
import os
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from keel.testing.cli import run_cli


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    # Drift on files needs no store: only a home of its own.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    return {**clean, "KEEL_HOME": str(tmp_path / "home")}


def _table(seed: int, n: int, shift: float = 0.0) -> pa.Table:
    """25 columns: 20 numeric, 5 categorical with 3 to 50 categories; ``shift`` moves 13 of them."""
    rng = np.random.default_rng(seed)
    cols = {f"num_{i:02d}": rng.normal(shift if i < 10 else 0.0, 1 + i / 10, n) for i in range(20)}
    for k in (3, 8, 15, 30, 50):
        p = np.linspace(1, 2, k)
        if shift and k <= 15:
            p[0] *= 2
        cols[f"cat_{k}"] = np.array([f"v{j}" for j in range(k)])[rng.choice(k, n, p=p / p.sum())]
    return pa.table(cols)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {"ref": tmp_path / "ref.parquet", "same": tmp_path / "same.csv", "drift": tmp_path / "drift.parquet"}
    pq.write_table(_table(1, 4000), paths["ref"])
    pcsv.write_csv(_table(2, 3000), paths["same"])
    pq.write_table(_table(3, 3000, shift=0.3), paths["drift"])
    return paths


def test_no_drift_exits_0_with_a_table(env: dict[str, str], files: dict[str, Path]) -> None:
    proc = run_cli(env, "monitor", "drift", str(files["ref"]), str(files["same"]))
    assert "no dataset drift" in proc.stdout and "num_00" in proc.stdout and "chisquare" in proc.stdout


def test_drift_exits_3_unless_told_not_to(env: dict[str, str], files: dict[str, Path]) -> None:
    proc = run_cli(env, "monitor", "drift", str(files["ref"]), str(files["drift"]), check=False)
    assert proc.returncode == 3, proc.stderr
    assert "DATASET DRIFT" in proc.stdout
    proc = run_cli(env, "monitor", "drift", str(files["ref"]), str(files["drift"]), "--no-fail-on-drift")
    assert "DATASET DRIFT" in proc.stdout


def test_json_output(env: dict[str, str], files: dict[str, Path]) -> None:
    proc = run_cli(env, "monitor", "drift", str(files["ref"]), str(files["drift"]), "--json", check=False)
    assert proc.returncode == 3
    doc = json.loads(proc.stdout)
    assert doc["schema"] == "keel.drift/1" and doc["dataset_drift"]["detected"] is True
    assert set(doc["drifted_columns"]) == {f"num_{i:02d}" for i in range(10)} | {"cat_3", "cat_8", "cat_15"}
    assert doc["reference"]["source"] == str(files["ref"]) and doc["current"]["rows"] == 3000


def test_options_reach_the_engine(env: dict[str, str], files: dict[str, Path]) -> None:
    proc = run_cli(env, "monitor", "drift", str(files["ref"]), str(files["drift"]), "--json", "--preset", "evidently",
                   "--test", "cat_50=psi", "--threshold", "num_15=0.0", "--ignore", "num_19", "--drift-share", "0.9",
                   "--min-effect", "0.01")
    doc = json.loads(proc.stdout)
    cols = {c["name"]: c["drift"] for c in doc["columns"]}
    assert "num_19" not in cols and cols["cat_50"]["test"] == "psi" and cols["num_15"]["threshold"] == 0.0
    assert cols["num_00"]["test"] == "wasserstein" and cols["num_00"]["min_effect"] == 0.01
    assert doc["settings"]["drift_share"] == 0.9 and doc["dataset_drift"]["detected"] is False


def test_html_report_is_self_contained_and_small(env: dict[str, str], files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    proc = run_cli(env, "monitor", "drift", str(files["ref"]), str(files["drift"]), "--out", str(out), check=False)
    assert proc.returncode == 3 and f"report: {out}" in proc.stdout
    html = out.read_text(encoding="utf-8")
    assert len(html.encode()) < 1_000_000
    assert html.count("<svg") == 26  # one per column, and the drift score per column
    lowered = html.lower()
    assert "<script" not in lowered and " src=" not in lowered and "href=" not in lowered and "@import" not in lowered
    assert "http" not in lowered.replace("http://www.w3.org/2000/svg", "")  # only the SVG namespace name
    for needle in ("num_00", "ks_distance", "total_variation", "p adjusted", "Dataset drift detected"):
        assert needle in html

    class Checker(HTMLParser):  # every element closed, in order
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []

        def handle_starttag(self, tag: str, attrs: list) -> None:
            if tag not in ("meta", "br"):
                self.stack.append(tag)

        def handle_endtag(self, tag: str) -> None:
            assert self.stack and self.stack.pop() == tag, (tag, self.stack[-5:])

    checker = Checker()
    checker.feed(html)
    assert checker.stack == []


def test_schema_break_fails_the_check(env: dict[str, str], files: dict[str, Path], tmp_path: Path) -> None:
    cur = _table(4, 1000).drop_columns(["num_03"])
    pq.write_table(cur, tmp_path / "cur.parquet")
    proc = run_cli(env, "monitor", "drift", str(files["ref"]), str(tmp_path / "cur.parquet"), check=False)
    assert proc.returncode == 3
    assert "missing columns: num_03" in proc.stdout and "schema break" in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["{missing}", "{same}"], "reference file not found"),
    (["{ref}", "{same}", "--test", "num_00"], "--test expects COLUMN=VALUE"),
    (["{ref}", "{same}", "--threshold", "num_00=high"], "is not a number"),
    (["{ref}", "{same}", "--preset", "nannyml"], "preset must be one of"),
])
def test_errors_exit_1_with_one_line(env: dict[str, str], files: dict[str, Path], tmp_path: Path,
                                     args: list[str], message: str) -> None:
    paths = {**{k: str(v) for k, v in files.items()}, "missing": str(tmp_path / "nope.parquet")}
    proc = run_cli(env, "monitor", "drift", *[a.format(**paths) for a in args], check=False)
    assert proc.returncode == 1
    assert message in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr


def _scored(seed: int, n: int, shift_b: float = 0.0, unfair: bool = False, wrong: bool = False) -> pa.Table:
    """Inputs, a model's answers and labels: the answer follows a and b; ``unfair`` approves all of group 1."""
    rng = np.random.default_rng(seed)
    a, b, group = rng.normal(0, 1, n), rng.normal(0, 1, n) + shift_b, rng.integers(0, 2, n)
    score = 1 / (1 + np.exp(-(a + b)))
    y = (rng.random(n) < score).astype(int)
    pred = (score > 0.5).astype(int)
    if unfair:
        pred = np.where(group == 1, 1, pred)
    return pa.table({"a": a, "b": b, "group": group, "pred": pred, "score": score, "y": 1 - y if wrong else y})


def test_drift_with_answers_and_labels_checks_prediction_drift_performance_and_fairness(env, tmp_path):
    ref, same, bad = tmp_path / "ref.parquet", tmp_path / "same.parquet", tmp_path / "bad.parquet"
    pq.write_table(_scored(0, 4000), ref)
    pq.write_table(_scored(1, 4000), same)
    pq.write_table(_scored(2, 4000, shift_b=1.0, unfair=True, wrong=True), bad)
    harm = ["--prediction", "pred", "--target", "y", "--score", "score", "--sensitive", "group", "--json"]

    ok = run_cli(env, "monitor", "drift", str(ref), str(same), *harm)
    doc = json.loads(ok.stdout)
    assert doc["alerts"] == [] and doc["prediction_drift"]["drift"]["status"] == "no_drift"
    assert doc["performance"]["comparison"]["degraded"] is False and doc["fairness"]["status"] == "pass"

    failed = run_cli(env, "monitor", "drift", str(ref), str(bad), *harm, "--out", str(tmp_path / "r.html"),
                     check=False)
    assert failed.returncode == 3, failed.stderr
    doc = json.loads(failed.stdout)
    assert doc["drifted_columns"] == ["b"]  # score and labels are not inputs: they are left out of data drift
    assert doc["prediction_drift"]["drift"]["status"] == "drift"
    assert doc["performance"]["metrics"]["accuracy"] < 0.5 and doc["performance"]["metrics"]["roc_auc"] < 0.5
    assert doc["fairness"]["demographic_parity_difference"] > 0.2
    assert [a.split(":")[0] for a in doc["alerts"]] == ["prediction drift", "performance", "fairness across group"]
    assert "fairness across group" in (tmp_path / "r.html").read_text()

    missing = run_cli(env, "monitor", "drift", str(ref), str(same), "--prediction", "nope", check=False)
    assert missing.returncode == 1
    assert "--prediction column 'nope' is not in the reference data" in missing.stderr
