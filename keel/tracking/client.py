"""The explicit tracking client: one object over the service layer.

``keel.Client()`` reads settings (env, keel.toml) once; pass ``settings`` or
keyword overrides to point it elsewhere. The fluent API (``keel.start_run``)
uses one such client per store.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from keel.entities import ArtifactInfo, AuditEvent, DatasetInfo, Experiment, Metric, Run, RunStatus, Source
from keel.errors import Conflict, InvalidInput
from keel.service import artifacts as artifact_service
from keel.service import audit as audit_service
from keel.service import datasets as dataset_service
from keel.service import search as search_service
from keel.service import tracking as tracking_service
from keel.service.context import Context
from keel.service.validation import check_key, metric_step, metric_value, param_value, tag_value
from keel.settings import Settings
from keel.tracking.buffer import WriteBuffer


class Client:
    """Tracking operations against the configured store."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings or Settings.load(overrides)
        self.ctx = Context.from_settings(self.settings)
        self._buffer = WriteBuffer(
            functools.partial(tracking_service.write_batch, self.ctx),
            max_metrics=self.settings.metric_buffer_size,
            interval=self.settings.metric_flush_interval,
        )
        self._valid_keys: set[str] = set()
        self._allow_nonfinite = self.settings.allow_nonfinite_metrics
        self._experiments: dict[str, Experiment] = {}  # name -> record; experiments are never renamed
        # Runs this client created or found, and the params it logged to them:
        # lets buffered calls fail at once on an unknown run or a changed param.
        self._known_runs: set[str] = set()
        self._params: dict[str, dict[str, str]] = {}

    # -- experiments and runs ----------------------------------------------------
    def get_or_create_experiment(self, name: str) -> Experiment:
        exp = self._experiments.get(name)
        if exp is None:
            exp = self._experiments[name] = tracking_service.get_or_create_experiment(self.ctx, name)
        return exp

    def get_experiment(self, name_or_id: str) -> Experiment:
        return tracking_service.get_experiment(self.ctx, name_or_id)

    def list_experiments(self) -> list[Experiment]:
        return tracking_service.list_experiments(self.ctx)

    def create_run(
        self, experiment: str = tracking_service.DEFAULT_EXPERIMENT, *, name: str | None = None,
        parent_run_id: str | None = None, tags: Mapping[str, Any] | None = None, source: Source | None = None,
        defer: bool = False,
    ) -> Run:
        """Create a run (status RUNNING).

        Written at once by default, so that other processes can log to it.
        ``defer=True`` (what ``keel.start_run`` uses) buffers it with what is
        logged next: it reaches the store at the first flush, at the latest
        ``KEEL_METRIC_FLUSH_INTERVAL`` seconds later, and a short run costs a
        single transaction.
        """
        if parent_run_id is not None:
            self._require_known(parent_run_id, field="parent_run_id")
        created = tracking_service.new_run(
            self.ctx, self.get_or_create_experiment(experiment), name=name, parent_run_id=parent_run_id,
            tags_=tags, source=source)
        if defer:
            self._buffer.add_create(created)
        else:
            self.flush()  # a parent created earlier must be written first
            tracking_service.write_batch(self.ctx, tracking_service.RunBatch(creates=[created]))
        self._known_runs.add(created.run.id)
        self._params[created.run.id] = {}
        return created.run

    def end_run(self, run_id: str, status: str = RunStatus.FINISHED) -> None:
        """Mark the run ended with ``status``, writing what is buffered for it in the same transaction."""
        self._require_known(run_id)
        self._buffer.add_end(run_id, tracking_service.check_status(status), tracking_service.now_ms())
        self._params.pop(run_id, None)
        self.flush()

    def get_run(self, run_id: str) -> Run:
        self.flush()
        return tracking_service.get_run(self.ctx, run_id)

    def search_runs(
        self, experiments: Sequence[str] | str | None = None, filter: str | None = None,
        order_by: Sequence[str] | None = None, max_results: int = 1000,
    ) -> list[Run]:
        """Runs matching a filter such as ``"metrics.auc > 0.9 and params.model = 'rf'"``."""
        self.flush()
        if isinstance(experiments, str):
            experiments = [experiments]
        return search_service.search_runs(self.ctx, experiments, filter, order_by, max_results)

    # -- params, tags, metrics ---------------------------------------------------
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Buffer params. Re-logging a key with the same value is a no-op; another value is a Conflict."""
        self._require_known(run_id)
        rows = [(run_id, check_key("param", k), param_value(k, v)) for k, v in params.items()]
        logged = self._params.setdefault(run_id, {})
        for _, key, value in rows:  # checked here so the caller gets the error, not a later flush
            if logged.get(key, value) != value:
                raise Conflict(f"param {key!r} of run {run_id} is already {logged[key]!r}; cannot change it to "
                               f"{value!r} (params are immutable: log a new key or start a new run)")
        for _, key, value in rows:
            logged[key] = value
        self._buffer.add_params(rows)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Buffer tags (mutable: a new value replaces the old one)."""
        self._require_known(run_id)
        self._buffer.add_tags([(run_id, check_key("tag", k), tag_value(k, v)) for k, v in tags.items()])

    def log_metric(self, run_id: str, key: str, value: float, step: int = 0, timestamp: int | None = None) -> None:
        """Buffer one metric value (no database round trip)."""
        ts = int(time.time() * 1000) if timestamp is None else timestamp
        self._buffer.add_metric(self._metric_row(run_id, key, value, step, ts))

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0, timestamp: int | None = None) -> None:
        ts = int(time.time() * 1000) if timestamp is None else timestamp
        self._buffer.add_metrics([self._metric_row(run_id, k, v, step, ts) for k, v in metrics.items()])

    def log_batch(self, run_id: str, metrics: Sequence[Metric | tuple[str, float, int]]) -> None:
        """Buffer many values at once: ``Metric`` records or ``(key, value, step)`` tuples.

        All are validated first: one bad value refuses the whole call.
        """
        now = int(time.time() * 1000)
        row = self._metric_row
        self._buffer.add_metrics([
            row(run_id, m.key, m.value, m.step, m.timestamp) if isinstance(m, Metric) else row(run_id, *m, now)
            for m in metrics
        ])

    def _metric_row(self, run_id: str, key: str, value: Any, step: Any, timestamp: Any) -> tuple:
        """Validate one value into a buffered row; the checks are cached or cheap (hot path)."""
        if run_id not in self._known_runs:
            self._require_known(run_id)
        if key not in self._valid_keys:
            self._valid_keys.add(check_key("metric", key))
        if type(value) is not float or not (self._allow_nonfinite or value - value == 0):
            value = metric_value(key, value, allow_nonfinite=self._allow_nonfinite)
        if type(step) is not int:
            step = metric_step(key, step)
        if type(timestamp) is not int:
            timestamp = metric_step(key, timestamp)
        if value != value:
            return (run_id, key, None, True, step, timestamp)
        return (run_id, key, value, False, step, timestamp)

    def flush(self) -> None:
        """Write buffered params, tags and metric values now."""
        self._buffer.flush()

    def _require_known(self, run_id: str, *, field: str = "run_id") -> None:
        """Check once that a run this client did not create exists (NotFound otherwise)."""
        if run_id in self._known_runs:
            return
        with self.ctx.store.read() as conn:
            tracking_service.require_run(conn, run_id, field=field)
        self._known_runs.add(run_id)

    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        self.flush()
        return tracking_service.metric_history(self.ctx, run_id, key)

    # -- artifacts -----------------------------------------------------------------
    def log_artifact(self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None) -> ArtifactInfo:
        self.flush()
        return artifact_service.log_file(self.ctx, run_id, local_path, artifact_path)

    def log_artifacts(self, run_id: str, local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> list[ArtifactInfo]:
        self.flush()
        return artifact_service.log_dir(self.ctx, run_id, local_dir, artifact_path)

    def log_text(self, run_id: str, text: str, artifact_path: str) -> ArtifactInfo:
        self.flush()
        return artifact_service.log_bytes(self.ctx, run_id, text.encode("utf-8"), artifact_path)

    def log_dict(self, run_id: str, data: Any, artifact_path: str) -> ArtifactInfo:
        text = json.dumps(data, indent=2, sort_keys=True, default=str)
        self.flush()
        return artifact_service.log_bytes(self.ctx, run_id, text.encode("utf-8"), artifact_path)

    def list_artifacts(self, run_id: str, prefix: str | None = None) -> list[ArtifactInfo]:
        self.flush()
        return artifact_service.list_artifacts(self.ctx, run_id, prefix)

    def read_artifact(self, run_id: str, artifact_path: str) -> bytes:
        return artifact_service.read_bytes(self.ctx, run_id, artifact_path)

    def download_artifacts(self, run_id: str, dest: str | os.PathLike[str], prefix: str | None = None) -> list[Path]:
        return artifact_service.download(self.ctx, run_id, dest, prefix)

    # -- datasets ------------------------------------------------------------------
    def log_dataset(
        self, run_id: str, data: Any, name: str, *, context: str = "training",
        columns: list[str] | None = None, save: bool = False,
    ) -> DatasetInfo:
        """Describe ``data`` (hash, schema, rows, column profile) and record it as an input of the run.

        ``data``: pandas/polars frame, numpy array (``columns`` names its columns),
        pyarrow table, dict of columns, or a CSV/Parquet path. ``save=True`` also
        stores the data itself as Parquet in the artifact store.
        """
        from keel.tracking.datasets import describe_dataset

        try:
            description = describe_dataset(data, columns=columns)
        except (TypeError, ValueError, FileNotFoundError) as exc:
            raise InvalidInput(f"dataset {name!r}: {exc}") from None
        data_sha = None
        if save:
            import io

            import pyarrow.parquet as pq

            sink = io.BytesIO()
            pq.write_table(description.table, sink)
            data_sha, _ = self.ctx.blobs.put_bytes(sink.getvalue())
        self.flush()
        return dataset_service.log_dataset(
            self.ctx, run_id, description, name=name, context=context, data_sha256=data_sha)

    def run_datasets(self, run_id: str) -> list[DatasetInfo]:
        self.flush()
        return dataset_service.run_datasets(self.ctx, run_id)

    # -- audit -----------------------------------------------------------------------
    def audit_log(self, *, object_id: str | None = None, action: str | None = None, limit: int | None = None) -> list[AuditEvent]:
        self.flush()
        return audit_service.list_events(self.ctx, object_id=object_id, action=action, limit=limit)

    def verify_audit(self):
        self.flush()
        return audit_service.verify(self.ctx)

    def close(self) -> None:
        self._buffer.close()
        self.ctx.close()
