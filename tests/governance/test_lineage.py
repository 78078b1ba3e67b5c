"""Lineage: from a dataset to every version trained on it, from a version back to its data, code and environment."""

from __future__ import annotations

import dataclasses
import json
import platform
import uuid

import numpy as np
import pandas as pd
import pytest

import keel
from keel.entities import Source
from keel.errors import InvalidInput, NotFound, PermissionDenied
from keel.formats import onnx_copy
from keel.service import registry, users
from keel.service.lineage import build_graph
from keel.store.schema import promotion_requests
from keel.testing.cli import run_cli

pytestmark = pytest.mark.store

COMMIT = "c0ffee0123456789abcdef0123456789abcdef01"


@pytest.fixture
def loop(settings, monkeypatch):
    """Two runs on dataset "train" (3 versions), and a third run on other data under the same name (1 version)."""
    from sklearn.linear_model import LogisticRegression

    monkeypatch.setattr("keel.tracking.fluent.current_source",
                        lambda: Source(commit=COMMIT, dirty=True, entry_point="train.py"))
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    other = pd.DataFrame(rng.normal(size=(40, 3)), columns=["a", "b", "c"])
    y = (frame["a"] > 0).astype(int)
    model = LogisticRegression().fit(frame, y)
    logged = {}
    with keel.start_run("churn", name="first", settings=settings) as first:
        train = keel.log_dataset(frame, name="train")
        logged["churn/1"] = keel.log_model(model, "model", input_example=frame[:3], register="churn")
    with keel.start_run("churn", name="second", settings=settings) as second:
        keel.log_dataset(frame, name="train")
        keel.log_dataset(frame[:10], name="holdout", context="evaluation")
        logged["churn/2"] = keel.log_model(model, "model", input_example=frame[:3], register="churn")
        logged["churn-lite/1"] = keel.log_model(model, "lite", register="churn-lite")
    with keel.start_run("churn", name="third", settings=settings) as third:
        retrain = keel.log_dataset(other, name="train")
        logged["churn/3"] = keel.log_model(model, "model", input_example=other[:3], register="churn")
    # Background ONNX copies add "model-onnx" bundles to the runs: let them land so every graph is final.
    assert onnx_copy.wait(120)
    return {"train": train, "retrain": retrain, "runs": (first.id, second.id, third.id), "logged": logged}


def _versions(graph):
    return {n.id for n in graph.of_kind("version")}


def _add_promotion(raw_engine, name, version, *, status="approved", decided_by="bob"):
    request_id = uuid.uuid4().hex
    with raw_engine.begin() as conn:
        conn.execute(promotion_requests.insert().values(
            id=request_id, name=name, version=version, alias="production", status=status, requester="alice",
            requested_at=1, comment=None, checks=[], checks_passed=True, decided_by=decided_by, decided_at=2,
            reason="looks good", decision_checks=None, previous_version=None))
    return request_id


def test_from_a_dataset_every_version_trained_on_it_and_no_other(client, loop):
    ctx = client.ctx
    train = loop["train"]
    graph = build_graph(ctx, f"datasets:/train/{train.digest}")
    assert graph.root == f"datasets:/train/{train.digest}"
    assert _versions(graph) == {"models:/churn/1", "models:/churn/2", "models:/churn-lite/1"}
    first, second, third = loop["runs"]
    assert {n.id for n in graph.of_kind("run")} == {f"runs:/{first}", f"runs:/{second}"}
    assert f"runs:/{third}" not in graph.nodes
    # Downstream only from a dataset: the other dataset the second run used is not its lineage.
    assert [n.attrs["name"] for n in graph.of_kind("dataset")] == ["train"]
    used = [e for e in graph.edges if e.kind == "used_by"]
    assert {(e.target, e.attrs["context"]) for e in used} == {(f"runs:/{first}", "training"),
                                                              (f"runs:/{second}", "training")}
    # The same dataset by a digest prefix (with or without "sha256:") and by its id.
    hex_digest = train.digest.removeprefix("sha256:")
    for ref in (hex_digest[:8], f"sha256:{hex_digest[:12]}", train.id):
        assert _versions(build_graph(ctx, f"datasets:/train/{ref}")) == _versions(graph)


def test_a_dataset_name_covers_every_digest_logged_under_it(client, loop):
    graph = build_graph(client.ctx, "datasets:/train")
    assert graph.nodes[graph.root].kind == "dataset_name"
    assert graph.nodes[graph.root].attrs["digests"] == 2
    assert {n.attrs["digest"] for n in graph.of_kind("dataset")} == {loop["train"].digest, loop["retrain"].digest}
    assert _versions(graph) == {"models:/churn/1", "models:/churn/2", "models:/churn/3", "models:/churn-lite/1"}
    retrained = build_graph(client.ctx, f"datasets:/train/{loop['retrain'].digest}")
    assert _versions(retrained) == {"models:/churn/3"}


