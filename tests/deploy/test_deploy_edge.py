"""The edge bundle in a fresh venv with only numpy and onnxruntime (no keel) predicts what the model does."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests

from conftest import free_port, wait_ready

from keel.envs.lock import EnvironmentLock


def keel_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([sys.executable, "-m", "keel.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def edge_venv(tmp_path_factory) -> Path:
    """One fresh venv built from the lock an edge bundle ships (numpy, onnxruntime and what they need)."""
    from keel.envs.build import build_environment
    from keel.envs.lock import capture

    lock = capture(["numpy", "onnxruntime"])
    return build_environment(lock, tmp_path_factory.mktemp("edge-venv") / "venv")


def test_edge_bundle_predicts_like_the_model_without_keel(onnx_bundle, data, edge_venv, keel_env, tmp_path) -> None:
    done = keel_cli(keel_env, "deploy", str(onnx_bundle["bundle"]), "--target", "edge", "--out",
                    str(tmp_path / "edge"), "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert set(record["files"]) == {"model.onnx", "runner.py", "signature.json", "requirements.lock", "SHA256SUMS"}
    lock = EnvironmentLock.from_text((tmp_path / "edge" / "requirements.lock").read_text())
    assert {"numpy", "onnxruntime"} <= set(lock.packages) and "keel" not in lock.packages
    # The venv was built from the same lock: same pins.
    assert (edge_venv.parent.parent / "requirements.lock").read_text() == lock.to_text()

    device = tmp_path / "device"  # a copy, as it would travel to the device
    shutil.copytree(tmp_path / "edge", device)
    probe = subprocess.run([str(edge_venv), "-c", "import importlib.util as u; print(u.find_spec('keel'), "
                            "u.find_spec('sklearn'))"], capture_output=True, text=True, cwd=device, check=True)
    assert probe.stdout.split() == ["None", "None"]

    X = data["X"][data["held"]]
    header = ",".join(f"c{i}" for i in range(X.shape[1]))
    np.savetxt(tmp_path / "held.csv", X, delimiter=",", header=header, comments="")
    np.save(tmp_path / "held.npy", X)
    model = onnx_bundle["model"]
    for source in ("held.csv", "held.npy"):
        out = tmp_path / f"pred-{source}.csv"
        run = subprocess.run([str(edge_venv), "runner.py", "score", str(tmp_path / source), "--out", str(out)],
                             capture_output=True, text=True, cwd=device, timeout=120)
        assert run.returncode == 0, run.stderr
        rows = np.genfromtxt(out, delimiter=",", skip_header=1)
        assert rows[:, 0].astype(int).tolist() == model.predict(X).tolist()
        np.testing.assert_allclose(rows[:, 1:], model.predict_proba(X), atol=1e-5)

    port = free_port()
    server = subprocess.Popen([str(edge_venv), "runner.py", "serve", "--port", str(port)], cwd=device,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/health", server, server.stderr.read)
        answer = requests.post(url + "/predict", json={"instances": X[:10].tolist()}, timeout=10).json()
        assert answer["predictions"] == model.predict(X[:10]).tolist()
        bad = requests.post(url + "/predict", json={"instances": [[1.0, 2.0]]}, timeout=10)
        assert bad.status_code == 400 and "expected rows of 6 values" in bad.json()["error"]
        for length in ("-1", "lots"):  # a body length that would read to EOF, or is no number: refused
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                raw.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
                assert raw.recv(4096).startswith(b"HTTP/1.0 400"), length
        assert requests.get(url + "/health", timeout=10).status_code == 200  # and it keeps serving
    finally:
        server.terminate()
        server.wait(30)

    # A changed file is refused before anything is loaded.
    (device / "model.onnx").write_bytes((device / "model.onnx").read_bytes() + b"\0")
    tampered = subprocess.run([str(edge_venv), "runner.py", "score", str(tmp_path / "held.npy")],
                              capture_output=True, text=True, cwd=device, timeout=120)
    assert tampered.returncode == 1 and "model.onnx was changed" in tampered.stderr


@pytest.fixture(scope="module")
def mlp_bundle(tmp_path_factory, data) -> Path:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.neural_network import MLPClassifier

    import keel

    X, y = data["X"][data["train"]], data["y"][data["train"]]
    model = MLPClassifier((64, 64), max_iter=300, random_state=0).fit(X, y)
    onx = to_onnx(model, initial_types=[("input", FloatTensorType([None, X.shape[1]]))],
                  options={id(model): {"zipmap": False}})
    folder = tmp_path_factory.mktemp("mlp") / "mlp"
    keel.save_model(onx, folder, input_example=X[:5].astype(np.float32))
    return folder


@pytest.mark.filterwarnings("ignore")
def test_int8_quantization_records_the_change_and_refuses_beyond_tolerance(mlp_bundle, data, keel_env,
                                                                          tmp_path) -> None:
    np.save(tmp_path / "sample.npy", data["X"][:50])
    ok = keel_cli(keel_env, "deploy", str(mlp_bundle), "--target", "edge", "--quantize", "int8", "--sample",
                  str(tmp_path / "sample.npy"), "--out", str(tmp_path / "q"), "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads((tmp_path / "q" / "quantization.json").read_text())
    assert report["rows"] == 50 + 512 and "50 sample rows" in report["rows_from"]
    assert 0.99 <= report["label_agreement"] <= 1.0 and report["agreement_change"] <= report["tolerance"] == 0.01
    assert report["size_after"] < report["size_before"]
    assert json.loads((tmp_path / "q" / "signature.json").read_text())["quantization"] == report
    assert json.loads(ok.stdout)["state"]["quantization"] == report

    # int8 weights move a few labels of this network: with no tolerance, the deploy is refused.
    assert report["agreement_change"] > 0
    strict = keel_cli(keel_env, "deploy", str(mlp_bundle), "--target", "edge", "--quantize", "int8",
                      "--sample", str(tmp_path / "sample.npy"), "--quantize-tolerance", "0",
                      "--out", str(tmp_path / "strict"))
    assert strict.returncode == 1
    assert strict.stderr.count("\n") == 1, strict.stderr
    assert "int8 quantization changes" in strict.stderr and "above the tolerance of 0.00%" in strict.stderr
    assert not (tmp_path / "strict").exists()


def test_edge_of_a_registered_model_uses_its_parity_checked_onnx_copy(sk_bundle, keel_env, tmp_path) -> None:
    done = keel_cli(keel_env, "deploy", str(sk_bundle), "--target", "edge", "--out", str(tmp_path / "e"))
    assert done.returncode == 1 and "the edge target needs ONNX" in done.stderr
    assert not (tmp_path / "e").exists()
