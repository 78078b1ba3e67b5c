"""The executor interface: a step task in, a future of its result out.

A task names its step by module and attribute (so another process can
import it), carries its arguments as references to verified blobs, and the
id of the step's child run. Executing it (keel/pipelines/worker.py) is the
same code in every executor; executors only decide where and with what
resources it happens.
"""

from __future__ import annotations

import functools
import json
import os
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from keel.errors import InvalidInput


@dataclass
class StepTask:
    node: str
    module: str  # where the step object lives
    attr: str  # its name in that module
    pipeline_file: str  # loaded first: it may be the module itself
    pipeline_module: str  # the name the pipeline file is loaded under
    sys_path: list[str]
    arguments: dict[str, Any]  # name -> tagged reference (see worker.decode_argument)
    run_id: str
    outputs: int
    resources: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "StepTask":
        return cls(**json.loads(text))


@dataclass
class StepResult:
    node: str
    ok: bool
    outputs: list[dict[str, Any]] = field(default_factory=list)  # [{kind, sha256, size}]
    error: str | None = None
    traceback: str | None = None
    log: str | None = None  # a local file with the step's stdout and stderr, if captured

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "StepResult":
        return cls(**json.loads(text))


class Executor(Protocol):
    """Runs step tasks. ``submit`` may refuse a task at once (InvalidInput) when it can never run."""

    name: str

    def submit(self, task: StepTask) -> Future[StepResult]: ...

    def close(self) -> None: ...


@functools.lru_cache(maxsize=1)
def local_gpus() -> int:
    """GPUs this machine offers to a step: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def check_fits(task: StepTask, *, cpus: float, gpus: float, where: str) -> None:
    """Refuse at once a step that asks for more than this machine has (it would never start)."""
    want = task.resources
    if want.get("cpus", 1) > cpus:
        raise InvalidInput(f"step {task.node!r} asks for {want['cpus']:g} CPUs; {where} has {cpus:g}. Lower "
                           "resources={'cpus': ...} or use an executor with bigger nodes (--executor ray)")
    if want.get("gpus", 0) > gpus:
        raise InvalidInput(f"step {task.node!r} asks for {want['gpus']:g} GPUs; {where} has {gpus:g}. Run it "
                           "where GPUs are (--executor ray with a GPU node) or drop resources={'gpus': ...}")