def test_from_a_version_its_dataset_run_code_and_environment(client, loop, raw_engine):
    from keel.envs.lock import EnvironmentLock

    ctx = client.ctx
    registry.set_alias(ctx, "churn", "champion", 2)
    request_id = _add_promotion(raw_engine, "churn", 2)
    graph = build_graph(ctx, "models:/churn@champion")
    assert graph.root == "models:/churn/2"
    assert graph.nodes[graph.root].attrs["aliases"] == ["champion"]
    second = loop["runs"][1]
    [model] = graph.of_kind("model")
    assert model.id == f"runs:/{second}/model"
    lock = EnvironmentLock.from_text(client.read_artifact(second, "model/requirements.lock").decode())
    assert model.attrs["format"] == "sklearn"
    assert model.attrs["manifest_sha256"] == graph.nodes[graph.root].attrs["manifest_sha256"]
    assert model.attrs["environment"]["python"] == platform.python_version()
    assert model.attrs["environment"]["packages"] == len(lock.packages) > 0
    assert model.attrs["environment"]["source_commit"] == COMMIT
    [run] = graph.of_kind("run")
    assert run.id == f"runs:/{second}"
    assert (run.attrs["source_commit"], run.attrs["source_dirty"], run.attrs["entry_point"]) == (COMMIT, True, "train.py")
    assert run.attrs["user"] == "alice"
    datasets = {(n.attrs["name"], n.attrs["digest"]) for n in graph.of_kind("dataset")}
    assert ("train", loop["train"].digest) in datasets and len(datasets) == 2  # train + holdout
    contexts = {e.attrs["context"] for e in graph.edges if e.kind == "used_by"}
    assert contexts == {"training", "evaluation"}
    # Upstream only from a version: the run's other model and its version are not its lineage.
    assert _versions(graph) == {"models:/churn/2"}
    [promotion] = graph.of_kind("promotion")
    assert (promotion.id, promotion.attrs["status"], promotion.attrs["decided_by"]) == (
        f"promotion:{request_id}", "approved", "bob")
    assert [(e.source, e.target) for e in graph.edges if e.kind == "requested"] == [(graph.root, promotion.id)]


def test_direction_and_depth(client, loop, raw_engine):
    ctx = client.ctx
    _add_promotion(raw_engine, "churn", 1, status="pending", decided_by=None)
    up = build_graph(ctx, "models:/churn/1", direction="up")
    assert {n.kind for n in up.nodes.values()} == {"version", "model", "run", "dataset"}
    down = build_graph(ctx, "models:/churn/1", direction="down")
    assert {n.kind for n in down.nodes.values()} == {"version", "promotion"}
    near = build_graph(ctx, "models:/churn/1", depth=1)
    assert {n.kind for n in near.nodes.values()} == {"version", "model", "promotion"}
    assert set(build_graph(ctx, "models:/churn/1", depth=0).nodes) == {"models:/churn/1"}


def test_runs_and_logged_models_as_start_points(client, loop):
    ctx = client.ctx
    second = loop["runs"][1]
    graph = build_graph(ctx, f"runs:/{second}")
    assert {"models:/churn/2", "models:/churn-lite/1"} <= _versions(graph)
    assert f"runs:/{second}/lite" in graph.nodes
    only_lite = build_graph(ctx, f"runs:/{second}/lite")
    assert _versions(only_lite) == {"models:/churn-lite/1"}
    assert {n.id for n in only_lite.of_kind("run")} == {f"runs:/{second}"}


def test_parent_and_child_runs(settings, client, loop):
    with keel.start_run("churn", name="sweep", settings=settings) as parent:
        with keel.start_run(name="trial", nested=True) as child:
            keel.log_dataset(pd.DataFrame({"a": [1, 2, 3]}), name="tiny")
    ctx = client.ctx
    down = build_graph(ctx, f"runs:/{parent.id}", direction="down")
    assert [(e.source, e.target) for e in down.edges if e.kind == "parent_of"] == [
        (f"runs:/{parent.id}", f"runs:/{child.id}")]
    tiny = build_graph(ctx, "datasets:/tiny", direction="down")
    assert {n.id for n in tiny.of_kind("run")} == {f"runs:/{child.id}"}  # the child used it, not its parent
    from_child = build_graph(ctx, f"runs:/{child.id}", direction="up")
    assert from_child.nodes[f"runs:/{parent.id}"].attrs["parent_run_id"] is None
    assert from_child.nodes[f"runs:/{child.id}"].attrs["parent_run_id"] == parent.id


def test_an_unreadable_manifest_is_reported_on_its_node(client, loop):
    version = registry.get_version(client.ctx, "churn", 1)
    client.ctx.blobs.fs.rm(client.ctx.blobs.path_of(version.manifest_sha256))
    graph = build_graph(client.ctx, "models:/churn/1")
    model = graph.nodes[version.source]
    assert "is missing" in model.attrs["problem"] and model.label.startswith("manifest unreadable")
    assert len(graph.of_kind("dataset")) == 1  # the rest of the lineage is still there


