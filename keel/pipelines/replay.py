"""Replay a recorded pipeline run: its code, parameters and environment, on new data or the same.

The code that runs is the recorded source (written out from the artifact
store, every file hash-checked), not whatever the working tree holds now.
The environment is compared with the recorded lock: a difference warns, or
refuses with ``strict``; with ``env="build"`` the replay runs instead in a
virtual environment built from the lock (``python -m keel.pipelines.replay``
in that environment's interpreter), so the recorded package versions train
the new model.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Mapping

from keel.errors import IntegrityError, InvalidInput, KeelError, PolicyViolation
from keel.settings import Settings

ENVS = ("current", "build")  # where a replay runs: this interpreter, or a venv built from the recorded lock
_LOG_TAIL = 4000


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
           strict: bool = False, env: str = "current", executor_options: Mapping[str, Any] | None = None,
           settings: Settings | None = None) -> Any:
    """Run a recorded pipeline run again; returns the new :class:`~keel.pipelines.runner.PipelineRun`.

    Args:
        pipeline_run_id: the recorded pipeline run (or a unique prefix of its id).
        data: a file for the pipeline's one dataset parameter, or ``{parameter: file}``;
            datasets not named here are the recorded ones (their stored copy).
        params: parameter overrides (default: the recorded values).
        cache: reuse cached step outputs (False reruns every step).
        strict: refuse to run when the environment differs from the recorded lock.
        env: ``"current"`` runs in this interpreter; ``"build"`` builds a virtual environment
            from the recorded lock (once; reused under ``$KEEL_HOME/envs``) and replays there.
        executor_options: options of the executor (``{"address": ...}`` for Ray).
    """
    from keel.pipelines.loader import find_pipeline, load_file
    from keel.pipelines.runner import run_pipeline
    from keel.service.pipelines import get_pipeline_run
    from keel.tracking.fluent import client_for

    if env not in ENVS:
        raise InvalidInput(f"env must be one of {', '.join(ENVS)}, got {env!r}")
    client = client_for(settings)
    settings = client.settings
    recorded = get_pipeline_run(client.ctx, pipeline_run_id)
    record = load_record(client.ctx, recorded.record_sha256)
    if env == "build":
        python = recorded_python(record, settings)
        return _replay_in(python, settings, {
            "run_id": recorded.run_id, "data": _absolute(data), "params": dict(params or {}), "executor": executor,
            "cache": cache, "strict": strict, "executor_options": dict(executor_options or {})})
    check_environment(record, strict=strict)
    folder = materialize_sources(client.ctx, settings, record, recorded.record_sha256)
    entry = (folder / record["file"]).resolve()
    if not entry.is_relative_to(folder.resolve()):
        raise IntegrityError(f"the replay record of run {recorded.run_id} names a pipeline file outside its sources: "
                             f"{record['file']!r}")
    pipe = find_pipeline(load_file(entry, root=folder), record["pipeline"])

    values = dict(record["params"])
    values.update(params or {})
    replaced = _data_overrides(pipe, data)
    for name in pipe.datasets:
        if name in replaced:
            values[name] = replaced[name]
        elif name in record["datasets"]:
            values[name] = _recorded_copy(client.ctx, settings, record["datasets"][name], name)
    return run_pipeline(pipe, values, executor=executor, cache=cache, settings=settings,
                        replay_of=recorded.run_id, root=folder, executor_options=dict(executor_options or {}))


def recorded_python(record: dict[str, Any], settings: Settings) -> Path:
    """The interpreter of a virtual environment built from the record's lock, plus this keel.

    Built once under ``$KEEL_HOME/envs/KEY`` and reused: KEY covers the lock and
    the keel that is installed beside it (its source, for a checkout), so a
    changed keel gets a new environment. The build happens in a folder of its
    own that is renamed into place when complete: a build that failed or was
    killed is never mistaken for a finished one.
    """
    import dataclasses
    import shutil
    import uuid

    from keel.envs.build import build_environment
    from keel.envs.lock import EnvironmentLock
    from keel.envs.self_spec import keel_requirement

    lock = EnvironmentLock.from_text(record["lock"])
    # keel itself comes from keel_requirement(): the keel that runs this replay, worker included.
    lock = dataclasses.replace(lock, packages={k: v for k, v in lock.packages.items() if k != "keel"})
    keel = keel_requirement()
    drivers = store_drivers(settings)
    key = hashlib.sha256("\n".join([lock.to_text(), keel, _source_digest(keel), *drivers]).encode()).hexdigest()[:20]
    envs = settings.home / "envs"
    folder = envs / key
    python = folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if python.is_file():
        return python.absolute()
    building = envs / f".building-{uuid.uuid4().hex[:12]}"
    envs.mkdir(parents=True, exist_ok=True)
    build_environment(lock, building, extra=[keel, *drivers])
    try:
        building.rename(folder)
    except OSError:  # another replay finished the same environment first: use that one
        shutil.rmtree(building, ignore_errors=True)
        if not python.is_file():
            raise
    return python.absolute()


def store_drivers(settings: Settings) -> list[str]:
    """What the replay's environment needs to reach this store (pinned to the versions running here).

    The recorded lock holds what the pipeline imports; the database driver and
    the artifact store's filesystem are the deployment's, not the pipeline's.
    """
    from importlib import metadata

    wanted = []
    if settings.store_uri.startswith("postgresql"):
        wanted.append(("psycopg", "psycopg[binary]"))
    scheme = settings.artifact_uri.split("://", 1)[0] if "://" in settings.artifact_uri else "file"
    wanted += {"s3": [("s3fs", "s3fs")], "gs": [("gcsfs", "gcsfs")], "gcs": [("gcsfs", "gcsfs")],
               "abfs": [("adlfs", "adlfs")], "az": [("adlfs", "adlfs")]}.get(scheme, [])
    pinned = []
    for dist, requirement in wanted:
        try:
            pinned.append(f"{requirement}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pinned.append(requirement)
    return pinned


def _source_digest(requirement: str) -> str:
    """For keel installed from a folder: a hash of its package source (an edit changes the environment)."""
    root = Path(requirement)
    if not root.is_dir():
        return ""
    digest = hashlib.sha256()
    for path in sorted([*(root / "keel").rglob("*.py"), root / "pyproject.toml"]):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _absolute(data: str | Mapping[str, str] | None) -> str | dict[str, str] | None:
    """Local data paths made absolute: the replay process need not share our idea of relative."""
    def one(uri: str) -> str:
        text = str(uri)
        return text if "://" in text and not text.startswith("file://") else \
            str(Path(text.removeprefix("file://")).expanduser().absolute())

    if data is None:
        return None
    if isinstance(data, Mapping):
        return {k: one(v) for k, v in data.items()}
    return one(data)


def _replay_in(python: Path, settings: Settings, request: dict[str, Any]) -> Any:
    """Run the replay in another interpreter (``python -m keel.pipelines.replay``); its PipelineRun back."""
    import tempfile

    from keel.pipelines.runner import PipelineFailed, PipelineRun, StepOutcome

    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update({"KEEL_HOME": str(settings.home.absolute()), "KEEL_STORE_URI": settings.store_uri,
                "KEEL_ARTIFACT_URI": settings.artifact_uri, "KEEL_USER": settings.user})
    env.update({k: v for k, v in (("KEEL_TOKEN", settings.token), ("KEEL_TRACKING_URI", settings.tracking_uri))
                if v})
    with tempfile.TemporaryDirectory(prefix="keel-replay-") as tmp:
        request_file, result_file, log_file = Path(tmp, "request.json"), Path(tmp, "result.json"), Path(tmp, "log")
        request_file.write_text(json.dumps(request))
        with open(log_file, "wb") as log:
            # -I: only the built environment's packages; no PYTHONPATH, no working directory on sys.path.
            # stderr stays ours: warnings and a step's traceback reach the user as they happen.
            code = subprocess.run([str(python), "-I", "-m", "keel.pipelines.replay", str(request_file),
                                   str(result_file)], env=env, stdin=subprocess.DEVNULL, stdout=log).returncode
        if not result_file.is_file():
            tail = log_file.read_bytes()[-_LOG_TAIL:].decode("utf-8", "replace").strip()
            raise KeelError(f"the replay in {python} ended (exit status {code}) without a result; its last "
                            f"output: {tail or '(none)'}")
        answer = json.loads(result_file.read_text())
    run = None
    if answer.get("run"):
        shown = answer["run"]
        run = PipelineRun(shown["run_id"], shown["pipeline"], shown["status"],
                          {n: StepOutcome(**o) for n, o in shown["steps"].items()}, shown["result"], shown["error"],
                          settings, environment=str(python))
    if answer["ok"]:
        return run
    if answer["error"] == "PipelineFailed" and run is not None:
        raise PipelineFailed(answer["message"], run)
    import keel.errors

    cls = getattr(keel.errors, answer["error"], None)
    if not (isinstance(cls, type) and issubclass(cls, KeelError)):
        cls = KeelError
    raise cls(answer["message"])


def main(argv: list[str]) -> int:
    """``python -m keel.pipelines.replay REQUEST RESULT``: one replay in this interpreter (settings from KEEL_*)."""
    import dataclasses
    import traceback

    from keel.pipelines.runner import PipelineFailed

    request_file, result_file = argv
    request = json.loads(Path(request_file).read_text())

    def shown(run: Any) -> dict[str, Any]:
        return {"run_id": run.run_id, "pipeline": run.pipeline, "status": run.status, "result": run.result,
                "error": run.error, "steps": {n: dataclasses.asdict(o) for n, o in run.steps.items()}}

    try:
        run = replay(request["run_id"], data=request["data"], params=request["params"], executor=request["executor"],
                     cache=request["cache"], strict=request["strict"], executor_options=request["executor_options"])
        answer: dict[str, Any] = {"ok": True, "run": shown(run)}
    except PipelineFailed as exc:
        answer = {"ok": False, "error": "PipelineFailed", "message": str(exc), "run": shown(exc.run)}
    except KeelError as exc:
        answer = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it as one clear line
        sys.stderr.write(traceback.format_exc())
        answer = {"ok": False, "error": "KeelError", "message": f"the replay failed: {type(exc).__name__}: {exc}"}
    tmp = Path(result_file + ".part")
    tmp.write_text(json.dumps(answer))
    tmp.replace(result_file)
    return 0



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
    filename = str(dataset.get("filename") or "")
    if not filename or filename != Path(filename).name or filename in (".", ".."):
        raise IntegrityError(f"the replay record names dataset {name!r} with an unsafe file name {filename!r}")
    target = settings.home / "cache" / "pipelines" / "data" / dataset["sha256"] / filename
    if not target.is_file():
        ctx.blobs.copy_to(dataset["sha256"], target, name=f"recorded dataset {name}")
    return str(target)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
