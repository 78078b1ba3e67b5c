"""The fluent API: ``with keel.start_run(): keel.log_metric(...)``.

The active run lives in a context variable (per thread and per asyncio task),
not in a module global; clients are shared per store so that every run on the
same store uses one connection pool and one metric buffer.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
from contextvars import ContextVar
from typing import Any, Mapping

from keel.entities import ArtifactInfo, DatasetInfo, Run, RunStatus
from keel.errors import InvalidInput
from keel.settings import TOML_FILE, Settings
from keel.tracking.client import Client
from keel.tracking.source import current_source

_active: ContextVar[tuple["ActiveRun", ...]] = ContextVar("keel_active_runs", default=())
_clients: dict[tuple[str, ...], Client] = {}
_clients_lock = threading.Lock()
_open_runs: dict[str, "ActiveRun"] = {}


def client_for(settings: Settings | None = None) -> Client:
    """The shared client for the store that ``settings`` (default: env + keel.toml) name."""
    settings = settings or _current_settings()
    # Everything a client's behaviour depends on: where, who, and the promotion policy it enforces.
    key = (settings.store_uri, settings.artifact_uri, settings.user, settings.token or "",
           json.dumps(settings.policy, sort_keys=True, default=str))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = Client(settings)
        return client


_settings_cache: dict[tuple, Settings] = {}
# The variables that choose which client (store, artifacts, actor) a run uses;
# the others are read when that client is first made.
_STORE_VARS = ("KEEL_HOME", "KEEL_STORE_URI", "KEEL_ARTIFACT_URI", "KEEL_USER", "KEEL_TOKEN")


def _current_settings() -> Settings:
    """Settings from the environment and keel.toml, re-read when the store-choosing ones changed."""
    try:
        toml = os.stat(TOML_FILE).st_mtime_ns  # relative: the working directory's keel.toml
    except OSError:
        toml = None
    environ = os.environ
    key = (tuple([environ.get(name) for name in _STORE_VARS]), os.getcwd(), toml)
    settings = _settings_cache.get(key)
    if settings is None:
        settings = _settings_cache[key] = Settings.load()
    return settings


class ActiveRun:
    """A started run. Use as a context manager: an exception marks it FAILED."""

    def __init__(self, client: Client, run: Run) -> None:
        self.client = client
        self.info = run
        self.id = run.id
        self._ended = False

    def __repr__(self) -> str:
        return f"<ActiveRun {self.id} {self.info.name!r}>"

    def __enter__(self) -> "ActiveRun":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.end(RunStatus.FINISHED)
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end(RunStatus.KILLED)
        else:
            self.end(RunStatus.FAILED)

    def end(self, status: str = RunStatus.FINISHED) -> None:
        """Flush this run's metrics and mark it ended. Idempotent."""
        if self._ended:
            return
        self._ended = True
        stack = _active.get()
        if self in stack:
            _active.set(tuple(r for r in stack if r is not self))
        _open_runs.pop(self.id, None)
        self.client.end_run(self.id, status)

    # Logging, bound to this run.
    def log_param(self, key: str, value: Any) -> None:
        self.client.log_params(self.id, {key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.client.log_params(self.id, params)

    def set_tag(self, key: str, value: Any) -> None:
        self.client.set_tags(self.id, {key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.client.set_tags(self.id, tags)

    def log_metric(self, key: str, value: float, step: int = 0, timestamp: int | None = None) -> None:
        self.client.log_metric(self.id, key, value, step, timestamp)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        self.client.log_metrics(self.id, metrics, step)

    def log_artifact(self, local_path: str | os.PathLike[str], artifact_path: str | None = None) -> ArtifactInfo:
        return self.client.log_artifact(self.id, local_path, artifact_path)

    def log_artifacts(self, local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> list[ArtifactInfo]:
        return self.client.log_artifacts(self.id, local_dir, artifact_path)

    def log_text(self, text: str, artifact_path: str) -> ArtifactInfo:
        return self.client.log_text(self.id, text, artifact_path)

    def log_dict(self, data: Any, artifact_path: str) -> ArtifactInfo:
        return self.client.log_dict(self.id, data, artifact_path)

    def log_dataset(self, data: Any, name: str, *, context: str = "training",
                    columns: list[str] | None = None, save: bool = False) -> DatasetInfo:
        return self.client.log_dataset(self.id, data, name, context=context, columns=columns, save=save)


def start_run(
    experiment: str | None = None,
    name: str | None = None,
    *,
    nested: bool = False,
    tags: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
) -> ActiveRun:
    """Start a run and make it the active one.

    Args:
        experiment: experiment name, created if missing (default ``"Default"``).
        name: run name (default ``run-<id prefix>``).
        nested: start a child of the active run instead of refusing.
        tags: initial tags.
        settings: store settings (default: environment and keel.toml).
    """
    stack = _active.get()
    parent = stack[-1] if stack else None
    if parent is not None and not nested:
        raise InvalidInput(
            f"run {parent.id} is already active; end it first or pass nested=True to start a child run"
        )
    client = parent.client if parent is not None and settings is None else client_for(settings)
    if experiment is None and parent is not None:  # a child run stays in its parent's experiment
        experiment = client.get_experiment(parent.info.experiment_id).name
    run = client.create_run(
        experiment or "Default",
        name=name, parent_run_id=parent.id if parent else None, tags=tags, source=current_source(), defer=True,
    )
    active = ActiveRun(client, run)
    _active.set(stack + (active,))
    _open_runs[run.id] = active
    return active


def active_run() -> ActiveRun | None:
    """The innermost active run, or None."""
    stack = _active.get()
    return stack[-1] if stack else None


def _current() -> ActiveRun:
    run = active_run()
    if run is None:
        raise InvalidInput("no active run: start one with `with keel.start_run(...):`")
    return run


def end_run(status: str = RunStatus.FINISHED) -> None:
    """End the active run (no-op when there is none)."""
    run = active_run()
    if run is not None:
        run.end(status)


def log_param(key: str, value: Any) -> None:
    _current().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    _current().log_params(params)


def set_tag(key: str, value: Any) -> None:
    _current().set_tag(key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    _current().set_tags(tags)


def log_metric(key: str, value: float, step: int = 0, timestamp: int | None = None) -> None:
    """Buffer one metric value of the active run (flushed in bulk)."""
    _current().log_metric(key, value, step, timestamp)


def log_metrics(metrics: Mapping[str, float], step: int = 0) -> None:
    _current().log_metrics(metrics, step)


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> ArtifactInfo:
    return _current().log_artifact(local_path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> list[ArtifactInfo]:
    return _current().log_artifacts(local_dir, artifact_path)


def log_text(text: str, artifact_path: str) -> ArtifactInfo:
    return _current().log_text(text, artifact_path)


def log_dict(data: Any, artifact_path: str) -> ArtifactInfo:
    return _current().log_dict(data, artifact_path)


def log_dataset(data: Any, name: str, *, context: str = "training",
                columns: list[str] | None = None, save: bool = False) -> DatasetInfo:
    """Record a dataset (hash, schema, rows, per-column profile) as an input of the active run."""
    return _current().log_dataset(data, name, context=context, columns=columns, save=save)


def flush() -> None:
    """Write every buffered metric value of every client now."""
    for client in list(_clients.values()):
        client.flush()


def close_clients(store_uri: str | None = None) -> None:
    """Flush and close the shared clients (of one store, or all): their connections are released.

    For programs that move between stores (and test suites); runs still open
    on those clients should be ended first.
    """
    with _clients_lock:
        keys = [k for k in _clients if store_uri is None or k[0] == store_uri]
        closing = [_clients.pop(k) for k in keys]
    for client in closing:
        client.close()


def get_run(run_id: str, settings: Settings | None = None) -> Run:
    return client_for(settings).get_run(run_id)


def search_runs(experiments: Any = None, filter: str | None = None, order_by: Any = None,
                max_results: int = 1000, settings: Settings | None = None) -> list[Run]:
    return client_for(settings).search_runs(experiments, filter, order_by, max_results)


@atexit.register
def _end_open_runs() -> None:
    # A run still open at exit ends FAILED if an uncaught exception is ending
    # the interpreter, FINISHED otherwise (as MLflow does).
    status = RunStatus.FAILED if getattr(sys, "last_value", None) is not None else RunStatus.FINISHED
    for run in list(_open_runs.values()):
        try:
            run.end(status)
        except Exception as exc:  # no caller is left to raise to
            logging.getLogger("keel.tracking").error("keel: could not end run %s at exit: %s", run.id, exc)
