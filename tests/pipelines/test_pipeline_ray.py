"""The Ray executor on a real local Ray instance (started once for this module): the same outputs
and cache behaviour as in-process, independent steps at the same time, an impossible request
refused at once instead of waiting forever, a model registered from a Ray task."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from keel.pipelines.runner import PipelineFailed, run_file
from keel.testing.cli import run_cli as keel
from pipeline_sources import RENDEZVOUS

pytestmark = pytest.mark.store

HELPERS = """
def scale(values):
    return values * 2.0
"""

ARRAYS = """
import numpy as np
import keel
from helpers import scale


@keel.step
def make(seed: int):
    return np.random.default_rng(seed).normal(size=(50, 3))


@keel.step(resources={"cpus": 1, "memory": "64MiB"})
def colmeans(x):
    return scale(x.mean(axis=0))


@keel.step
def summary(means, n: int):
    return {"n": n, "means": [round(float(m), 12) for m in means]}


@keel.pipeline
def arrays(seed=7, n=50):
    return summary(colmeans(make(seed)), n)
"""


IMPOSSIBLE = """
import time
import keel


@keel.step
def first():
    return 1


@keel.step(resources={"cpus": 10000})
def greedy(x):
    return x


@keel.step(resources={"gpus": 1})
def gpu(x):
    return x


@keel.step(resources={"timeout_s": 2})
def slow(x):
    time.sleep(120)
    return x


@keel.step
def broken(x):
    print("about to fail")
    raise ValueError("bad row 3")


@keel.step
def after(x):
    return x


@keel.pipeline
def impossible(which="greedy"):
    step = {"greedy": greedy, "gpu": gpu, "slow": slow, "broken": broken}[which]
    return after(step(first()))
