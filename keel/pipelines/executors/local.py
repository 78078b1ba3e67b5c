"""Run each step in its own child process; independent steps run in parallel.

Resource specs become what a single machine can enforce: ``memory`` is the
child's address-space limit (``RLIMIT_AS``: an allocation past it fails in the
step, not in the machine), ``cpus`` caps the BLAS/OpenMP thread pools and is
counted against this machine's cores so that running steps never ask for
more cores than there are, and ``timeout_s`` stops the child.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from keel.pipelines.executors.base import StepResult, StepTask, check_fits, local_gpus
from keel.settings import Settings

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
_LOG_TAIL = 2000


class SubprocessExecutor:
    name = "subprocess"

    def __init__(self, settings: Settings, max_cpus: float | None = None, **_: object) -> None:
        self.settings = settings
        self.capacity = float(max_cpus or os.cpu_count() or 1)
        self._free = self.capacity
        self._cond = threading.Condition()
        self._pool = ThreadPoolExecutor(max_workers=max(1, int(self.capacity)) + 1,
                                        thread_name_prefix="keel-step")
        self._tmp = Path(tempfile.mkdtemp(prefix="keel-steps-"))

    def submit(self, task: StepTask) -> Future[StepResult]:
        check_fits(task, cpus=self.capacity, gpus=float(local_gpus()), where="this machine")
        return self._pool.submit(self._run, task)

    def _run(self, task: StepTask) -> StepResult:
        need = min(float(task.resources.get("cpus", 1) or 0), self.capacity)
        with self._cond:
            self._cond.wait_for(lambda: self._free >= need)
            self._free -= need
        try:
            return self._spawn(task, need)
        finally:
            with self._cond:
                self._free += need
                self._cond.notify_all()

    def _spawn(self, task: StepTask, cpus: float) -> StepResult:
        folder = Path(tempfile.mkdtemp(prefix=f"{task.node[:32]}-", dir=self._tmp))
        task_file, result_file, log_file = folder / "task.json", folder / "result.json", folder / "step.log"
        task_file.write_text(task.to_json())
        env = dict(os.environ)
        env.update(_keel_env(self.settings))
        threads = str(max(1, int(cpus)))
        env.update({name: threads for name in _THREAD_VARS})
        memory = task.resources.get("memory")
        timeout = task.resources.get("timeout_s")
        with open(log_file, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "keel.pipelines.worker", str(task_file), str(result_file)],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=(lambda: _limit_memory(int(memory))) if memory else None,
            )
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                return StepResult(task.node, False, error=f"TimeoutError: step {task.node!r} ran past its "
                                  f"timeout_s={timeout:g} and was stopped", log=str(log_file))
        if result_file.is_file():
            result = StepResult.from_json(result_file.read_text())
            result.log = str(log_file)
            return result
        tail = log_file.read_bytes()[-_LOG_TAIL:].decode("utf-8", "replace").strip()
        why = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        return StepResult(task.node, False, error=f"WorkerDied: step {task.node!r} process ended ({why}) "
                          f"without a result; last output: {tail or '(none)'}", log=str(log_file))

    def close(self) -> None:
        import shutil

        self._pool.shutdown(wait=True)
        shutil.rmtree(self._tmp, ignore_errors=True)


def _keel_env(settings: Settings) -> dict[str, str]:
    env = {"KEEL_HOME": str(settings.home), "KEEL_STORE_URI": settings.store_uri,
           "KEEL_ARTIFACT_URI": settings.artifact_uri, "KEEL_USER": settings.user}
    if settings.token:
        env["KEEL_TOKEN"] = settings.token
    return env


def _limit_memory(limit: int) -> None:
    """In the child, before exec: cap its address space (Linux, macOS; a no-op where refused)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass
