"""The docker build context's entry point, run directly in a fresh venv built from the context's lock,
serves the model and answers a v2 infer request (no Docker engine needed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from conftest import free_port, wait_ready

from keel.envs.lock import EnvironmentLock


def test_context_entrypoint_serves_the_model_from_its_own_lock(sk_bundle, data, settings, tmp_path) -> None:
    from keel.envs.build import build_environment
    from keel.service.context import Context
    from keel.service.deployments import deploy

    ctx = Context.from_settings(settings)
    try:
        record = deploy(ctx, str(sk_bundle), target="docker", out=tmp_path / "ctx")
    finally:
        ctx.close()
    context = Path(record.out_dir)
    assert record.status == "written" and record.state["image"] == "keel-churn:latest"
    dockerfile = (context / "Dockerfile").read_text().splitlines()
    entry = json.loads(next(line for line in dockerfile if line.startswith("ENTRYPOINT "))[len("ENTRYPOINT "):])
    cmd = json.loads(next(line for line in dockerfile if line.startswith("CMD "))[len("CMD "):])
    assert entry[0] == "python" and cmd == ["--host", "0.0.0.0", "--port", "8080"]

    python = build_environment(EnvironmentLock.from_text((context / "requirements.lock").read_text()),
                               tmp_path / "venv")
    port = free_port()
    # The image's paths are /app/...: here they are the context folder itself.
    argv = [str(python), *[a.replace("/app", str(context)) for a in entry[1:]], "--host", "127.0.0.1",
            "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "PYTHON", "VIRTUAL_ENV"))}
    env.update({"PYTHONPATH": str(context / "vendor"), "KEEL_HOME": str(tmp_path / "home"), "KEEL_USER": "keel"})
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        server = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/v2/health/ready", server, log.read_text)
        where = subprocess.run([str(python), "-c", "import keel, sklearn; print(keel.__file__)"], env=env, cwd=tmp_path,
                               capture_output=True, text=True, check=True).stdout.strip()
        assert where.startswith(str(context / "vendor"))  # keel from the context, not the dev checkout
        X = data["X"][data["held"]][:25]
        body = {"inputs": [{"name": "input", "shape": list(X.shape), "datatype": "FP64",
                            "data": X.ravel().tolist()}]}
        answer = requests.post(f"{url}/v2/models/churn/infer", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        import keel

        assert answer.json()["outputs"][0]["data"] == keel.load_model(sk_bundle).predict(X).tolist()
        assert requests.get(f"{url}/v2/health/live", timeout=5).status_code == 200
    finally:
        server.terminate()
        server.wait(60)


def test_build_without_buildah_fails_clearly_before_writing(sk_bundle, settings, tmp_path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from keel.errors import ConfigError
    from keel.service.context import Context
    from keel.service.deployments import deploy

    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # a machine without buildah, wherever this runs
    assert shutil.which("buildah") is None
    ctx = Context.from_settings(settings)
    try:
        with pytest.raises(ConfigError, match="--build needs buildah"):
            deploy(ctx, str(sk_bundle), target="docker", out=tmp_path / "ctx", options={"build": True})
    finally:
        ctx.close()
    assert not (tmp_path / "ctx").exists()
