"""Run each step in the pipeline's own process, one after another.

The simplest executor and the default: no serialization of the step itself,
tracebacks point at the user's code, a debugger stops in it.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Callable

from keel.pipelines.executors.base import StepResult, StepTask, check_fits, local_gpus
from keel.settings import Settings


class InProcessExecutor:
    name = "inprocess"

    def __init__(self, settings: Settings, functions: dict[str, Callable[..., Any]] | None = None) -> None:
        self.settings = settings
        self.functions = functions or {}  # node -> step function, already imported

    def submit(self, task: StepTask) -> Future[StepResult]:
        import os

        from keel.pipelines.worker import execute

        check_fits(task, cpus=float(os.cpu_count() or 1), gpus=float(local_gpus()), where="this machine")
        future: Future[StepResult] = Future()
        future.set_result(execute(task, self.settings, self.functions.get(task.node)))
        return future

    def close(self) -> None:
        pass