def test_json_is_stable(client, loop):
    ctx = client.ctx
    first = build_graph(ctx, "datasets:/train").to_dict()
    assert first == build_graph(ctx, "datasets:/train").to_dict()
    assert list(first) == ["root", "nodes", "edges"]
    kinds = [n["kind"] for n in first["nodes"]]
    assert kinds == sorted(kinds, key=["dataset_name", "dataset", "run", "model", "version"].index)
    assert json.loads(json.dumps(first)) == first


def test_clear_errors(client, loop):
    ctx = client.ctx
    for bad in ("churn", "models:/churn", "s3://bucket/x", "datasets:/", "runs:/", ""):
        with pytest.raises(InvalidInput, match="expected one of models:/NAME/VERSION.*datasets:/NAME/DIGEST"):
            build_graph(ctx, bad)
    with pytest.raises(NotFound, match="model 'churn' has no version 9"):
        build_graph(ctx, "models:/churn/9")
    with pytest.raises(NotFound, match="model 'churn' has no alias 'staging'"):
        build_graph(ctx, "models:/churn@staging")
    with pytest.raises(NotFound, match="run 'nope' does not exist"):
        build_graph(ctx, "runs:/nope")
    with pytest.raises(NotFound, match="is not a logged model"):
        build_graph(ctx, f"runs:/{loop['runs'][0]}/elsewhere")
    with pytest.raises(NotFound, match="no dataset named 'test' has been logged"):
        build_graph(ctx, "datasets:/test")
    with pytest.raises(NotFound, match="dataset 'train' has no digest starting with 'deadbeef'"):
        build_graph(ctx, "datasets:/train/deadbeef")
    with pytest.raises(InvalidInput, match="'abc' is not a digest of dataset 'train'.*at least 8 hex"):
        build_graph(ctx, "datasets:/train/abc")
    with pytest.raises(InvalidInput, match="direction must be one of both, up, down"):
        build_graph(ctx, "datasets:/train", direction="sideways")
    with pytest.raises(InvalidInput, match="depth must be a whole number >= 0"):
        build_graph(ctx, "datasets:/train", depth=-1)


def test_viewer_role_is_needed_once_users_exist(settings, client, loop):
    users.add_user(client.ctx, "alice", "admin")
    users.add_user(client.ctx, "vera", "viewer")
    vera, mallory = (keel.Client(dataclasses.replace(settings, user=name)) for name in ("vera", "mallory"))
    try:
        assert _versions(build_graph(vera.ctx, "models:/churn/1")) == {"models:/churn/1"}
        with pytest.raises(PermissionDenied, match="'mallory' is not a keel user"):
            build_graph(mallory.ctx, "models:/churn/1")
    finally:
        vera.close()
        mallory.close()


def test_cli_tree_and_json(loop, keel_env, raw_engine):
    second = loop["runs"][1]
    _add_promotion(raw_engine, "churn", 2)
    text = run_cli(keel_env, "lineage", "models:/churn/2").stdout
    assert text.index("models:/churn/2") < text.index("upstream") < text.index("downstream")
    upstream, downstream = text.split("downstream")
    for expected in (f"runs:/{second}/model", "sklearn", f"Python {platform.python_version()}", "pinned packages",
                     f"runs:/{second} ", COMMIT[:12] + " (dirty)", "entry train.py",
                     f"datasets:/train/{loop['train'].digest}", "[used_by: training]", "[registered_as]"):
        assert expected in upstream, expected
    assert "to production: approved, requested by alice, approved by bob" in downstream
    data = json.loads(run_cli(keel_env, "lineage", "datasets:/train", "--json").stdout)
    assert data["root"] == "datasets:/train"
    assert {n["id"] for n in data["nodes"] if n["kind"] == "version"} == {
        "models:/churn/1", "models:/churn/2", "models:/churn/3", "models:/churn-lite/1"}
    assert {"source", "target", "kind", "attrs"} == set(data["edges"][0])
    down = json.loads(run_cli(keel_env, "lineage", "models:/churn/2", "--json", "--direction", "down",
                              "--depth", "1").stdout)
    assert {n["kind"] for n in down["nodes"]} == {"version", "promotion"}


def test_cli_prints_user_text_verbatim(settings, keel_env):
    with keel.start_run("markup", settings=settings):
        keel.log_dataset(pd.DataFrame({"a": [1.0, 2.0]}), name="[bold red]raw[/bold red]")
    text = run_cli(keel_env, "lineage", "datasets:/[bold red]raw[/bold red]").stdout
    assert "datasets:/[bold red]raw[/bold red]" in text


def test_cli_errors_are_one_line(loop, keel_env):
    proc = run_cli(keel_env, "lineage", "churn", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: not a lineage URI: 'churn'; expected one of models:/NAME/VERSION, models:/NAME@ALIAS, "
        "runs:/RUN_ID, runs:/RUN_ID/PATH, datasets:/NAME, datasets:/NAME/DIGEST"]
    proc = run_cli(keel_env, "lineage", "models:/nope/1", check=False)
    assert proc.returncode == 1 and "registered model 'nope' does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