"""


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance for the whole module (starting Ray takes seconds); no GPUs, also on a GPU machine,
    so that a step asking for one is always impossible here."""
    import ray

    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="warning")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def write(tmp_path: Path, name: str, source: str, **modules: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for module, text in modules.items():
        (folder / f"{module}.py").write_text(textwrap.dedent(text))
    path = folder / "pipe.py"
    path.write_text(textwrap.dedent(source))
    return path


def test_ray_gets_the_in_process_outputs_and_cache_behaviour(ray_cluster, tmp_path, settings):
    path = write(tmp_path, "arrays", ARRAYS, helpers=HELPERS)
    local = run_file(path, settings=settings, cache=False)
    on_ray = run_file(path, settings=settings, cache=False, executor="ray")
    assert sorted(on_ray.ran) == ["colmeans", "make", "summary"]
    for step in ("make", "colmeans", "summary"):
        assert on_ray.steps[step].outputs == local.steps[step].outputs  # same content hashes
    assert on_ray.value() == local.value() and on_ray.value()["n"] == 50

    again = run_file(path, settings=settings, executor="ray")
    assert again.ran == [] and sorted(again.cached) == ["colmeans", "make", "summary"]

    # An edited helper reruns the step that uses it (and what its new output feeds), on Ray as in-process,
    # and the edited code is what runs in the Ray worker.
    (path.parent / "helpers.py").write_text(textwrap.dedent(HELPERS).replace("2.0", "3.0"))
    edited = run_file(path, settings=settings, executor="ray")
    assert edited.cached == ["make"] and sorted(edited.ran) == ["colmeans", "summary"]
    edited_local = run_file(path, settings=settings, cache=False)
    assert edited.steps["colmeans"].outputs == edited_local.steps["colmeans"].outputs
    assert edited.value()["means"] == pytest.approx([m * 1.5 for m in local.value()["means"]])


def test_independent_steps_run_at_the_same_time_on_ray(ray_cluster, tmp_path, settings):
    path = write(tmp_path, "parallel", RENDEZVOUS)
    result = run_file(path, settings=settings, executor="ray")
    assert result.value() == "left+right"
    assert sorted(result.ran) == ["join", "left", "right"]


@pytest.mark.parametrize("which, asked", [("greedy", "cpus=10000"), ("gpu", "cpus=1, gpus=1")])
def test_a_request_no_node_can_satisfy_fails_at_once(ray_cluster, tmp_path, settings, client, which, asked):
    path = write(tmp_path, which, IMPOSSIBLE)
    with pytest.raises(PipelineFailed) as info:
        run_file(path, {"which": which}, settings=settings, executor="ray")
    message = str(info.value)
    assert f"step '{which}' failed: InvalidInput: step '{which}' asks for {asked}, but no node of the Ray cluster " \
           "can run it (1 node: " in message
    assert "cpus=2, gpus=0, memory=" in message  # what the cluster has
    failed = info.value.run
    assert failed.status == "FAILED"
    assert failed.steps["first"].status == "ran" and failed.steps["after"].status == "not run"
    assert client.get_run(failed.steps[which].run_id).status == "FAILED"


def test_a_failing_or_overdue_step_fails_the_run_with_its_error(ray_cluster, tmp_path, settings, client):
    path = write(tmp_path, "failing", IMPOSSIBLE)
    with pytest.raises(PipelineFailed, match=r"step 'broken' failed: ValueError: bad row 3") as info:
        run_file(path, {"which": "broken"}, settings=settings, executor="ray")
    child = info.value.run.steps["broken"].run_id
    assert client.get_run(child).tags["keel.step.error"] == "ValueError: bad row 3"
    assert "about to fail" in client.read_artifact(child, "logs/step.log").decode()  # what it printed, kept

    with pytest.raises(PipelineFailed, match=r"step 'slow' failed: TimeoutError: step 'slow' ran past its "
                                             r"timeout_s=2 and was stopped"):
        run_file(path, {"which": "slow"}, settings=settings, executor="ray")


def test_a_model_registered_in_a_ray_task_knows_its_pipeline_run(ray_cluster, churn_project, settings, client):
    from keel.service.pipelines import pipeline_run_of_version

    result = run_file(churn_project / "pipe.py", {"data": str(churn_project / "new.csv")}, settings=settings,
                      executor="ray")
    assert result.value() == 1
    assert pipeline_run_of_version(client.ctx, "churn", 1).run_id == result.run_id
    assert client.get_run(result.steps["train"].run_id).metrics["train_accuracy"] > 0.6  # logged from the Ray worker


def test_cli_runs_on_a_ray_cluster_by_address(ray_cluster, tmp_path, keel_env):
    path = write(tmp_path, "cli", ARRAYS, helpers=HELPERS)
    done = keel(keel_env, "pipeline", "run", str(path), "--executor", "ray", "--ray-address", ray_cluster, "--json")
    summary = json.loads(done.stdout)
    assert summary["status"] == "FINISHED"
    assert {n: s["status"] for n, s in summary["steps"].items()} == {"make": "ran", "colmeans": "ran",
                                                                      "summary": "ran"}
    refused = keel({**keel_env, "KEEL_RAY_ADDRESS": ray_cluster}, "pipeline", "run",
                   str(write(tmp_path, "cli-greedy", IMPOSSIBLE)), "--executor", "ray", check=False)
    assert refused.returncode != 0
    assert "step 'greedy' asks for cpus=10000, but no node of the Ray cluster at " + ray_cluster in refused.stderr
    assert "Traceback" not in refused.stderr


def test_no_node_holds_what_only_the_sum_of_nodes_has() -> None:
    from keel.errors import InvalidInput
    from keel.pipelines.executors.ray import alive_nodes, check_nodes, ray_request

    nodes = alive_nodes([
        {"Alive": True, "NodeManagerAddress": "10.0.0.1", "Resources": {"CPU": 2.0, "memory": 8.0 * 2**30}},
        {"Alive": True, "NodeManagerAddress": "10.0.0.2", "Resources": {"CPU": 2.0, "GPU": 1.0,
                                                                        "memory": 8.0 * 2**30}},
        {"Alive": False, "NodeManagerAddress": "10.0.0.3", "Resources": {"CPU": 64.0}},
    ])
    check_nodes("train", ray_request({"cpus": 2, "gpus": 1, "memory": 4 << 30}), nodes, "ray://head:10001")
    with pytest.raises(InvalidInput, match=r"step 'train' asks for cpus=4, but no node of ray://head:10001 can run "
                                           r"it \(2 nodes: 10.0.0.1: cpus=2, gpus=0, memory=8GiB; 10.0.0.2: cpus=2, "
                                           r"gpus=1, memory=8GiB\)"):
        check_nodes("train", ray_request({"cpus": 4}), nodes, "ray://head:10001")
    with pytest.raises(InvalidInput, match=r"asks for cpus=1, memory=16GiB"):
        check_nodes("train", ray_request({"memory": 16 << 30}), nodes, "ray://head:10001")
