"""Run each step as a Ray task: on a local Ray instance, or on a cluster.

Where: ``address`` (``--ray-address``), else ``KEEL_RAY_ADDRESS``, else what
``ray.init()`` finds by itself (Ray's own ``RAY_ADDRESS``, a ``ray start`` on
this machine), else a new local instance that this executor stops when the
pipeline ends. A driver already connected (``ray.init`` called by the caller)
is used as it is and left running.

A step's ``cpus``, ``gpus`` and ``memory`` become the task's ``num_cpus``,
``num_gpus`` and ``memory`` requests, so Ray places it and runs independent
steps at the same time. Ray queues a request that no node can satisfy and
waits for one forever; this executor checks the cluster's nodes first and
refuses such a step at once, naming the request and what the nodes offer.

The task runs the same worker code as every executor (keel/pipelines/worker.py):
it reads its inputs from keel's artifact store and writes its outputs there,
hash-addressed; only the small StepResult travels back through Ray. So the
workers must reach the metadata and artifact stores (a shared path, or
PostgreSQL and ``s3://``) and see the pipeline's files at the same path.
"""

from __future__ import annotations

import io
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from keel.errors import ConfigError, InvalidInput
from keel.pipelines.executors.base import StepResult, StepTask
from keel.settings import Settings

ADDRESS_ENV = "KEEL_RAY_ADDRESS"
_SETTINGS_PASSED = ("home", "store_uri", "artifact_uri", "tracking_uri", "token", "user")
_LOG_LIMIT = 1 << 20  # the step output kept as its log: the last MiB
_NODES_SHOWN = 5


class RayExecutor:
    name = "ray"

    def __init__(self, settings: Settings, address: str | None = None, **_: object) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'keel[ray]'") from None
        self.settings = settings
        self.address = address or settings.ray_address or None  # settings read KEEL_RAY_ADDRESS
        self._started = False
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, logging_level="warning")
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise ConfigError(f"cannot connect to Ray at {self.address or 'a local instance'}: {exc}. Check "
                                  f"--ray-address / {ADDRESS_ENV} (e.g. ray://head:10001)") from None
            # Stop only what we started: a driver someone else connected outlives this pipeline.
            self._started = True
        self._where = f"the Ray cluster at {self.address}" if self.address else "the Ray cluster"
        self._nodes = alive_nodes(ray.nodes())
        self._remote = ray.remote(max_calls=1)(_run_step)  # a fresh process per step: edited code is reloaded
        self._waiters = ThreadPoolExecutor(max_workers=32, thread_name_prefix="keel-ray")
        self._tmp = Path(tempfile.mkdtemp(prefix="keel-ray-steps-"))
        self._lock = threading.Lock()

    def submit(self, task: StepTask) -> Future[StepResult]:
        request = ray_request(task.resources)
        check_nodes(task.node, request, self._nodes, self._where)
        ref = self._remote.options(**request).remote(task.to_json(), _settings_of(self.settings))
        return self._waiters.submit(self._wait, task, ref)

    def _wait(self, task: StepTask, ref: Any) -> StepResult:
        import ray
        from ray.exceptions import GetTimeoutError, RayError

        timeout = task.resources.get("timeout_s")
        try:
            text, log = ray.get(ref, timeout=timeout)
        except GetTimeoutError:
            ray.cancel(ref, force=True)
            return StepResult(task.node, False, error=f"TimeoutError: step {task.node!r} ran past its "
                              f"timeout_s={timeout:g} and was stopped")
        except RayError as exc:  # the worker died (out of memory, killed, node lost): not the step's own error
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return StepResult(task.node, False, error=f"{type(exc).__name__}: step {task.node!r} did not finish on "
                              f"Ray: {first}")
        result = StepResult.from_json(text)
        if log:
            with self._lock:
                path = Path(tempfile.mkstemp(prefix=f"{task.node[:32]}-", suffix=".log", dir=self._tmp)[1])
            path.write_text(log)
            result.log = str(path)
        return result

    def close(self) -> None:
        import shutil

        self._waiters.shutdown(wait=True)
        shutil.rmtree(self._tmp, ignore_errors=True)
        if self._started:
            import ray

            ray.shutdown()


def ray_request(resources: dict[str, Any]) -> dict[str, Any]:
    """A step's resource spec as Ray task options (``memory`` in bytes, as Ray counts it)."""
    request: dict[str, Any] = {"num_cpus": float(resources.get("cpus", 1.0) or 0.0),
                               "num_gpus": float(resources.get("gpus", 0.0) or 0.0)}
    if resources.get("memory"):
        request["memory"] = int(resources["memory"])
    return request


def alive_nodes(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``ray.nodes()`` reduced to what placement needs: the address and resources of each live node."""
    return [{"address": n.get("NodeManagerAddress", "?"), "resources": dict(n.get("Resources") or {})}
            for n in nodes if n.get("Alive")]


_KEYS = (("num_cpus", "CPU", "cpus"), ("num_gpus", "GPU", "gpus"), ("memory", "memory", "memory"))


def check_nodes(step: str, request: dict[str, Any], nodes: list[dict[str, Any]], where: str) -> None:
    """Refuse a request that no single node can hold: Ray would queue it and wait forever.

    Totals are not enough: a task runs on one node, so 2 CPUs on each of two
    nodes do not run a step that asks for 4.
    """
    def fits(node: dict[str, Any]) -> bool:
        return all(node["resources"].get(ray_key, 0.0) >= request.get(option, 0.0) for option, ray_key, _ in _KEYS)

    if any(fits(n) for n in nodes):
        return
    asked = ", ".join(f"{name}={_show(name, request[option])}" for option, _, name in _KEYS
                      if request.get(option))
    offered = "; ".join(f"{n['address']}: " + ", ".join(f"{name}={_show(name, n['resources'].get(key, 0.0))}"
                                                        for _, key, name in _KEYS)
                        for n in sorted(nodes, key=lambda n: -n["resources"].get("CPU", 0.0))[:_NODES_SHOWN])
    more = f" and {len(nodes) - _NODES_SHOWN} more" if len(nodes) > _NODES_SHOWN else ""
    raise InvalidInput(f"step {step!r} asks for {asked or 'nothing'}, but no node of {where} can run it "
                       f"({len(nodes)} node{'s' if len(nodes) != 1 else ''}: {offered or 'none alive'}{more}). "
                       "Lower the step's resources={...} or add a node that has them; Ray would otherwise wait "
                       "for one forever")


def _show(name: str, value: float) -> str:
    if name == "memory":
        return f"{value / 2**30:.3g}GiB"
    return f"{value:g}"


def _settings_of(settings: Settings) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(settings).items() if k in _SETTINGS_PASSED}


def _run_step(task_json: str, settings: dict[str, Any]) -> tuple[str, str]:
    """In the Ray worker: execute the task; return its StepResult (JSON) and what it printed."""
    from keel.pipelines.worker import execute

    task = StepTask.from_json(task_json)
    # Python-level output only: enough for print() and logging in a step, and kept per step.
    captured = io.StringIO()
    with redirect_stdout(captured), redirect_stderr(captured):
        result = execute(task, Settings.load(settings))
        if not result.ok and result.traceback:
            captured.write(result.traceback)
    return result.to_json(), captured.getvalue()[-_LOG_LIMIT:]
