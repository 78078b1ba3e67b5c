"""Monitors over served traffic: create one, run due windows, read results.

A monitor watches one served model. At creation its reference (a CSV/Parquet
file, or a dataset logged at training) is summarised once, together with the
model's own answers on it (the baseline for prediction drift) and, given a
target column, its performance there; the summary is stored as a blob. A
pass (:func:`run_monitors`, from ``keel monitor run`` or its loop) reads each
complete window of logged predictions, checks it (``keel.monitoring.checks``),
stores the JSON result as a blob and one ``monitor_results`` row, and moves
the monitor's ``next_ms`` forward in the same transaction: a window is never
evaluated twice, even by two passes at once. Alerts go to the webhook after
the commit; the delivery status is an audit event of its own.

Memory is bounded by one window: the reference is a summary, and a window
is read from its own segments only.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from keel.errors import Conflict, InvalidInput, NotFound
from keel.governance.roles import EDITOR, VIEWER
from keel.service.context import Context
from keel.service.tracking import now_ms
from keel.store.schema import monitor_results, monitors
from keel.store.sql import Tx

__all__ = ["MonitorInfo", "MonitorResult", "create_monitor", "get_monitor", "get_result", "list_monitors",
           "list_results", "run_monitors", "set_status"]

log = logging.getLogger("keel.monitoring")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[^/@]+))$")
MAX_CATCHUP = 24  # windows one pass evaluates per monitor at most; older ones are skipped and said so


@dataclass(frozen=True)
class MonitorInfo:
    id: str
    name: str
    model_uri: str
    model: str
    version: int | None
    window_ms: int
    next_ms: int
    reference: dict[str, Any]
    reference_sha256: str
    options: dict[str, Any]
    webhook: str | None
    status: str
    created_by: str
    created_at: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class MonitorResult:
    id: str
    monitor: str
    start_ms: int
    end_ms: int
    versions: list[int]
    rows: int
    status: str  # ok | alert | empty
    alerts: list[str]
    summary: dict[str, Any]
    result_sha256: str | None
    webhook_status: str | None
    created_at: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def create_monitor(ctx: Context, model_uri: str, *, window: str, reference: str, name: str | None = None,
                   served_name: str | None = None, target: str | None = None, sensitive: str | None = None,
                   webhook: str | None = None, since_ms: int | None = None, preset: str = "default",
                   fdr: float = 0.05, min_effect: float | None = None, drift_share: float = 0.5,
                   max_drop: float = 0.05, max_error_increase: float = 0.10,
                   performance_reference: str | None = None, fairness_limits: dict[str, float] | None = None,
                   baseline: bool = True) -> MonitorInfo:
    """Create a monitor of the traffic that ``model_uri`` serves.

    Args:
        model_uri: ``models:/NAME@ALIAS`` (every version that serves under NAME),
            ``models:/NAME/N`` (that version only), or a bundle path with ``served_name``.
        window: Window length, like ``15m``, ``1h`` or ``1d``.
        reference: A CSV/Parquet file, or ``datasets:/NAME`` (the newest logged
            dataset of that name) / ``datasets:/NAME/DIGEST`` for a dataset logged at training.
        served_name: The name the server serves the model under (default: the registered name).
        target: The reference's ground-truth column: reference performance is
            computed from it, and it is left out of the drift checks.
        sensitive: A column whose groups fairness is measured across.
        webhook: An http(s) URL that alerts are POSTed to.
        since_ms: Start of the first window (default: now).
        max_drop: Alert when a score (accuracy, F1, ROC AUC, R2...) is lower than the reference's
            by more than this (absolute).
        max_error_increase: Alert when an error (log loss, RMSE, MAE...) is higher than the
            reference's by more than this share of it (relative).
        performance_reference: A labelled file (with ``target``) that the reference performance
            is measured on instead of ``reference``: a holdout the model did not see in training,
            whose performance is what served traffic can be held to.
        fairness_limits: Limits passed to the fairness check.
        baseline: Predict the reference with the model (for prediction drift and reference performance).
    """
    from keel.monitoring.alerts import check_webhook_url
    from keel.monitoring.drift import PRESETS
    from keel.monitoring.window import parse_duration

    window_ms = parse_duration(window)
    model, version = _served(ctx, model_uri, served_name)
    name = name or model
    if not _NAME.match(name):
        raise InvalidInput(f"monitor name must be 1-128 letters, digits, '.', '_' or '-', got {name!r}")
    if webhook is not None:
        check_webhook_url(webhook)
    if preset not in PRESETS:
        raise InvalidInput(f"preset must be one of {list(PRESETS)}, got {preset!r}")
    if not 0 <= max_drop < 1:
        raise InvalidInput(f"max_drop must be in [0, 1), got {max_drop}")
    if not max_error_increase >= 0:
        raise InvalidInput(f"max_error_increase must be >= 0, got {max_error_increase}")
    if performance_reference is not None and target is None:
        raise InvalidInput("a performance reference needs --target: the column of its labels")
    with ctx.store.read() as conn:
        if conn.execute(sa.select(monitors.c.id).where(monitors.c.name == name)).first() is not None:
            raise Conflict(f"a monitor named {name!r} exists; choose another --name")
    from keel.service.monitor_reference import build_reference, holdout_performance

    summary, ref_info, ref_performance = build_reference(ctx, model_uri, reference, target, baseline)
    if performance_reference is not None:
        ref_performance = holdout_performance(ctx, model_uri, performance_reference, target)
        ref_info["performance_source"] = str(Path(performance_reference).resolve())
    if sensitive is not None and sensitive not in summary.columns:
        raise InvalidInput(f"sensitive column {sensitive!r} is not in the reference; "
                           f"reference columns: {sorted(summary.columns)}")
    from keel.monitoring.summary_io import dump_summary

    sha, _ = ctx.blobs.put_bytes(dump_summary(summary))
    ref_info["performance"] = ref_performance
    options = {"preset": preset, "fdr": fdr, "min_effect": min_effect, "drift_share": drift_share,
               "target": target, "sensitive": sensitive, "max_drop": max_drop,
               "max_error_increase": max_error_increase,
               "fairness_limits": dict(fairness_limits or {})}
    start = now_ms() if since_ms is None else int(since_ms)
    info = MonitorInfo(uuid.uuid4().hex, name, str(model_uri), model, version, window_ms, start, ref_info, sha,
                       options, webhook, "active", ctx.actor, now_ms())

    def write(tx: Tx) -> MonitorInfo:
        if tx.conn.execute(sa.select(monitors.c.id).where(monitors.c.name == name)).first() is not None:
            raise Conflict(f"a monitor named {name!r} exists; choose another --name")
        tx.conn.execute(monitors.insert().values(**info.__dict__))
        tx.audit("monitor.create", "monitor", name, {"model_uri": info.model_uri, "model": model, "version": version,
                                                     "window_ms": window_ms, "reference": ref_info,
                                                     "reference_sha256": sha, "webhook": webhook})
        return info

    return ctx.write(write, role=EDITOR, what="create a monitor")


def list_monitors(ctx: Context) -> list[MonitorInfo]:
    ctx.authorize(VIEWER, what="list monitors")
    with ctx.store.read() as conn:
        return [_info(r) for r in conn.execute(sa.select(monitors).order_by(monitors.c.name)).all()]


def get_monitor(ctx: Context, name: str) -> MonitorInfo:
    ctx.authorize(VIEWER, what="read a monitor")
    with ctx.store.read() as conn:
        return _monitor(conn, name)


def list_results(ctx: Context, name: str, *, limit: int = 20) -> list[MonitorResult]:
    """The newest ``limit`` window results of a monitor, newest first."""
    ctx.authorize(VIEWER, what="read monitor results")
    with ctx.store.read() as conn:
        monitor = _monitor(conn, name)
        rows = conn.execute(sa.select(monitor_results).where(monitor_results.c.monitor_id == monitor.id)
                            .order_by(monitor_results.c.start_ms.desc()).limit(limit)).all()
    return [result_from_row(r, name) for r in rows]


def get_result(ctx: Context, result_id: str) -> dict[str, Any]:
    """The full JSON result of one window (hash-checked on read)."""
    ctx.authorize(VIEWER, what="read a monitor result")
    with ctx.store.read() as conn:
        row = conn.execute(sa.select(monitor_results, monitors.c.name).join(monitors)
                           .where(monitor_results.c.id == result_id)).first()
    if row is None:
        raise NotFound(f"no monitor result {result_id!r}")
    if row.result_sha256 is None:
        return {"monitor": row.name, "status": row.status, "window": {"rows": 0}}
    return json.loads(ctx.blobs.get_bytes(row.result_sha256, name=f"monitor result {result_id}"))


def set_status(ctx: Context, name: str, status: str) -> MonitorInfo:
    """Pause or resume a monitor (``paused`` / ``active``)."""
    if status not in ("active", "paused"):
        raise InvalidInput(f"status must be active or paused, got {status!r}")

    def write(tx: Tx) -> MonitorInfo:
        monitor = _monitor(tx.conn, name)
        tx.conn.execute(monitors.update().where(monitors.c.id == monitor.id).values(status=status))
        tx.audit(f"monitor.{'resume' if status == 'active' else 'pause'}", "monitor", name, {})
        return _monitor(tx.conn, name)

    return ctx.write(write, role=EDITOR, what=f"set a monitor {status}")


def run_monitors(ctx: Context, names: list[str] | None = None, *, now: int | None = None,
                 max_windows: int = MAX_CATCHUP, send_alerts: bool = True) -> list[MonitorResult]:
    """One pass: every complete window of every active monitor (or of ``names``) that is due."""
    from keel.monitoring.window import due_windows

    now = now_ms() if now is None else now
    with ctx.store.read() as conn:
        if names:
            chosen = [_monitor(conn, n) for n in names]
        else:
            chosen = [_info(r) for r in conn.execute(
                sa.select(monitors).where(monitors.c.status == "active").order_by(monitors.c.name)).all()]
    outcomes: list[MonitorResult] = []
    for monitor in chosen:
        windows, skipped = due_windows(monitor.next_ms, monitor.window_ms, now, max_windows)
        if skipped and not _skip(ctx, monitor, windows[0].start_ms, skipped):
            continue  # another pass moved the monitor on first
        if not windows:
            continue
        summary = _load_reference(ctx, monitor)
        for window in windows:
            result = _evaluate(ctx, monitor, summary, window.start_ms, window.end_ms)
            if result is None:
                break  # another pass got there first
            if send_alerts and result.status == "alert":
                result = _alert(ctx, monitor, result)
            outcomes.append(result)
    return outcomes


def version_windows(conn: sa.Connection, name: str, version: int) -> list[Any]:
    """Window results (with ``monitor`` and ``model_uri``) in which version ``version`` of ``name`` answered,
    newest first: for lineage and the model card."""
    escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = conn.execute(
        sa.select(monitor_results, monitors.c.name.label("monitor"), monitors.c.model_uri)
        .join(monitors, monitors.c.id == monitor_results.c.monitor_id)
        .where(sa.or_(monitors.c.model_uri.like(f"models:/{escaped}/%", escape="\\"),
                      monitors.c.model_uri.like(f"models:/{escaped}@%", escape="\\")),
               monitor_results.c.status != "empty")
        .order_by(monitor_results.c.start_ms.desc(), monitor_results.c.id)).all()
    return [r for r in rows if version in (r.versions or [])]


# ---------------------------------------------------------------- internals
def _served(ctx: Context, model_uri: str, served_name: str | None) -> tuple[str, int | None]:
    """The served name whose traffic is read, and the version to keep to (None: any)."""
    match = _MODELS_URI.match(str(model_uri))
    if match:
        from keel.service.registry import resolve_uri

        found = resolve_uri(ctx, model_uri)  # fails clearly for an unknown model, version or alias
        return served_name or found.name, found.version if match["version"] else None
    if served_name is None:
        raise InvalidInput(f"{model_uri!r} is not a registry URI (models:/NAME/N or models:/NAME@ALIAS); "
                           f"give --served-name, the name the server serves it under")
    if not Path(model_uri).exists():
        raise InvalidInput(f"model bundle {model_uri} does not exist")
    return served_name, None


_references: dict[str, Any] = {}  # sha256 -> loaded summary: a long-running `monitor run --every` reads each once
_REFERENCES_KEPT = 8


def _load_reference(ctx: Context, monitor: MonitorInfo) -> Any:
    from keel.monitoring.summary_io import load_summary

    sha = monitor.reference_sha256
    if sha not in _references:
        if len(_references) >= _REFERENCES_KEPT:
            _references.pop(next(iter(_references)))
        _references[sha] = load_summary(ctx.blobs.get_bytes(sha, name=f"reference of monitor {monitor.name}"))
    return _references[sha]


def _skip(ctx: Context, monitor: MonitorInfo, to_ms: int, skipped: int) -> bool:
    """Move a monitor that fell too far behind to ``to_ms``, recording the windows it leaves out."""
    log.warning("keel: monitor %s is %d windows behind: it skips to the newest ones", monitor.name, skipped)

    def write(tx: Tx) -> bool:
        moved = tx.conn.execute(monitors.update().where(monitors.c.id == monitor.id,
                                                        monitors.c.next_ms == monitor.next_ms)
                                .values(next_ms=to_ms)).rowcount
        if moved == 1:
            tx.audit("monitor.skip", "monitor", monitor.name,
                     {"from_ms": monitor.next_ms, "to_ms": to_ms, "windows": skipped})
        return moved == 1

    return ctx.write(write, role=EDITOR, what="skip old monitor windows")


def _evaluate(ctx: Context, monitor: MonitorInfo, summary: Any, start: int, end: int) -> MonitorResult | None:
    from keel.monitoring.checks import check_window
    from keel.monitoring.window import split_window
    from keel.service.prediction_windows import read_window

    table = read_window(ctx, monitor.model, monitor.version, start, end, with_labels=True)
    data = split_window(table)
    window = {"monitor": monitor.name, "model": monitor.model, "start_ms": start, "end_ms": end}
    if data.rows == 0:
        status, alerts, summary_json, sha = "empty", [], {}, None
    else:
        check = check_window(summary, data, monitor.options, monitor.reference.get("performance"))
        payload = {**check.result, "monitor": {**window, "model_uri": monitor.model_uri}}
        sha, _ = ctx.blobs.put_bytes(json.dumps(payload, separators=(",", ":"), allow_nan=False).encode())
        status = "alert" if check.alerts else "ok"
        alerts, summary_json = check.alerts, check.summary
    result = MonitorResult(uuid.uuid4().hex, monitor.name, start, end, data.versions, data.rows, status, alerts,
                           summary_json, sha, None, now_ms())

    def write(tx: Tx) -> MonitorResult | None:
        moved = tx.conn.execute(monitors.update().where(monitors.c.id == monitor.id, monitors.c.next_ms == start)
                                .values(next_ms=end)).rowcount
        if moved != 1:
            return None
        row = {k: v for k, v in result.__dict__.items() if k != "monitor"}
        tx.conn.execute(monitor_results.insert().values(monitor_id=monitor.id, **row))
        tx.audit("monitor.result", "monitor", monitor.name,
                 {"result_id": result.id, "start_ms": start, "end_ms": end, "rows": data.rows, "status": status,
                  "versions": data.versions, "result_sha256": sha, "alerts": alerts})
        return result

    return ctx.write(write, role=EDITOR, what="record a monitor result")


def _alert(ctx: Context, monitor: MonitorInfo, result: MonitorResult) -> MonitorResult:
    for line in result.alerts:
        log.warning("keel: monitor %s window %d-%d: %s", monitor.name, result.start_ms, result.end_ms, line)
    delivery = None
    if monitor.webhook:
        from keel.monitoring.alerts import post_webhook

        payload = {"kind": "keel.monitor.alert", "monitor": monitor.name, "model": monitor.model,
                   "result_id": result.id, "start_ms": result.start_ms, "end_ms": result.end_ms,
                   "alerts": result.alerts, "result": get_result(ctx, result.id)}
        delivery = post_webhook(monitor.webhook, payload)

    def write(tx: Tx) -> None:
        if delivery is not None:
            tx.conn.execute(monitor_results.update().where(monitor_results.c.id == result.id)
                            .values(webhook_status=delivery))
        tx.audit("monitor.alert", "monitor", monitor.name,
                 {"result_id": result.id, "alerts": result.alerts, "webhook": monitor.webhook, "delivery": delivery})

    ctx.write(write, role=EDITOR, what="record a monitor alert")
    return MonitorResult(**{**result.__dict__, "webhook_status": delivery})


def _monitor(conn: sa.Connection, name: str) -> MonitorInfo:
    row = conn.execute(sa.select(monitors).where(monitors.c.name == name)).first()
    if row is None:
        raise NotFound(f"no monitor named {name!r} (see `keel monitor list`)")
    return _info(row)


def _info(row: Any) -> MonitorInfo:
    return MonitorInfo(row.id, row.name, row.model_uri, row.model, row.version, row.window_ms, row.next_ms,
                       row.reference, row.reference_sha256, row.options, row.webhook, row.status, row.created_by,
                       row.created_at)


def result_from_row(row: Any, name: str) -> MonitorResult:
    return MonitorResult(row.id, name, row.start_ms, row.end_ms, list(row.versions), row.rows, row.status,
                         list(row.alerts), dict(row.summary), row.result_sha256, row.webhook_status, row.created_at)
