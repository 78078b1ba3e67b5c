"""Close the loop: serve production, monitor its traffic, retrain on the alert, gate, approve.

Version 1 is deployed with the local target (a real ``keel serve`` in the
background). A monitor with short windows watches its traffic: one window of
the test rows as they are, then one of the same rows from a recalibrated
microscope, each with its labels. The monitor's first pass finds the second
window drifted; a ``monitor_alert`` trigger turns that alert into ``keel
retrain`` on the recalibrated data; the gate compares champion and challenger
on the same rows; the blessed challenger waits for an approver.

Waiting is bounded: the windows start when the monitor is created, the
traffic of each window is sent at once and checked to have fitted in it, the
pass is told the time it evaluates, and the server's prediction log is given
a fixed time to reach the store.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from typing import Any

from keel.errors import Conflict, KeelError
from keel.quickstart.data import LENGTH_SCALE, TARGET, Data, recalibrated, scaled_columns
from keel.quickstart.govern import REVIEWER, approve_with_four_eyes
from keel.quickstart.narrate import Narrator
from keel.quickstart.train import MODEL_NAME
from keel.settings import Settings

WINDOW = "3s"  # long enough for 143 rows in a few requests on a slow machine, short enough to wait for
REQUEST_ROWS = 25
DRIFT_SHARE = 0.25  # the recalibration moves 9 of the 30 columns: alert when a quarter of them drift
INGEST_TIMEOUT_S = 30.0  # the server seals its prediction log every 5 s, then stores it
TRIGGER = "retrain-on-drift"
# What the loop needs beyond keel's core: `keel serve` (the serve extra) and the gate's table reader.
NEEDS = {"uvicorn": "serve", "uvloop": "serve", "httptools": "serve", "orjson": "serve",
         "prometheus_client": "serve", "pandas": "pandas"}


def missing_extras() -> list[str]:
    """The extras to install before the loop can run here (empty: everything is there)."""
    return sorted({extra for module, extra in NEEDS.items() if not _importable(module)})


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def close_loop(say: Narrator, settings: Settings, data: Data) -> int:
    """Deploy, monitor, retrain on the alert, gate, approve, stop; returns the version now in production."""
    from keel.service import deployments
    from keel.tracking.fluent import client_for

    ctx = client_for(settings).ctx
    served = _deploy(ctx)
    say.step("deploy", f"models:/{MODEL_NAME}@production (version {served.model_version}) -> keel serve in the "
                       f"background at {served.state['url']} (pid {served.state['pid']}), ready; deployment "
                       f"{served.id[:12]} recorded")
    try:
        monitor, trigger = _watch(say, ctx, data)
        served_rows = _serve_windows(say, ctx, served, monitor, data)
        version = _retrain(say, ctx, settings, trigger)
    except BaseException:
        _stop_quietly(ctx, served.id)
        raise
    deployments.stop(ctx, served.id)
    say.step("stop", f"deployment {served.id[:12]} stopped: keel serve drained its requests and stored its "
                     f"prediction log ({served_rows} rows served)")
    return version


def _deploy(ctx: Any) -> Any:
    """Production, served by the local target on a free port (another, if a program takes it meanwhile)."""
    from keel.service import deployments

    for attempt in range(3):
        port = _free_port()
        try:
            return deployments.deploy(ctx, f"models:/{MODEL_NAME}@production", target="local", port=port)
        except Conflict:
            if attempt == 2:
                raise
        except KeelError as exc:
            raise KeelError(f"the quickstart could not start its local server on port {port}: {exc}") from None
    raise AssertionError("unreachable")


def _watch(say: Narrator, ctx: Any, data: Data) -> tuple[Any, Any]:
    """A monitor of the served traffic, and a trigger that retrains on its alerts."""
    from keel.service.monitors import create_monitor
    from keel.service.triggers import create_trigger

    # Drift against the training data; performance held to the model's on the held-out test rows (on its
    # own training rows it looks better than any new traffic can, so every window would alert).
    monitor = create_monitor(ctx, f"models:/{MODEL_NAME}@production", window=WINDOW, reference=str(data.train),
                             target=TARGET, performance_reference=str(data.test), drift_share=DRIFT_SHARE)
    trigger = create_trigger(ctx, TRIGGER, "monitor_alert", {"monitor": monitor.name}, {
        "retrain": MODEL_NAME, "data": {"train": str(data.new_train), "test": str(data.new_test)},
        "eval": str(data.new_test), "target": TARGET})
    say.step("monitor", f"{monitor.name!r}: {WINDOW} windows of served traffic against data/train.csv "
                        f"({monitor.reference['rows']} rows, summarised once, with the model's answers on it), "
                        f"performance held to data/test.csv's; "
                        f"trigger {trigger.name!r}: on its alerts, keel retrain {MODEL_NAME} on data/new/")
    return monitor, trigger


def _serve_windows(say: Narrator, ctx: Any, served: Any, monitor: Any, data: Data) -> int:
    """Window 1: the test rows; window 2: the same rows recalibrated. Labels follow each. One monitor pass."""
    from keel.service.monitors import run_monitors

    url, start, width = served.state["url"], monitor.next_ms, monitor.window_ms
    requests = _send(url, data.columns(data.X_test), data.y_test, "clean")
    _check_within(start + width, "window 1")
    _sleep_until(start + width)
    _send(url, data.columns(recalibrated(data.X_test, data.names)), data.y_test, "recalibrated")
    _check_within(start + 2 * width, "window 2")
    scaled = scaled_columns(data.names)
    say.step("serve", f"window 1: the {len(data.y_test)} test rows in {requests} v2 infer requests, then their "
                      f"labels; window 2: the same rows from a recalibrated microscope (lengths x{LENGTH_SCALE:g}, "
                      f"areas x{LENGTH_SCALE ** 2:g}: {len(scaled)} columns), then labels")
    _sleep_until(start + 2 * width)
    rows = _wait_stored(ctx, start, start + 2 * width, 2 * len(data.y_test), served.state["log"])

    monitoring_log = logging.getLogger("keel.monitoring")
    level = monitoring_log.level
    monitoring_log.setLevel(logging.ERROR)  # its alert warnings: printed below, once
    try:
        results = run_monitors(ctx, [monitor.name], now=start + 2 * width)  # exactly the two windows
    finally:
        monitoring_log.setLevel(level)
    if [r.rows for r in results] != [len(data.y_test)] * 2:
        raise KeelError(f"expected two windows of {len(data.y_test)} rows, got {[r.rows for r in results]}")
    first, second = results
    accuracy = [r.summary.get("performance", {}).get("accuracy", float("nan")) for r in results]
    say.step("check", f"window 1 ({first.rows} rows): {first.status}; {len(first.summary['drifted_columns'])} of "
                      f"{len(data.names)} columns drifted; accuracy {accuracy[0]:.3f} on its labels")
    say.more(f"window 2 ({second.rows} rows): {second.status.upper()}; accuracy {accuracy[0]:.3f} -> "
             f"{accuracy[1]:.3f} on its labels")
    for alert in second.alerts:
        say.more(f"  {alert}")
    if first.status != "ok" or second.status != "alert":
        raise KeelError(f"the monitor should pass window 1 and alert on window 2; got {first.status}, "
                        f"{second.status}: {first.alerts + second.alerts}")
    return rows


def _retrain(say: Narrator, ctx: Any, settings: Settings, trigger: Any) -> int:
    """One scheduler pass fires the trigger; print the gate's decision; the reviewer approves."""
    from keel.pipelines.triggers import scheduler_pass
    from keel.service import triggers
    from keel.service.gate import decisions_for
    from keel.service.registry import get_version
    from keel.service.version_artifacts import list_attached, read_attached

    fired = scheduler_pass(ctx, settings)
    [firing] = triggers.firings(ctx, trigger.id)
    outcome = firing.outcome
    if fired != 1 or firing.status != "succeeded":
        raise KeelError(f"trigger {trigger.name!r} fired {fired} time(s): {firing.status} {outcome}")
    version = int(outcome["challenger"])
    say.step("retrain", f"one scheduler pass: trigger {trigger.name!r} fired once, on window 2's alert; "
                        f"pipeline run {outcome['pipeline_run_id']} replays the recorded code, parameters and "
                        f"environment on data/new/ -> challenger models:/{MODEL_NAME}/{version}")

    [decision] = decisions_for(ctx, MODEL_NAME, version)
    [attached] = list_attached(ctx, MODEL_NAME, version, kind="gate")
    document = json.loads(read_attached(ctx, attached))
    scores, evaluated = document["scores"], document["evaluation_data"]
    shown = ", ".join(f"{metric} {scores['champion'][metric]:.3f} -> {value:.3f}"
                      for metric, value in scores["challenger"].items())
    verdict = "blessed" if decision.blessed else "stopped: " + "; ".join(decision.reasons)
    say.step("gate", f"champion version {decision.champion_version} -> challenger version {version} on "
                     f"data/new/test.csv ({evaluated['rows']} labelled rows): {shown}")
    for check in decision.checks:
        say.more(f"[{'pass' if check['passed'] else 'FAIL'}] {check['detail']}")
    say.more(f"-> {verdict}; recorded on version {version} (gate/decision.json) and in the audit log")
    if not decision.blessed:
        raise KeelError(f"the gate stopped the retrained model: {'; '.join(decision.reasons)}")

    request_id = decision.promotion_request_id
    approve_with_four_eyes(settings, request_id, "gate passed on the recalibrated data")
    production = get_version(ctx, MODEL_NAME, alias="production").version
    say.step("promote", f"the blessed challenger's request {request_id[:12]} waited for an approver; "
                        f"{settings.user}'s own approval was refused; {REVIEWER} approved -> "
                        f"models:/{MODEL_NAME}@production = version {production}")
    return production


