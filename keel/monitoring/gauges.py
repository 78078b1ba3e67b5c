"""Prometheus gauges of the monitors' newest windows, in the node_exporter textfile format.

`keel monitor run --prom-file PATH` rewrites the file after every pass;
node_exporter's textfile collector (or any scraper of that format) then
exports it, so the monitor needs no port of its own when it runs from cron.
The file is written atomically (prometheus_client writes a temporary file
and renames it), so a scrape never reads half of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from keel.errors import ConfigError

__all__ = ["write_gauges"]


def write_gauges(path: str | Path, latest: Mapping[str, Sequence[Any]]) -> None:
    """Write gauges for each monitor's newest result (``latest``: monitor name -> [MonitorResult] or [])."""
    try:
        from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
    except ImportError:
        raise ConfigError("--prom-file needs prometheus-client: pip install 'keel[serve]'") from None
    registry = CollectorRegistry()
    labels = ["monitor"]
    gauges = {
        "alert": Gauge("keel_monitor_alert", "1 if the newest window alerted", labels, registry=registry),
        "drift_share": Gauge("keel_monitor_drift_share", "Share of input columns that drifted in the newest window",
                             labels, registry=registry),
        "dataset_drift": Gauge("keel_monitor_dataset_drift", "1 if the newest window has dataset drift", labels,
                               registry=registry),
        "prediction_drift": Gauge("keel_monitor_prediction_drift", "1 if the model's answers drifted", labels,
                                  registry=registry),
        "rows": Gauge("keel_monitor_window_rows", "Predictions in the newest window", labels, registry=registry),
        "end": Gauge("keel_monitor_window_end_seconds", "End of the newest evaluated window (unix time)", labels,
                     registry=registry),
    }
    for name, results in latest.items():
        if not results:
            continue
        r = results[0]
        gauges["alert"].labels(name).set(1 if r.status == "alert" else 0)
        gauges["rows"].labels(name).set(r.rows)
        gauges["end"].labels(name).set(r.end_ms / 1000)
        if r.summary.get("drift_share") is not None:
            gauges["drift_share"].labels(name).set(r.summary["drift_share"])
        gauges["dataset_drift"].labels(name).set(1 if r.summary.get("dataset_drift") else 0)
        gauges["prediction_drift"].labels(name).set(1 if r.summary.get("prediction_drift") else 0)
    write_to_textfile(str(path), registry)
