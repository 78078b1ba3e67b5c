"""Execute one step task: read its inputs, call the step, store its outputs.

The same function runs in the pipeline's own process (in-process executor),
in a child process (``python -m keel.pipelines.worker TASK RESULT``) and in a
Ray worker. Outputs are all encoded before the first is stored, and a blob
appears only complete (BlobStore's atomic rename), so a failing step leaves
no half-written output behind; the cache row is written by the runner only
after success.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

from keel.pipelines import values
from keel.pipelines.executors.base import StepResult, StepTask
from keel.settings import Settings


def execute(task: StepTask, settings: Settings, fn: Callable[..., Any] | None = None) -> StepResult:
    """Run ``task`` (``fn`` given: the step function already at hand) and return its result."""
    try:
        from keel.artifacts.blobs import BlobStore

        blobs = BlobStore(settings.artifact_uri)
        fn = fn or load_step(task).fn
        arguments = {name: decode_argument(ref, blobs) for name, ref in task.arguments.items()}
        with active_run(settings, task.run_id):
            value = fn(**arguments)
        produced = [value] if task.outputs == 1 else _unpack(task, value)
        encoded = [values.encode(v) for v in produced]
        outputs = []
        for kind, data in encoded:
            sha, size = blobs.put_bytes(data)
            outputs.append({"kind": kind, "sha256": sha, "size": size})
        return StepResult(task.node, True, outputs)
    except BaseException as exc:  # noqa: BLE001 - the step's failure is the result
        if isinstance(exc, KeyboardInterrupt):
            raise
        return StepResult(task.node, False, error=f"{type(exc).__name__}: {exc}",
                          traceback="".join(traceback.format_exception(exc)))


def _unpack(task: StepTask, value: Any) -> list[Any]:
    if not isinstance(value, (tuple, list)) or len(value) != task.outputs:
        from keel.errors import InvalidInput

        got = f"a {type(value).__name__} of length {len(value)}" if isinstance(value, (tuple, list)) else \
            type(value).__name__
        raise InvalidInput(f"step {task.node!r} declares outputs={task.outputs} and must return a tuple of "
                           f"{task.outputs} values, got {got}")
    return list(value)


def decode_argument(ref: Any, blobs: Any) -> Any:
    """A tagged argument reference back to its value (blobs are hash-verified on read)."""
    tag = ref["@"]
    if tag == "blob":
        return values.decode(ref["kind"], blobs.get_bytes(ref["sha256"], name=ref.get("name")))
    if tag == "data":
        return ref["path"]
    if tag == "value":
        return ref["value"]
    if tag == "list":
        return [decode_argument(r, blobs) for r in ref["items"]]
    if tag == "tuple":
        return tuple(decode_argument(r, blobs) for r in ref["items"])
    if tag == "dict":
        return {k: decode_argument(r, blobs) for k, r in ref["items"].items()}
    raise ValueError(f"unknown argument reference {tag!r}")


def load_step(task: StepTask) -> Any:
    """Import the step object named by a task (in a fresh process: load the pipeline file first)."""
    from keel.pipelines.loader import load_file

    for entry in reversed(task.sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    if task.pipeline_module not in sys.modules:
        load_file(Path(task.pipeline_file), module_name=task.pipeline_module, fresh=False)
    module = importlib.import_module(task.module)
    obj: Any = module
    for part in task.attr.split("."):
        obj = getattr(obj, part)
    return obj


@contextlib.contextmanager
def active_run(settings: Settings, run_id: str) -> Iterator[None]:
    """Make the step's child run the active run, so ``keel.log_metric`` and ``keel.log_model`` in a step
    log to it. The runner created it and ends it; this only activates it."""
    from keel.tracking import fluent

    client = fluent.client_for(settings)
    active = fluent.ActiveRun(client, client.get_run(run_id))
    # fluent has no public "resume a run" yet; pushing onto its context stack is what start_run does.
    token = fluent._active.set(fluent._active.get() + (active,))
    try:
        yield
    finally:
        fluent._active.reset(token)
        client.flush()


def main(argv: list[str]) -> int:
    """``python -m keel.pipelines.worker TASK_FILE RESULT_FILE``: settings from the KEEL_* environment."""
    task_file, result_file = argv
    task = StepTask.from_json(Path(task_file).read_text())
    result = execute(task, Settings.load())
    if not result.ok and result.traceback:
        sys.stderr.write(result.traceback)
    tmp = Path(result_file + ".part")
    tmp.write_text(result.to_json())
    tmp.replace(result_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
