"""local deploy through the keel command: starts, answers, refuses a taken port, stops; recorded and audited."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from keel.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def infer_body(x) -> dict:
    return {"inputs": [{"name": "input", "shape": list(np.shape(x)), "datatype": "FP64",
                        "data": np.asarray(x).ravel().tolist()}]}


@pytest.fixture(scope="module")
def registered(tmp_path_factory, data):
    """churn version 1 (logistic regression) in a store of its own."""
    from sklearn.linear_model import LogisticRegression

    import keel
    from keel.formats import onnx_copy

    home = tmp_path_factory.mktemp("local") / "home"
    settings = Settings.load({"home": home, "user": "alice"}, env={})
    X, y = data["X"][data["train"]], data["y"][data["train"]]
    model = LogisticRegression(max_iter=500).fit(X, y)
    with keel.start_run("deploy", settings=settings):
        keel.log_model(model, "model", input_example=X[:5], register="churn")
    assert onnx_copy.wait(180)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update({"KEEL_HOME": str(home), "KEEL_USER": "alice"})
    return {"home": home, "settings": settings, "model": model, "env": env}


def keel_cli(env: dict, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "keel.cli.main", *args], env=env, capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_local_deploy_answers_refuses_a_taken_port_and_stops(registered, data, tmp_path) -> None:
    env, port = registered["env"], free_port()
    first = keel_cli(env, "deploy", "models:/churn/1", "--target", "local", "--port", str(port),
                     "--out", str(tmp_path / "one"), "--json")
    assert first.returncode == 0, first.stderr
    record = json.loads(first.stdout)
    try:
        assert record["status"] == "running" and record["model_name"] == "churn" and record["model_version"] == 1
        assert Path(record["state"]["pid_file"]).read_text().strip() == str(record["state"]["pid"])
        X = data["X"][data["held"]][:20]
        answer = requests.post(f"{record['state']['url']}/v2/models/churn/infer", json=infer_body(X), timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == registered["model"].predict(X).tolist()

        # A second deploy on the same port fails with one clear line, and writes nothing.
        second = keel_cli(env, "deploy", "models:/churn/1", "--target",
                          "local", "--port", str(port), "--out", str(tmp_path / "two"))
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"error: port {port} is taken by deployment {record['id']}" in lines[0]
        assert f"keel deployments stop {record['id']}" in lines[0]
        assert not (tmp_path / "two").exists()

        listed = json.loads(keel_cli(env, "deployments", "list", "--json").stdout)
        assert [(d["id"], d["status"]) for d in listed] == [(record["id"], "running")]
    finally:
        stopped = keel_cli(env, "deployments", "stop", record["id"][:8])
    assert stopped.returncode == 0, stopped.stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{record['state']['url']}/v2/health/live", timeout=5)
    assert not Path(record["state"]["pid_file"]).exists()
    assert "keel serve" in Path(record["state"]["log"]).read_text()
    shown = json.loads(keel_cli(env, "deployments", "show", record["id"], "--json").stdout)
    assert (shown["status"], shown["stopped_by"]) == ("stopped", "alice")
    again = keel_cli(env, "deployments", "stop", record["id"])
    assert again.returncode == 1 and "already stopped" in again.stderr

    from keel.service.audit import list_events, verify
    from keel.tracking.fluent import client_for

    ctx = client_for(registered["settings"]).ctx
    events = [(e.action, e.actor) for e in list_events(ctx, object_id=record["id"])]
    assert events == [("deployment.create", "alice"), ("deployment.stop", "alice")]
    assert verify(ctx).ok


def test_a_port_held_by_another_program_is_refused(registered, tmp_path) -> None:
    from keel.errors import Conflict
    from keel.service.deployments import deploy
    from keel.tracking.fluent import client_for

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(Conflict, match=rf"port {port} on 127.0.0.1 is already in use"):
            deploy(client_for(registered["settings"]).ctx, "models:/churn/1", target="local", port=port,
                   out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_the_kubernetes_init_step_fetches_a_verified_bundle(registered, tmp_path) -> None:
    """The init container's command, run here against the same store, yields a bundle keel serve loads."""
    from keel.deploy import kubernetes
    from keel.formats.bundle import read_manifest, verify_files
    from keel.service.deployments import deploy
    from keel.tracking.fluent import client_for

    record = deploy(client_for(registered["settings"]).ctx, "models:/churn/1", target="kubernetes",
                    out=tmp_path / "k8s")
    assert record.status == "written" and set(record.files) == {"churn-v1.yaml"}
    import yaml

    pod = list(yaml.safe_load_all((tmp_path / "k8s" / "churn-v1.yaml").read_text()))[0]["spec"]["template"]["spec"]
    command = pod["initContainers"][0]["command"]
    assert command[:3] == ["python", "-m", "keel.deploy.fetch"] and command[3] == "models:/churn/1"
    dest = tmp_path / "models" / "bundle"
    done = subprocess.run([sys.executable, *command[1:4], str(dest)], env=registered["env"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    verify_files(read_manifest(dest))
    assert kubernetes.STORE_SECRET == "keel-store"
    # A restarted pod runs its init step again over the kept emptyDir: the same bundle is accepted as it is.
    again = subprocess.run([sys.executable, *command[1:4], str(dest)], env=registered["env"], capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    # Anything else in the folder is refused, never overwritten.
    other = tmp_path / "models" / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    refused = subprocess.run([sys.executable, *command[1:4], str(other)], env=registered["env"], capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 1 and "not an empty folder" in refused.stderr
    assert (other / "notes.txt").read_text() == "keep me"


def test_edge_of_a_registered_model_ships_its_parity_checked_onnx_copy(registered, tmp_path) -> None:
    import hashlib

    from keel.formats.api import resolve_bundle
    from keel.formats.onnx_copy import tag_key
    from keel.service.deployments import deploy
    from keel.tracking.fluent import client_for

    client = client_for(registered["settings"])
    record = deploy(client.ctx, "models:/churn/1", target="edge", out=tmp_path / "edge")
    from keel.service.registry import resolve_uri

    run_id = resolve_uri(client.ctx, "models:/churn/1").run_id
    copy = json.loads(client.get_run(run_id).tags[tag_key("model")])
    folder, _ = resolve_bundle(copy["uri"], registered["settings"])
    assert record.files["model.onnx"] == hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    signature = json.loads((tmp_path / "edge" / "signature.json").read_text())
    assert (signature["model"], signature["version"], signature["onnx_source"]) == ("churn", 1, copy["uri"])