def _send(url: str, columns: dict[str, Any], labels: Any, prefix: str) -> int:
    """The rows as v2 infer requests of ``REQUEST_ROWS``, then their labels by request id; returns the requests."""
    rows = len(labels)
    ids = []
    for n, i in enumerate(range(0, rows, REQUEST_ROWS)):
        request_id = f"{prefix}-{n}"
        _post(f"{url}/v2/models/{MODEL_NAME}/infer", {"id": request_id, "inputs": [
            {"name": name, "shape": [len(values[i:i + REQUEST_ROWS])], "datatype": "FP64",
             "data": values[i:i + REQUEST_ROWS].tolist()} for name, values in columns.items()]})
        ids.append(request_id)
    _post(f"{url}/v2/models/{MODEL_NAME}/labels", {"labels": [
        {"id": request_id, "label": labels[n * REQUEST_ROWS:(n + 1) * REQUEST_ROWS].tolist()}
        for n, request_id in enumerate(ids)]})
    return len(ids)


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise KeelError(f"POST {url} answered {exc.code}: {exc.read()[:500].decode(errors='replace')}") from None
    except OSError as exc:
        raise KeelError(f"POST {url} failed: {exc}") from None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _check_within(end_ms: int, what: str) -> None:
    """The traffic just sent was received before ``end_ms`` (the server stamps it on arrival, same clock)."""
    late = _now_ms() - end_ms
    if late >= 0:
        raise KeelError(f"this machine is too slow for the quickstart's {WINDOW} windows: the traffic of {what} "
                        f"ended {late} ms after the window closed")


def _sleep_until(ms: int) -> None:
    time.sleep(max(0.0, (ms - _now_ms()) / 1000 + 0.05))


def _wait_stored(ctx: Any, start: int, end: int, expected: int, log: str) -> int:
    """Wait (bounded) until the server's prediction log holds every row of both windows in the store."""
    from keel.service.prediction_windows import read_window

    deadline = time.monotonic() + INGEST_TIMEOUT_S
    while True:
        rows = read_window(ctx, MODEL_NAME, None, start, end, with_labels=False).num_rows
        if rows >= expected:
            return rows
        if time.monotonic() > deadline:
            raise KeelError(f"the server stored {rows} of {expected} served rows within {INGEST_TIMEOUT_S:.0f} s; "
                            f"see its log {log}")
        time.sleep(0.25)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop_quietly(ctx: Any, deployment_id: str) -> None:
    """On the way out of a failure: stop the server, keeping the original error."""
    from keel.service import deployments

    try:
        deployments.stop(ctx, deployment_id)
    except Exception:  # noqa: BLE001 - the error being raised is the one to show
        pass
