"""One pipeline run: trace, key every step, reuse what the cache holds, run the rest.

The pipeline run is a tracked run; each step gets a child run (also a step
whose outputs came from the cache, tagged ``keel.step.cached``), so a model
logged inside a step knows its pipeline run through its run's parent. The
replay record (sources, parameters, datasets, environment lock) is stored
before any step runs.
"""

from __future__ import annotations

import inspect
import json
import sys
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.entities import RunStatus
from keel.errors import InvalidInput, KeelError
from keel.pipelines import values
from keel.pipelines.dsl import DataInput, Graph, Node, Output, Pipeline
from keel.pipelines.executors import EXECUTORS, get_executor
from keel.pipelines.executors.base import StepResult, StepTask
from keel.pipelines.fingerprint import Project, cache_key, code_fingerprint, project_files, sha256_text
from keel.service import pipelines as service
from keel.settings import Settings

TAG_PIPELINE = "keel.pipeline"
TAG_PIPELINE_RUN = "keel.pipeline.run_id"
_TABLE_SUFFIXES = (".csv", ".parquet", ".pq", ".tsv")


class PipelineFailed(KeelError):
    """A step failed; the pipeline run is marked FAILED with the step's error."""

    http_status = 422

    def __init__(self, message: str, run: "PipelineRun") -> None:
        super().__init__(message)
        self.run = run


@dataclass
class StepOutcome:
    node: str
    status: str  # ran / cached / failed / not run
    run_id: str | None
    cache_key: str
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    cached_from: str | None = None


@dataclass
class PipelineRun:
    """What a pipeline run did. ``value()`` loads the pipeline function's result."""

    run_id: str
    pipeline: str
    status: str
    steps: dict[str, StepOutcome]
    result: Any
    error: str | None
    settings: Settings
    environment: str | None = None  # the interpreter the steps ran under, when not this one (a built env)

    @property
    def ran(self) -> list[str]:
        return [n for n, s in self.steps.items() if s.status == service.RAN]

    @property
    def cached(self) -> list[str]:
        return [n for n, s in self.steps.items() if s.status == service.CACHED]

    def value(self) -> Any:
        """The pipeline function's return value, with step outputs loaded (hash-verified)."""
        from keel.artifacts.blobs import BlobStore
        from keel.pipelines.worker import decode_argument

        return None if self.result is None else decode_argument(self.result, BlobStore(self.settings.artifact_uri))

    def output(self, step: str, index: int = 0) -> Any:
        """One step's output value."""
        from keel.artifacts.blobs import BlobStore

        out = self.steps[step].outputs[index]
        data = BlobStore(self.settings.artifact_uri).get_bytes(out["sha256"], name=f"{step}[{index}]")
        return values.decode(out["kind"], data)


