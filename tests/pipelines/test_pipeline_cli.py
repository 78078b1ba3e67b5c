"""`keel pipeline run/runs/show` as a user runs them."""

from __future__ import annotations

import json
import textwrap

import pytest

from keel.testing.cli import run_cli as keel

pytestmark = pytest.mark.store

PIPELINE = """
import keel


@keel.step
def square(x: int):
    return x * x


@keel.step
def check(value):
    if value > 100:
        raise ValueError(f"value {value} is over 100")
    return value


@keel.pipeline
def squares(x=3, label="demo"):
    return check(square(x))
"""


@pytest.fixture
def pipe_file(tmp_path):
    path = tmp_path / "proj" / "squares.py"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(PIPELINE))
    return path


def test_pipeline_run_twice_reuses_every_step(pipe_file, keel_env):
    first = json.loads(keel(keel_env, "pipeline", "run", str(pipe_file), "--param", "x=4", "--json").stdout)
    assert first["status"] == "FINISHED"
    assert {n: s["status"] for n, s in first["steps"].items()} == {"square": "ran", "check": "ran"}
    second = json.loads(keel(keel_env, "pipeline", "run", str(pipe_file), "-p", "x=4", "--json").stdout)
    assert {n: s["status"] for n, s in second["steps"].items()} == {"square": "cached", "check": "cached"}
    assert second["steps"]["check"]["cached_from"] == first["steps"]["check"]["run_id"]

    shown = json.loads(keel(keel_env, "pipeline", "show", second["run_id"][:10], "--json").stdout)
    assert shown["params"] == {"x": 4, "label": "demo"} and shown["status"] == "FINISHED"
    assert [s["status"] for s in shown["steps"]] == ["cached", "cached"]
    listed = json.loads(keel(keel_env, "pipeline", "runs", "--json").stdout)
    assert [r["run_id"] for r in listed] == [second["run_id"], first["run_id"]]
    text = keel(keel_env, "pipeline", "run", str(pipe_file), "-p", "x=4").stdout
    assert "square" in text and "cached (from run" in text


def test_a_failing_step_exits_1_with_one_line_naming_the_step(pipe_file, keel_env):
    proc = keel(keel_env, "pipeline", "run", str(pipe_file), "--param", "x=11", check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "step 'check' failed: ValueError: value 121 is over 100" in lines[0]
    listed = json.loads(keel(keel_env, "pipeline", "runs", "--json").stdout)
    assert listed[0]["status"] == "FAILED" and "value 121 is over 100" in listed[0]["error"]


def test_a_bad_param_is_refused_clearly(pipe_file, keel_env):
    proc = keel(keel_env, "pipeline", "run", str(pipe_file), "--param", "x=three", check=False)
    assert proc.returncode == 1
    assert "--param x='three': expected a value of type int like its default 3" in proc.stderr
    proc = keel(keel_env, "pipeline", "run", str(pipe_file), "--param", "y=1", check=False)
    assert "has no parameter(s) ['y']" in proc.stderr
