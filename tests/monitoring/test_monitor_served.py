"""A monitor over a real server's logged traffic: a clean window passes, a window with injected
drift, unfair decisions and wrong labels alerts, fires the webhook (a real HTTP listener) and is
recorded, in the audit trail and in the version's lineage."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import requests

sys.path.insert(0, str(Path(__file__).parents[1] / "serving"))
from servers import start_server  # noqa: E402

from keel.testing.cli import run_cli  # noqa: E402

WINDOW_S = 6


def features(rng, n, shift_b=0.0, unfair=0.0):
    group = rng.integers(0, 2, n)
    a = rng.normal(0, 1, n) + unfair * group  # unfair: group 1 gets higher scores, so more approvals
    return {"a": a, "b": rng.normal(5, 2, n) + shift_b, "c": rng.exponential(1, n), "group": group}


def truth(x, rng):
    return ((x["a"] + 0.3 * x["b"] - 1.5 + rng.normal(0, 1, len(x["a"]))) > 0).astype(int)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import keel
    from keel.settings import Settings

    root = tmp_path_factory.mktemp("monitor")
    home = root / "home"
    settings = Settings.load({"home": home, "user": "trainer"}, env={})
    rng = np.random.default_rng(0)
    x = features(rng, 3000)
    y = truth(x, rng)
    frame = pd.DataFrame(x)
    clf = LogisticRegression(max_iter=1000).fit(frame, y)
    with keel.start_run("credit", settings=settings):
        keel.log_model(clf, "model", input_example=frame[:5], register="credit")
    frame.assign(y=y).to_csv(root / "reference.csv", index=False)
    return {"root": root, "home": home, "settings": settings}


class Hook:
    """A webhook receiver: a real HTTP server that keeps what is POSTed to it."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"


def send(url, x, prefix, size=25):
    ids = []
    for i in range(0, len(x["a"]), size):
        rid = f"{prefix}-{i}"
        inputs = [{"name": n, "shape": [len(v[i:i + size])], "datatype": "INT64" if n == "group" else "FP64",
                   "data": v[i:i + size].tolist()} for n, v in x.items()]
        r = requests.post(f"{url}/v2/models/credit/infer", json={"id": rid, "inputs": inputs}, timeout=30)
        assert r.status_code == 200, r.text
        ids.append(rid)
    return ids


def label(url, ids, y, size=25):
    labels = [{"id": rid, "label": y[k * size:(k + 1) * size].tolist()} for k, rid in enumerate(ids)]
    r = requests.post(f"{url}/v2/models/credit/labels", json={"labels": labels}, timeout=30)
    assert r.status_code == 200, r.text


def test_monitor_detects_injected_drift_fires_webhook_and_records_it(served):
    hook = Hook()
    env = {"KEEL_HOME": str(served["home"]), "KEEL_USER": "ops", "PATH": "/usr/bin:/bin"}
    srv = start_server(served["home"], "models:/credit/1")
    try:
        created = run_cli(env, "monitor", "create", "models:/credit/1", "--window", f"{WINDOW_S}s",
                          "--reference", str(served["root"] / "reference.csv"), "--target", "y",
                          "--sensitive", "group", "--webhook", hook.url, "--json")
        start = json.loads(created.stdout)["next_ms"]
        rng = np.random.default_rng(1)
        # Window 1: traffic like the reference, with true labels.
        clean = features(rng, 500)
        label(srv.url, send(srv.url, clean, "clean"), truth(clean, rng))
        assert time.time() * 1000 < start + WINDOW_S * 1000, "the clean traffic spilled into the next window"
        time.sleep(max(0.0, (start + WINDOW_S * 1000) / 1000 - time.time()) + 0.3)
        # Window 2: b shifted, decisions skewed towards group 1, and labels that the model gets wrong.
        bad = features(rng, 500, shift_b=3.0, unfair=2.5)
        label(srv.url, send(srv.url, bad, "bad"), 1 - truth(bad, rng))
        time.sleep(max(0.0, (start + 2 * WINDOW_S * 1000) / 1000 - time.time()) + 0.3)
    finally:
        log = srv.stop()  # SIGTERM: every answered prediction reaches the store before it exits
    assert "Traceback" not in log, log[-3000:]

    proc = run_cli(env, "monitor", "run", "credit", "--json", "--fail-on-alert", "--prom-file",
                   str(served["root"] / "keel.prom"), check=False)
    assert proc.returncode == 3, proc.stderr
    results = json.loads(proc.stdout)
    assert [r["rows"] for r in results] == [500, 500]
    first, second = results
    assert first["status"] == "ok" and first["alerts"] == [], first
    assert second["status"] == "alert"
    alerts = " | ".join(second["alerts"])
    assert "data drift" in alerts and "prediction drift" in alerts, alerts
    assert "performance: accuracy" in alerts, alerts
    assert "fairness across group" in alerts, alerts
    assert second["webhook_status"] == "200"

    # The webhook got exactly the alerting window, with every number behind it.
    assert len(hook.received) == 1
    payload = hook.received[0]
    assert payload["kind"] == "keel.monitor.alert" and payload["result_id"] == second["id"]
    detail = payload["result"]
    # b shifted for everyone and a for group 1: both drift; c, untouched, does not.
    assert {"a", "b"} <= set(detail["drifted_columns"]) and "c" not in detail["drifted_columns"]
    assert detail["performance"]["metrics"]["accuracy"] < 0.5
    assert detail["fairness"]["demographic_parity_difference"] > 0.1
    assert {g["group"] for g in detail["fairness"]["groups"]} == {"0", "1"}

    # Recorded: a second pass evaluates nothing again; show, gauges, audit and lineage have it.
    again = run_cli(env, "monitor", "run", "--json")
    assert json.loads(again.stdout) == []
    shown = json.loads(run_cli(env, "monitor", "show", "credit", "--json", "--out",
                               str(served["root"] / "window.html")).stdout)
    page = (served["root"] / "window.html").read_text()
    assert "Alerts" in page and "fairness across group" in page and "Dataset drift detected" in page
    assert [r["status"] for r in shown["results"]] == ["alert", "ok"]
    prom = (served["root"] / "keel.prom").read_text()
    assert 'keel_monitor_alert{monitor="credit"} 1.0' in prom
    audit = run_cli(env, "audit", "log", "--json").stdout
    assert "monitor.alert" in audit and "monitor.result" in audit
    run_cli(env, "audit", "verify")
    card = json.loads(run_cli(env, "card", "models:/credit/1", "--format", "json").stdout)
    [watched] = card["monitoring"]["monitors"]
    assert watched["monitor"] == "credit" and watched["windows"] == 2 and watched["alerting_windows"] == 1
    assert card["fairness"]["status"] == "available" and card["fairness"]["sensitive"] == "group"
    assert card["fairness"]["verdict"] == "fail" and {g["group"] for g in card["fairness"]["groups"]} == {"0", "1"}
    lineage = json.loads(run_cli(env, "lineage", "models:/credit/1", "--json").stdout)
    monitored = [n for n in lineage["nodes"] if n["kind"] == "monitor_result"]
    assert {n["attrs"]["status"] for n in monitored} == {"ok", "alert"}