def run_pipeline(pipe: Pipeline, params: dict[str, Any], *, executor: str = "inprocess", cache: bool = True,
                 settings: Settings | None = None, replay_of: str | None = None,
                 executor_options: dict[str, Any] | None = None, root: Path | None = None) -> PipelineRun:
    """Run ``pipe`` with ``params`` (defaults filled in); raises PipelineFailed when a step fails.

    ``root``: the project root (default: the git work tree or folder of the pipeline file).
    """
    from keel.tracking.fluent import client_for
    from keel.tracking.source import _resolve as source_of  # the run's code is the pipeline file's

    if executor not in EXECUTORS:  # before any run is recorded
        raise InvalidInput(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    client = client_for(settings)
    settings = client.settings
    blobs = client.ctx.blobs
    file = Path(inspect.getsourcefile(pipe.fn) or "").resolve()
    from keel.pipelines.loader import project_root

    project = Project(root or project_root(file))
    params = pipe.resolve_params(params)
    _check_plain(pipe, params)
    datasets = {name: stage_dataset(blobs, settings, params[name], name) for name in pipe.datasets}
    graph = pipe.trace(params)
    files = project_files(file, project, pipe.fn.__module__)
    lock_text, lock_sha = environment_lock(files)
    record = {
        "keel_replay": 1, "pipeline": pipe.name, "function": pipe.fn.__qualname__,
        "file": project.relative(file), "experiment": pipe.experiment,
        "sources": {project.relative(p): blobs.put_bytes(project.source(p))[0] for p in files},
        "params": params, "datasets": {k: _public(d) for k, d in datasets.items()},
        "lock": lock_text, "lock_sha256": lock_sha, "executor": executor, "python": sys.version.split()[0],
    }
    record_text = json.dumps(record, indent=2, sort_keys=True)
    record_sha, _ = blobs.put_bytes(record_text.encode())

    source = source_of(str(file))
    run = client.create_run(pipe.experiment, name=pipe.name, source=source, tags={
        TAG_PIPELINE: pipe.name, "keel.pipeline.file": record["file"], "keel.pipeline.executor": executor,
        "keel.pipeline.replay_record": record_sha, **({"keel.pipeline.replay_of": replay_of} if replay_of else {}),
    })
    client.log_params(run.id, {k: _param_text(v) for k, v in params.items()})
    for name, d in datasets.items():
        if d["filename"].lower().endswith(_TABLE_SUFFIXES):
            client.log_dataset(run.id, d["path"], name=name, context="pipeline")
    client.log_text(run.id, record_text, "pipeline/replay.json")
    service.start_pipeline_run(client.ctx, run_id=run.id, pipeline=pipe.name, file=record["file"],
                               params=params, datasets=record["datasets"], record_sha256=record_sha,
                               lock_sha256=lock_sha, executor=executor, replay_of=replay_of)

    functions = {node.id: node.step.fn for node in graph.nodes.values()}
    options = dict(executor_options or {})
    if executor == "inprocess":
        options["functions"] = functions
    try:
        runner = get_executor(executor, settings=settings, **options)
    except BaseException as exc:  # e.g. no Ray cluster to connect to: the run ends FAILED, not RUNNING forever
        error = f"{type(exc).__name__}: {exc}"
        client.set_tags(run.id, {"keel.pipeline.error": error[:5000]})
        service.finish_pipeline_run(client.ctx, run.id, RunStatus.FAILED, error=error, outputs=None)
        client.end_run(run.id, RunStatus.FAILED)
        raise
    state = _Run(client, run.id, pipe, graph, datasets, project, lock_sha, cache, runner)
    status, error = RunStatus.FINISHED, None
    try:
        state.execute()
        error = state.error
        status = RunStatus.FAILED if error else RunStatus.FINISHED
    except KeyboardInterrupt:
        status, error = RunStatus.KILLED, "interrupted"
        raise
    except BaseException as exc:
        status, error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
        raise
    finally:
        runner.close()
        result = _result_ref(graph.result, state.outcomes) if status == RunStatus.FINISHED else None
        if error:
            client.set_tags(run.id, {"keel.pipeline.error": error[:5000]})
        service.finish_pipeline_run(client.ctx, run.id, status, error=error, outputs=result)
        client.end_run(run.id, status)
    outcome = PipelineRun(run.id, pipe.name, status, state.outcomes, result, error, settings)
    if error:
        raise PipelineFailed(f"pipeline {pipe.name!r} failed: {error} (run {run.id})", outcome)
    return outcome


def run_file(path: str | Path, params: dict[str, Any] | None = None, *, pipeline: str | None = None,
             executor: str = "inprocess", cache: bool = True, settings: Settings | None = None,
             replay_of: str | None = None, executor_options: dict[str, Any] | None = None) -> PipelineRun:
    """Load a pipeline file (fresh: edited code is the code that runs) and run its pipeline."""
    from keel.pipelines.loader import find_pipeline, load_file

    pipe = find_pipeline(load_file(Path(path)), pipeline)
    return run_pipeline(pipe, dict(params or {}), executor=executor, cache=cache, settings=settings,
                        replay_of=replay_of, executor_options=executor_options)


def parse_params(pipe: Pipeline, pairs: list[str]) -> dict[str, Any]:
    """``["C=0.5", "name=x"]`` -> values typed like the parameters' defaults (JSON otherwise)."""
    defaults = pipe.defaults()
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--param expects NAME=VALUE, got {pair!r}")
        default = defaults.get(key)
        try:
            if isinstance(default, bool):
                lowered = text.strip().lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError("expected true or false")
                params[key] = lowered in ("true", "1", "yes")
            elif isinstance(default, int):
                params[key] = int(text)
            elif isinstance(default, float):
                params[key] = float(text)
            elif isinstance(default, str) or key in pipe.datasets:
                params[key] = text
            else:
                try:
                    params[key] = json.loads(text)
                except ValueError:
                    params[key] = text
        except ValueError as exc:
            raise InvalidInput(f"--param {key}={text!r}: expected a value of type {type(default).__name__} like "
                               f"its default {default!r} ({exc})") from None
    return params


class _Run:
    """The scheduling loop of one pipeline run."""

    def __init__(self, client: Any, run_id: str, pipe: Pipeline, graph: Graph, datasets: dict[str, Any],
                 project: Project, lock_sha: str, use_cache: bool, executor: Any) -> None:
        self.client, self.run_id, self.pipe, self.graph = client, run_id, pipe, graph
        self.datasets, self.project, self.lock_sha = datasets, project, lock_sha
        self.use_cache, self.executor = use_cache, executor
        self.outcomes: dict[str, StepOutcome] = {}
        self.error: str | None = None
        self._code: dict[int, dict[str, str]] = {}

    def execute(self) -> None:
        pending = list(self.graph.nodes)
        running: dict[Future[StepResult], tuple[Node, str, str]] = {}
        while True:
            progressed = True
            while progressed and self.error is None:
                progressed = False
                for node_id in list(pending):
                    node = self.graph.nodes[node_id]
                    if not all(u in self.outcomes and self.outcomes[u].status in (service.RAN, service.CACHED)
                               for u in node.upstream()):
                        continue
                    pending.remove(node_id)
                    progressed = True
                    submitted = self._start(node)
                    if submitted is not None:
                        running[submitted[0]] = (node, submitted[1], submitted[2])
                    if self.error is not None:
                        break
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                node, key, child = running.pop(future)
                self._finish(node, key, child, future.result())
        for node_id in pending:  # never started because an upstream step failed
            self.outcomes[node_id] = StepOutcome(node_id, "not run", None, "")

    def _start(self, node: Node) -> tuple[Future[StepResult], str, str] | None:
        """Cache hit: record it and return None. Otherwise create the child run and submit the task."""
        blobs = self.client.ctx.blobs
        refs, key_inputs, consts = {}, {}, {}
        for name, value in node.arguments.items():
            refs[name], key_inputs[name] = self._ref(node, name, value)
            if not _has_handle(value):
                consts[name] = value
        key = cache_key(step=node.step.name, code=self._code_of(node), inputs=key_inputs, params={},
                        env=self.lock_sha, outputs=node.step.outputs)
        tags = {TAG_PIPELINE_RUN: self.run_id, "keel.step": node.step.name, "keel.step.cache_key": key}
        if self.use_cache and node.step.cache:
            hit = service.cache_lookup(self.client.ctx, key)
            if hit is not None and all(blobs.exists(o["sha256"]) for o in hit[0]):
                outputs, source_run = hit
                child = self.client.create_run(self.pipe.experiment, name=node.id, parent_run_id=self.run_id,
                                               tags={**tags, "keel.step.cached": "true",
                                                     "keel.step.cached_from": source_run})
                self.client.end_run(child.id, RunStatus.FINISHED)
                service.record_step(self.client.ctx, self.run_id, node.id, run_id=child.id, cache_key=key,
                                    status=service.CACHED, outputs=outputs)
                self.outcomes[node.id] = StepOutcome(node.id, service.CACHED, child.id, key, outputs,
                                                     cached_from=source_run)
                return None
        child = self.client.create_run(self.pipe.experiment, name=node.id, parent_run_id=self.run_id,
                                       tags={**tags, "keel.step.cached": "false"})
        loggable = {k: _param_text(v) for k, v in consts.items() if _short_json(v)}
        if loggable:
            self.client.log_params(child.id, loggable)
        self.client.flush()  # another process logs to this run next
        step_fn = node.step.fn
        module = sys.modules.get(step_fn.__module__)
        attr = next((k for k, v in vars(module).items() if v is node.step), step_fn.__name__) if module else \
            step_fn.__name__
        task = StepTask(node=node.id, module=step_fn.__module__, attr=attr,
                        pipeline_file=str(Path(inspect.getsourcefile(self.pipe.fn) or "").resolve()),
                        pipeline_module=self.pipe.fn.__module__, sys_path=[p for p in sys.path if p],
                        arguments=refs, run_id=child.id, outputs=node.step.outputs,
                        resources=node.step.resources.to_dict())
        try:
            future = self.executor.submit(task)
        except KeelError as exc:  # refused at once (e.g. asks for more than any node has)
            self._finish(node, key, child.id, StepResult(node.id, False, error=f"{type(exc).__name__}: {exc}"))
            return None
        return future, key, child.id

    def _finish(self, node: Node, key: str, child: str, result: StepResult) -> None:
        if result.log:
            try:
                self.client.log_artifact(child, result.log, "logs/step.log")
            except (OSError, KeelError):
                pass  # the log is a convenience; the result is what counts
        if result.ok:
            service.record_step(self.client.ctx, self.run_id, node.id, run_id=child, cache_key=key,
                                status=service.RAN, outputs=result.outputs, cache=node.step.cache)
            self.client.end_run(child, RunStatus.FINISHED)
            self.outcomes[node.id] = StepOutcome(node.id, service.RAN, child, key, result.outputs)
            return
        error = f"step {node.id!r} failed: {result.error}"
        self.client.set_tags(child, {"keel.step.error": (result.error or "")[:5000]})
        if result.traceback:
            self.client.log_text(child, result.traceback, "logs/traceback.txt")
        service.record_step(self.client.ctx, self.run_id, node.id, run_id=child, cache_key=key,
                            status=service.FAILED, outputs=[], error=result.error)
        self.client.end_run(child, RunStatus.FAILED)
        self.outcomes[node.id] = StepOutcome(node.id, service.FAILED, child, key, error=result.error)
        if self.error is None:
            self.error = error

    def _code_of(self, node: Node) -> dict[str, str]:
        code = self._code.get(id(node.step))
        if code is None:
            code = self._code[id(node.step)] = code_fingerprint(node.step.fn, self.project)
        return code

    def _ref(self, node: Node, name: str, value: Any) -> tuple[Any, Any]:
        """(reference the worker decodes, what the cache key sees) of one argument value."""
        if isinstance(value, Output):
            out = self.outcomes[value.node].outputs[value.index]
            return ({"@": "blob", "kind": out["kind"], "sha256": out["sha256"], "name": f"{value.node}[{value.index}]"},
                    {"output": out["sha256"]})
        if isinstance(value, DataInput):
            d = self.datasets[value.name]
            return {"@": "data", "path": d["path"]}, {"data": d["sha256"]}
        if _has_handle(value):
            if isinstance(value, dict):
                pairs = {k: self._ref(node, f"{name}.{k}", v) for k, v in value.items()}
                return ({"@": "dict", "items": {k: p[0] for k, p in pairs.items()}},
                        {"dict": {k: p[1] for k, p in pairs.items()}})
            pairs_list = [self._ref(node, f"{name}[{i}]", v) for i, v in enumerate(value)]
            tag = "tuple" if isinstance(value, tuple) else "list"
            return {"@": tag, "items": [p[0] for p in pairs_list]}, {tag: [p[1] for p in pairs_list]}
        kind, data = values.encode(value)
        sha, _ = self.client.ctx.blobs.put_bytes(data)
        seen = json.loads(data) if kind == "json" else {"sha256": sha}
        return {"@": "blob", "kind": kind, "sha256": sha, "name": f"{node.id}.{name}"}, {"value": seen}


def stage_dataset(blobs: Any, settings: Settings, uri: Any, name: str) -> dict[str, Any]:
    """Store a dataset file content-addressed and give steps a local copy named like the original."""
    import tempfile

    if not isinstance(uri, (str, Path)):
        raise InvalidInput(f"dataset parameter {name!r} must be a file path or fsspec URL, got "
                           f"{type(uri).__name__}")
    text = str(uri)
    if "://" in text and not text.startswith("file://"):
        import fsspec

        with tempfile.TemporaryDirectory(prefix="keel-data-") as tmp:
            local = Path(tmp) / Path(text.rstrip("/")).name
            try:
                fsspec.open(text, "rb").fs.get(text, str(local))
            except FileNotFoundError:
                raise InvalidInput(f"dataset {name!r}: {text} does not exist") from None
            sha, size = blobs.put_file(local)
        filename, shown = local.name, text
    else:
        path = Path(text.removeprefix("file://")).expanduser()
        if not path.is_file():
            raise InvalidInput(f"dataset {name!r}: {path} is not a file")
        sha, size = blobs.put_file(path)
        filename, shown = path.name, str(path.resolve())
    target = settings.home / "cache" / "pipelines" / "data" / sha / filename
    if not target.is_file():
        blobs.copy_to(sha, target, name=f"dataset {name}")
    return {"uri": shown, "sha256": sha, "size": size, "filename": filename, "path": str(target)}


def environment_lock(files: list[Path]) -> tuple[str, str]:
    """The lock of the packages the pipeline's code imports (and keel), and its hash.

    The source commit is left out: code is covered file by file, so a new
    commit that does not touch a step's code must not rerun it.
    """
    from keel.envs.lock import capture, imports_of_source

    lock = capture(modules=sorted(imports_of_source(files) | {"keel"}) if files else ["keel"])
    text = lock.to_text()
    return text, sha256_text(text)


def _has_handle(value: Any) -> bool:
    if isinstance(value, (Output, DataInput)):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_handle(v) for v in value)
    if isinstance(value, dict):
        return any(_has_handle(v) for v in value.values())
    return False


