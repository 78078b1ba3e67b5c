"""Executors: the subprocess executor runs independent steps at once, enforces limits,
gets the in-process results; a failing step fails the run and stores nothing half-done."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from keel.pipelines.runner import PipelineFailed, run_file
from keel.pipelines import values
from pipeline_sources import RENDEZVOUS

pytestmark = pytest.mark.store

ARRAYS = """
import numpy as np
import keel


@keel.step
def make(seed: int):
    return np.random.default_rng(seed).normal(size=(50, 3))


@keel.step
def colmeans(x):
    return x.mean(axis=0)


@keel.step
def summary(means, n: int):
    return {"n": n, "means": [round(float(m), 12) for m in means]}


@keel.pipeline
def arrays(seed=7, n=50):
    return summary(colmeans(make(seed)), n)
"""


FAILING = """
import numpy as np
import keel


@keel.step
def ok():
    return [1, 2, 3]


@keel.step(outputs=2)
def half(values):
    # the first output is fine; the second cannot be stored (a lambda does not pickle)
    return np.arange(7.0), (lambda: None)


@keel.step
def broken(values):
    raise ValueError("bad row 3")


@keel.step
def after(values):
    return values


@keel.pipeline
def failing(which="broken"):
    data = ok()
    if which == "broken":
        return after(broken(data))
    first, second = half(data)
    return after(first)
"""

LIMITS = """
import keel


@keel.step(resources={"memory": "1536MiB"})
def hog():
    blob = bytearray(8 << 30)  # 8 GiB: past the step's 1.5 GiB limit
    return len(blob)


@keel.step(resources={"cpus": 1000})
def greedy():
    return 1


@keel.pipeline
def limits(which="hog"):
    return hog() if which == "hog" else greedy()
"""


def write(tmp_path: Path, name: str, source: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    path = folder / "pipe.py"
    path.write_text(textwrap.dedent(source))
    return path


def test_subprocess_executor_gets_the_same_outputs_as_in_process(tmp_path, settings):
    path = write(tmp_path, "arrays", ARRAYS)
    local = run_file(path, settings=settings, cache=False)
    child = run_file(path, settings=settings, cache=False, executor="subprocess")
    assert sorted(child.ran) == ["colmeans", "make", "summary"]
    for step in ("make", "colmeans", "summary"):
        assert child.steps[step].outputs == local.steps[step].outputs  # same content hashes
    assert child.value() == local.value()
    assert child.value()["n"] == 50


def test_subprocess_executor_runs_independent_steps_at_the_same_time(tmp_path, settings):
    path = write(tmp_path, "parallel", RENDEZVOUS)
    result = run_file(path, settings=settings, executor="subprocess", executor_options={"max_cpus": 2})
    assert result.value() == "left+right"


def test_a_failing_step_fails_the_pipeline_run_with_its_error(tmp_path, settings, client):
    from keel.service.pipelines import get_pipeline_run, steps_of
    from keel.store.schema import pipeline_cache

    path = write(tmp_path, "failing", FAILING)
    with pytest.raises(PipelineFailed, match=r"step 'broken' failed: ValueError: bad row 3") as info:
        run_file(path, settings=settings)
    failed = info.value.run
    assert failed.status == "FAILED"
    record = get_pipeline_run(client.ctx, failed.run_id)
    assert record.status == "FAILED" and "ValueError: bad row 3" in record.error
    assert client.get_run(failed.run_id).status == "FAILED"
    assert client.get_run(failed.steps["broken"].run_id).status == "FAILED"
    assert client.get_run(failed.steps["broken"].run_id).tags["keel.step.error"] == "ValueError: bad row 3"
    assert failed.steps["after"].status == "not run"
    steps = {s.step: s for s in steps_of(client.ctx, failed.run_id)}
    assert steps["broken"].status == "failed" and steps["broken"].outputs == []
    with client.ctx.store.read() as conn:
        cached = set(conn.execute(sa.select(pipeline_cache.c.step)).scalars())
    assert cached == {"ok"}  # the failed step left no cache entry


@pytest.mark.parametrize("executor", ["inprocess", "subprocess"])
def test_a_step_that_fails_while_storing_leaves_no_output_behind(tmp_path, settings, client, executor):
    import numpy as np

    path = write(tmp_path, f"half-{executor}", FAILING)
    with pytest.raises(PipelineFailed, match=r"step 'half' failed: .*cannot store a step output of type function"):
        run_file(path, {"which": "half"}, settings=settings, executor=executor)
    _, first = values.encode(np.arange(7.0))
    import hashlib

    assert not client.ctx.blobs.exists(hashlib.sha256(first).hexdigest())


def test_a_memory_limit_stops_the_step_not_the_machine(tmp_path, settings):
    path = write(tmp_path, "limits", LIMITS)
    with pytest.raises(PipelineFailed, match=r"step 'hog' failed: MemoryError"):
        run_file(path, settings=settings, executor="subprocess")


@pytest.mark.parametrize("executor", ["inprocess", "subprocess"])
def test_a_step_asking_for_more_cpus_than_there_are_fails_at_once(tmp_path, settings, executor):
    path = write(tmp_path, f"greedy-{executor}", LIMITS)
    with pytest.raises(PipelineFailed, match=r"step 'greedy' asks for 1000 CPUs; this machine has \d+"):
        run_file(path, {"which": "greedy"}, settings=settings, executor=executor)


def test_a_pipeline_run_is_a_tracked_run_with_a_child_run_per_step(tmp_path, settings, client):
    path = write(tmp_path, "tracked", ARRAYS)
    result = run_file(path, {"seed": 3}, settings=settings)
    run = client.get_run(result.run_id)
    assert run.status == "FINISHED" and run.params == {"n": "50", "seed": "3"}
    assert run.tags["keel.pipeline"] == "arrays"
    children = client.search_runs(["arrays"], filter=f"tags.`keel.pipeline.run_id` = '{result.run_id}'")
    assert sorted(c.name for c in children) == ["colmeans", "make", "summary"]
    assert all(c.parent_run_id == result.run_id and c.status == "FINISHED" for c in children)
    assert {c.name: c.params for c in children}["make"] == {"seed": "3"}
    record = json.loads(client.read_artifact(result.run_id, "pipeline/replay.json"))
    assert record["pipeline"] == "arrays" and record["params"] == {"seed": 3, "n": 50}
    assert record["file"] == "pipe.py" and set(record["sources"]) == {"pipe.py"}
    assert "numpy==" in record["lock"]


def test_an_unknown_executor_is_refused_before_any_run_is_recorded(tmp_path, settings, client):
    from keel.errors import InvalidInput

    path = write(tmp_path, "arrays", ARRAYS)
    with pytest.raises(InvalidInput, match="unknown executor 'slurm'; choose one of inprocess, subprocess"):
        run_file(path, settings=settings, executor="slurm")
    assert client.search_runs("arrays") == []


def test_a_step_name_that_cannot_name_a_folder_is_refused_where_it_is_declared():
    import keel
    from keel.errors import InvalidInput

    with pytest.raises(InvalidInput, match=r"@keel.step name must be letters, digits.*got 'a/b'"):
        keel.step(name="a/b")(lambda: 1)
