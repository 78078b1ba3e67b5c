"""Prometheus metrics of the inference server (``GET /metrics``)."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

prometheus_client.disable_created_metrics()  # the *_created series only add noise to every scrape

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class _Live:
    """Values read at scrape time: queue depth, in-flight, prediction log counters."""

    def __init__(self, batchers: Callable[[], dict[str, Any]], predlog: Callable[[], dict[str, int]] | None) -> None:
        self._batchers = batchers
        self._predlog = predlog

    def collect(self) -> Iterable[Any]:
        depth = GaugeMetricFamily("keel_queue_depth", "Requests waiting for a batch, per model.", labels=["model"])
        running = GaugeMetricFamily("keel_batch_in_flight", "Requests in the batch being run, per model.",
                                    labels=["model"])
        offloaded = CounterMetricFamily("keel_batches_offloaded", "Batches run in the model's worker thread "
                                        "rather than on the event loop (slow or blocking model calls).",
                                        labels=["model"])
        for name, batcher in self._batchers().items():
            depth.add_metric([name], batcher.depth)
            running.add_metric([name], batcher.in_flight)
            offloaded.add_metric([name], batcher.offloaded)
        yield depth
        yield running
        yield offloaded
        if self._predlog is not None:
            stats = self._predlog()
            yield CounterMetricFamily("keel_predictions_logged", "Prediction records written to the spool.",
                                      value=stats.get("logged", 0))
            yield CounterMetricFamily("keel_predictions_dropped", "Prediction records dropped (spool queue full).",
                                      value=stats.get("dropped", 0))
            yield GaugeMetricFamily("keel_predictions_pending", "Prediction records waiting for the spool writer.",
                                    value=stats.get("pending", 0))


class ServerMetrics:
    def __init__(self, batchers: Callable[[], dict[str, Any]],
                 predlog: Callable[[], dict[str, int]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter("keel_requests", "HTTP requests by model, route and status.",
                                 ["model", "route", "status"], registry=self.registry)
        self._latency = Histogram("keel_request_duration_seconds", "Time from request to response, per model.",
                                  ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._batch = Histogram("keel_batch_size", "Rows per executed batch, per model.", ["model"],
                                buckets=BATCH_BUCKETS, registry=self.registry)
        self.registry.register(_Live(batchers, predlog))
        # .labels() costs a dict lookup and a lock; the hot path keeps the children.
        self._children: dict[tuple[str, ...], Any] = {}

    def request(self, model: str, route: str, status: int, seconds: float | None) -> None:
        key = (model, route, str(status))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._requests.labels(*key)
        child.inc()
        if seconds is not None and status < 400:
            key = ("latency", model)
            hist = self._children.get(key)
            if hist is None:
                hist = self._children[key] = self._latency.labels(model)
            hist.observe(seconds)

    def batch(self, model: str, rows: int) -> None:
        key = ("batch", model)
        hist = self._children.get(key)
        if hist is None:
            hist = self._children[key] = self._batch.labels(model)
        hist.observe(rows)

    def render(self) -> bytes:
        return generate_latest(self.registry)
