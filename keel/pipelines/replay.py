"""Replay a recorded pipeline run: its code, parameters and environment, on new data or the same.

The code that runs is the recorded source (written out from the artifact
store, every file hash-checked), not whatever the working tree holds now.
The environment is compared with the recorded lock: a difference warns, or
refuses with ``strict``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Mapping

from keel.errors import InvalidInput, PolicyViolation
from keel.settings import Settings


class EnvironmentDiffers(UserWarning):
    """The running environment is not the one the pipeline run recorded."""


def load_record(ctx: Any, record_sha256: str) -> dict[str, Any]:
    return json.loads(ctx.blobs.get_bytes(record_sha256, name="pipeline replay record"))


def materialize_sources(ctx: Any, settings: Settings, record: dict[str, Any], record_sha256: str) -> Path:
    """Write the recorded project files into a folder of their own (reused if already complete)."""
    folder = settings.home / "cache" / "replay" / record_sha256
    for rel, sha in record["sources"].items():
        target = folder / rel
        if not target.resolve().is_relative_to(folder.resolve()):
            raise InvalidInput(f"replay record names a source outside its folder: {rel!r}")
        if not target.is_file():
            ctx.blobs.copy_to(sha, target, name=f"recorded source {rel}")
    return folder


def check_environment(record: dict[str, Any], *, strict: bool) -> list[str]:
    """Differences between the recorded lock and this interpreter; warn, or refuse under ``strict``."""
    from keel.envs.lock import EnvironmentLock, verify

    differences = [str(m) for m in verify(EnvironmentLock.from_text(record["lock"]), check_platform=True)]
    if differences:
        shown = "; ".join(differences[:10]) + (f"; and {len(differences) - 10} more" if len(differences) > 10
                                                else "")
        if strict:
            raise PolicyViolation(f"the running environment differs from the one pipeline {record['pipeline']!r} "
                                  f"recorded: {shown}. Install the recorded lock (keel pipeline show RUN) or "
                                  "replay without strict")
        warnings.warn(f"replaying {record['pipeline']!r} in a different environment: {shown}", EnvironmentDiffers,
                      stacklevel=3)
    return differences


def replay(pipeline_run_id: str, *, data: str | Mapping[str, str] | None = None,
           params: Mapping[str, Any] | None = None, executor: str = "inprocess", cache: bool = True,
           strict: bool = False, settings: Settings | None = None) -> Any:
    """Run a recorded pipeline run again; returns the new :class:`~keel.pipelines.runner.PipelineRun`.

    Args:
        pipeline_run_id: the recorded pipeline run (or a unique prefix of its id).
        data: a file for the pipeline's one dataset parameter, or ``{parameter: file}``;
            datasets not named here are the recorded ones (their stored copy).
        params: parameter overrides (default: the recorded values).
        cache: reuse cached step outputs (False reruns every step).
        strict: refuse to run when the environment differs from the recorded lock.
    """
    from keel.pipelines.loader import find_pipeline, load_file
    from keel.pipelines.runner import run_pipeline
    from keel.service.pipelines import get_pipeline_run
    from keel.tracking.fluent import client_for

    client = client_for(settings)
    settings = client.settings
    recorded = get_pipeline_run(client.ctx, pipeline_run_id)
    record = load_record(client.ctx, recorded.record_sha256)
    check_environment(record, strict=strict)
    folder = materialize_sources(client.ctx, settings, record, recorded.record_sha256)
    pipe = find_pipeline(load_file(folder / record["file"], root=folder), record["pipeline"])

    values = dict(record["params"])
    values.update(params or {})
    replaced = _data_overrides(pipe, data)
    for name in pipe.datasets:
        if name in replaced:
            values[name] = replaced[name]
        elif name in record["datasets"]:
            values[name] = _recorded_copy(client.ctx, settings, record["datasets"][name], name)
    return run_pipeline(pipe, values, executor=executor, cache=cache, settings=settings,
                        replay_of=recorded.run_id, root=folder)


def _data_overrides(pipe: Any, data: str | Mapping[str, str] | None) -> dict[str, str]:
    if data is None:
        return {}
    if isinstance(data, Mapping):
        unknown = set(data) - set(pipe.datasets)
        if unknown:
            raise InvalidInput(f"pipeline {pipe.name!r} has no dataset parameter(s) {sorted(unknown)}; its "
                               f"datasets: {', '.join(pipe.datasets) or 'none'}")
        return {k: str(v) for k, v in data.items()}
    if len(pipe.datasets) != 1:
        raise InvalidInput(f"pipeline {pipe.name!r} has {len(pipe.datasets)} dataset parameters "
                           f"({', '.join(pipe.datasets) or 'none'}); name the one to replace: --data NAME=URI")
    return {pipe.datasets[0]: str(data)}


def _recorded_copy(ctx: Any, settings: Settings, dataset: dict[str, Any], name: str) -> str:
    """A local copy of the dataset file the recorded run read (from the artifact store)."""
    target = settings.home / "cache" / "pipelines" / "data" / dataset["sha256"] / dataset["filename"]
    if not target.is_file():
        ctx.blobs.copy_to(dataset["sha256"], target, name=f"recorded dataset {name}")
    return str(target)
