"""Prediction logging through a real server: nothing answered is lost on SIGTERM, nothing
acknowledged more than a second before a SIGKILL is lost, and labels join later."""

from __future__ import annotations

import concurrent.futures as cf
import signal
import threading
import time

import numpy as np
import requests

from servers import start_server


def body(x, request_id):
    return {"id": request_id, "inputs": [{"name": "input", "shape": [1, 20], "datatype": "FP64",
                                          "data": np.asarray(x).tolist()}]}


def window(settings):
    import keel
    from keel.service.prediction_windows import read_window

    return read_window(keel.Client(settings).ctx, "tiny")


def hammer(url, X, prefix, stop, answered, threads=8):
    def worker(t):
        session, i = requests.Session(), 0
        while not stop.is_set():
            rid = f"{prefix}-{t}-{i}"
            try:
                r = session.post(url, json=body(X[i % len(X)], rid), timeout=30)
            except requests.RequestException:
                return  # the server is gone
            if r.status_code == 200:
                answered.append((rid, time.monotonic(), r.json()["outputs"][0]["data"][0]))
            i += 1

    pool = cf.ThreadPoolExecutor(threads)
    futures = [pool.submit(worker, t) for t in range(threads)]
    return pool, futures


def test_sigterm_with_requests_in_flight_loses_no_answered_prediction(trained_models):
    X = trained_models["X"]
    srv = start_server(trained_models["home"], "models:/tiny/1")
    stop, answered = threading.Event(), []
    pool, futures = hammer(f"{srv.url}/v2/models/tiny/infer", X, "term", stop, answered)
    time.sleep(1.5)
    srv.proc.send_signal(signal.SIGTERM)  # while the workers keep sending
    srv.proc.wait(timeout=60)
    stop.set()
    pool.shutdown(wait=True)
    # uvicorn re-raises SIGTERM once its graceful shutdown is done: "terminated by SIGTERM", cleanly
    assert srv.proc.returncode in (0, -signal.SIGTERM), srv.log.read_text()[-2000:]
    assert len(answered) > 50
    table = window(trained_models["settings"])
    logged = dict(zip(table["request_id"].to_pylist(), table["output:label"].to_pylist()))
    missing = [rid for rid, _, _ in answered if rid not in logged]
    assert not missing, f"{len(missing)} answered requests are not in the log, e.g. {missing[:3]}"
    assert all(logged[rid] == label for rid, _, label in answered)  # the logged output is the answer given
    srv.stop()


def test_sigkill_keeps_everything_acknowledged_a_second_earlier_and_labels_join(trained_models):
    X, settings = trained_models["X"], trained_models["settings"]
    srv = start_server(trained_models["home"], "models:/tiny/1")
    stop, answered = threading.Event(), []
    pool, _ = hammer(f"{srv.url}/v2/models/tiny/infer", X, "kill", stop, answered, threads=4)
    time.sleep(2.5)
    srv.proc.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    srv.proc.wait(timeout=30)
    stop.set()
    pool.shutdown(wait=True)
    durable = [rid for rid, acked, _ in answered if acked < killed_at - 1.0]
    assert len(durable) > 50

    # The next server on this home takes the dead one's spool slot and ingests what it left.
    again = start_server(trained_models["home"], "models:/tiny/1")
    try:
        deadline = time.monotonic() + 60
        while True:
            logged = set(window(settings)["request_id"].to_pylist())
            lost = [rid for rid in durable if rid not in logged]
            if not lost or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert not lost, f"{len(lost)} of {len(durable)} acknowledged predictions were lost, e.g. {lost[:3]}"

        labels = [{"id": rid, "label": int(i % 2)} for i, rid in enumerate(durable[:20])]
        stored = requests.post(f"{again.url}/v2/models/tiny/labels", json={"labels": labels})
        assert stored.status_code == 200 and stored.json()["labels"] == 20
        table = window(settings)
        joined = {r: lab for r, lab in zip(table["request_id"].to_pylist(), table["label"].to_pylist())
                  if lab is not None}
        assert joined == {item["id"]: item["label"] for item in labels}
        bad = requests.post(f"{again.url}/v2/models/tiny/labels", json={"labels": [{"label": 1}]})
        assert bad.status_code == 400 and "labels must be" in bad.json()["error"]
    finally:
        again.stop()


LEAN_SERVER = """
import sys
import numpy as np
from keel.settings import Settings
from keel.serving.server import ServeOptions, build_app

app = build_app(ServeOptions(targets=["models:/tiny/1"], log_predictions=True), Settings.load())
x = np.zeros((1, 20))
assert app.predlog.record("tiny", 1, ["lean-1"], [1.0], 1.5, {"input": x}, app.models["tiny"].predict({"input": x}))
app.close()  # writes, seals and ingests the segment
heavy = sorted(m for m in ("pyarrow", "pandas", "sklearn") if m in sys.modules)
print("heavy:", ",".join(heavy))
"""


def test_a_logging_server_never_loads_pyarrow_and_its_log_still_reads_back(trained_models):
    """pyarrow would add about 38 MiB to every server process; the log is written without it."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update({"KEEL_HOME": str(trained_models["home"]), "KEEL_USER": "server"})
    out = subprocess.run([sys.executable, "-c", LEAN_SERVER], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "heavy:"
    table = window(trained_models["settings"])
    assert "lean-1" in table["request_id"].to_pylist()