def _result_ref(result: Any, outcomes: dict[str, StepOutcome]) -> Any:
    if isinstance(result, Output):
        out = outcomes[result.node].outputs[result.index]
        return {"@": "blob", "kind": out["kind"], "sha256": out["sha256"], "name": f"{result.node}[{result.index}]"}
    if isinstance(result, (list, tuple)):
        return {"@": "tuple" if isinstance(result, tuple) else "list",
                "items": [_result_ref(r, outcomes) for r in result]}
    if isinstance(result, dict):
        return {"@": "dict", "items": {str(k): _result_ref(v, outcomes) for k, v in result.items()}}
    if isinstance(result, DataInput):
        return {"@": "value", "value": result.name}
    return {"@": "value", "value": result if _short_json(result) else repr(result)}


def _check_plain(pipe: Pipeline, params: dict[str, Any]) -> None:
    for key, value in params.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"pipeline {pipe.name!r}: parameter {key!r} must be plain data (str, int, float, "
                               f"bool, list, dict) so that it can be recorded and replayed; got "
                               f"{type(value).__name__}") from None


def _public(d: dict[str, Any]) -> dict[str, Any]:
    return {k: d[k] for k in ("uri", "sha256", "size", "filename")}


def _param_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _short_json(value: Any) -> bool:
    try:
        return len(json.dumps(value)) <= 500
    except (TypeError, ValueError):
        return False
