"""Pipeline steps as Kubernetes Jobs, with each step's resources over the stage's profile.

Two ways in:

- ``keel pipeline jobs FILE --stage S --out DIR`` renders, runs nothing:
  a ConfigMap with the pipeline's sources (the file and the project modules
  it imports), one ``batch/v1`` Job per step, ``run-order.txt`` and ``run.sh``
  (apply the Jobs one after another with kubectl, waiting for each). Each
  Job runs ``python -m keel.pipelines.executors.kubernetes step FILE STEP``:
  the pipeline up to that step, with the step cache on, so the steps before
  it come from the cache the earlier Jobs filled in the shared store and
  only its own step runs in its pod. Run out of order, a Job still gives the
  right result: it computes what is missing itself, with its own resources.
- ``--executor kubernetes`` (:class:`KubernetesExecutor`) for ``keel
  pipeline run``: each step task becomes a Job on the cluster of the current
  kubeconfig (the ``k8s`` extra), driven by the local runner.

A step's ``@keel.step(resources=...)`` wins over the stage's
``[profiles.STAGE]``, which fills in what the step leaves at its default:
``cpus`` -> cpu request, ``memory`` -> memory request and limit, ``gpus`` ->
``nvidia.com/gpu`` limits, ``timeout_s`` -> ``activeDeadlineSeconds``;
node selector, tolerations and env come from the profile. The store
settings come from the Secret ``keel-store``, as for the deploy targets.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from keel.deploy.base import Plan, deployment_name
from keel.deploy.profiles import Profile, cpu_millicores, memory_bytes
from keel.errors import InvalidInput, NotFound

SOURCES_DIR = "/app/pipeline"
CONFIGMAP_LIMIT = 1_000_000  # a ConfigMap holds at most 1 MiB, keys and all
ENTRY = ["python", "-m", "keel.pipelines.executors.kubernetes"]
_KEY = re.compile(r"[^-._a-zA-Z0-9]")


def step_profile(resources: Any, profile: Profile, where: str) -> Profile:
    """``profile`` with what the step asks for put over it (the step wins; limits never below requests).

    A value equal to ``@keel.step``'s default (1 cpu, 0 gpus, no memory) cannot be told from one that
    was not given, so the profile's value applies then.
    """
    from keel.pipelines.dsl import Resources

    default = Resources()
    values: dict[str, Any] = {}
    if resources.cpus not in (default.cpus, 0):
        millis = resources.cpus * 1000
        if millis != int(millis):
            raise InvalidInput(f"{where}: resources['cpus'] = {resources.cpus:g} is finer than Kubernetes' "
                               f"millicore (0.001); round it, e.g. {math.ceil(millis) / 1000:g}")
        values["cpu"] = _cores(int(millis))
        if profile.cpu_limit and cpu_millicores(profile.cpu_limit) < int(millis):
            values["cpu_limit"] = values["cpu"]
    if resources.memory is not None:
        values["memory"] = _bytes(resources.memory)
        memory_bytes(values["memory"], what=f"{where}: resources['memory']")
        if profile.memory_limit and memory_bytes(profile.memory_limit) < resources.memory:
            values["memory_limit"] = values["memory"]
    if resources.gpus != default.gpus:
        if resources.gpus != int(resources.gpus):
            raise InvalidInput(f"{where}: resources['gpus'] = {resources.gpus:g}, but Kubernetes gives whole GPUs "
                               f"(nvidia.com/gpu); ask for {math.ceil(resources.gpus)}")
        if resources.gpus > 64:
            raise InvalidInput(f"{where}: resources['gpus'] = {resources.gpus:g} is more than a node has (64 at most)")
        values["gpu"] = int(resources.gpus)
    return replace(profile, **values)


def _cores(millis: int) -> str:
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def _bytes(count: int) -> str:
    for suffix, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if count % size == 0:
            return f"{count // size}{suffix}"
    return str(count)


def job_names(prefix: str, nodes: list[str]) -> dict[str, str]:
    """node -> a unique Job name (a DNS label of at most 63, leaving room for the pods' suffix)."""
    names: dict[str, str] = {}
    for node in nodes:
        base = f"{prefix}-{deployment_name(node)}"[:52].rstrip("-")
        name, n = base, 1
        while name in names.values():
            n += 1
            name = f"{base[:49]}-{n}"
        names[node] = name
    return names


def sources_configmap(name: str, files: Mapping[str, bytes], labels: Mapping[str, str]) -> dict[str, Any]:
    """The pipeline's sources as a ConfigMap; keys are flattened paths, ``items`` puts them back in folders."""
    data: dict[str, str] = {}
    for rel, text in sorted(files.items()):
        key = _KEY.sub("_", rel.replace("/", "__"))
        if key in data:
            raise InvalidInput(f"two source files map to the ConfigMap key {key!r}; rename one of them ({rel})")
        try:
            data[key] = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"source file {rel} is not UTF-8 text") from None
    size = sum(len(k) + len(v.encode()) for k, v in data.items())
    if size > CONFIGMAP_LIMIT:
        raise InvalidInput(f"the pipeline's sources are {size} bytes, more than a ConfigMap holds (1 MiB); bake them "
                           f"into the image instead and mount nothing")
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": dict(labels)},
            "data": data}


def source_volume(configmap: str, files: Mapping[str, bytes]) -> dict[str, Any]:
    items = [{"key": _KEY.sub("_", rel.replace("/", "__")), "path": rel} for rel in sorted(files)]
    return {"name": "sources", "configMap": {"name": configmap, "items": items}}


def step_job(*, name: str, args: list[str], image: str, profile: Profile, labels: Mapping[str, str],
             annotations: Mapping[str, str], configmap: str, files: Mapping[str, bytes],
             timeout_s: float | None) -> dict[str, Any]:
    """One step's Job: the keel entry point with the sources mounted read-only at /app/pipeline."""
    from keel.deploy.job import job_document

    container = {
        "image": image, "imagePullPolicy": "IfNotPresent", "command": list(ENTRY), "args": args,
        "workingDir": SOURCES_DIR,
        "env": [{"name": "KEEL_USER", "value": "keel-job"}, {"name": "PYTHONPATH", "value": SOURCES_DIR},
                {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],  # the sources' folder is read-only
        "volumeMounts": [{"name": "sources", "mountPath": SOURCES_DIR, "readOnly": True}],
    }
    deadline = None if timeout_s is None else max(1, math.ceil(timeout_s))
    return job_document(name=name, labels=labels, annotations=annotations, container=container, profile=profile,
                        volumes=[source_volume(configmap, files)], deadline_s=deadline)


def render_jobs(pipe: Any, params: Mapping[str, Any], *, profile: Profile, image: str | None = None,
                name: str | None = None, root: Path | None = None) -> Plan:
    """The ConfigMap, one Job per step (in dependency order), run-order.txt and run.sh; writes nothing.

    Raises InvalidInput before anything is written for a step whose resources Kubernetes cannot give.
    """
    from keel.deploy.render import dump_yaml
    from keel.pipelines.fingerprint import Project, project_files
    from keel.pipelines.loader import project_root

    prefix = deployment_name(name or pipe.name)[:30].rstrip("-")
    image = image or f"keel-pipeline-{prefix}:latest"
    params = pipe.resolve_params(dict(params))
    try:
        params_text = json.dumps(params, sort_keys=True)
    except (TypeError, ValueError):
        raise InvalidInput(f"pipeline {pipe.name!r}: parameters must be plain data to travel to the Jobs") from None
    graph = pipe.trace(params)
    file = Path(inspect.getsourcefile(pipe.fn) or "").resolve()
    project = Project(root or project_root(file))
    files = {project.relative(p): project.source(p) for p in project_files(file, project, pipe.fn.__module__)}
    entry = f"{SOURCES_DIR}/{project.relative(file)}"
    base_labels = {"app.kubernetes.io/name": prefix, "app.kubernetes.io/managed-by": "keel",
                   "keel.dev/pipeline": _label(pipe.name), "keel.dev/stage": profile.stage}
    configmap = f"{prefix}-sources"
    names = job_names(prefix, list(graph.nodes))
    documents: dict[str, bytes] = {}
    order: list[str] = []
    for i, (node_id, node) in enumerate(graph.nodes.items(), start=1):
        where = f"step {node_id!r}"
        merged = step_profile(node.step.resources, profile, where)
        labels = {**base_labels, "keel.dev/step": _label(node_id)}
        annotations = {"keel.dev/step": node_id, "keel.dev/order": str(i),
                       "keel.dev/depends-on": ",".join(names[u] for u in node.upstream())}
        job = step_job(name=names[node_id], args=["step", entry, node_id, "--pipeline", pipe.name, "--params",
                                                  params_text], image=image, profile=merged, labels=labels,
                       annotations=annotations, configmap=configmap, files=files,
                       timeout_s=node.step.resources.timeout_s)
        rel = f"{i:02d}-{names[node_id]}.yaml"
        documents[rel] = dump_yaml([job], f"generated by keel pipeline jobs: {pipe.name}, step {node_id}, stage "
                                          f"{profile.stage}")
        order.append(rel)
    plan_files: dict[str, bytes | Path] = {
        "00-sources.yaml": dump_yaml([sources_configmap(configmap, files, base_labels)],
                                     f"generated by keel pipeline jobs: {pipe.name} sources"),
        **documents,
        "run-order.txt": "".join(f"{rel}\n" for rel in ["00-sources.yaml", *order]).encode(),
        "run.sh": _run_script(order, [names[n] for n in graph.nodes]).encode(),
    }
    notes = ["create the Secret keel-store with KEEL_STORE_URI and KEEL_ARTIFACT_URI (a shared store) first",
             f"sh {{out}}/run.sh   # applies {len(order)} Jobs in order, each after the one before succeeded"]
    for ds in pipe.datasets:
        if "://" not in str(params[ds]):
            notes.append(f"dataset parameter {ds!r} = {params[ds]!r} is a local path: the pods read it, so pass a "
                         f"URL they can reach (--param {ds}=s3://...) or a path on a volume")
    return Plan(plan_files, executable=frozenset({"run.sh"}), notes=tuple(notes))


def write_jobs(pipe: Any, params: Mapping[str, Any], settings: Any, *, out: str | Path, stage: str | None = None,
               image: str | None = None, name: str | None = None) -> dict[str, Any]:
    """Render, validate (with ``keel[deploy]`` installed) and write the Jobs of ``pipe`` into ``out``.

    Every check (profile, step resources, manifests, a non-empty ``out``) runs before anything is written.
    """
    from keel.deploy.files import check_out, content, write_plan
    from keel.deploy.profiles import profile_for

    profile = profile_for(settings.profiles, stage)
    folder = check_out(out)
    plan = render_jobs(pipe, params, profile=profile, image=image, name=name)
    validated = _validate(plan)
    hashes = write_plan(plan, folder)
    jobs = [rel for rel in content(plan.files["run-order.txt"]).decode().split() if rel != "00-sources.yaml"]
    return {"pipeline": pipe.name, "stage": profile.stage, "out": str(folder), "jobs": jobs, "files": hashes,
            "validated": validated, "notes": [n.replace("{out}", str(folder)) for n in plan.notes]}


def _validate(plan: Plan) -> bool:
    """Check every manifest against Kubernetes' schemas when kubernetes-validate is installed (as deploys do)."""
    try:
        import kubernetes_validate  # noqa: F401
    except ImportError:
        return False
    from keel.deploy.files import content
    from keel.deploy.validate import validate_yaml

    for rel, source in plan.files.items():
        if rel.endswith(".yaml"):
            validate_yaml(content(source))
    return True


def _run_script(files: list[str], jobs: list[str]) -> str:
    lines = ["#!/bin/sh",
             "# Apply the pipeline's Jobs in dependency order; each waits for the one before to succeed.",
             "# A Job is immutable: an earlier run's Job of the same name is deleted first.",
             "set -eu", 'cd "$(dirname "$0")"', "kubectl apply -f 00-sources.yaml",
             "wait_job() {", "  while :; do",
             "    done_=$(kubectl get job \"$1\" -o jsonpath='{.status.succeeded}')",
             "    failed=$(kubectl get job \"$1\" -o jsonpath='{.status.conditions[?(@.type==\"Failed\")].status}')",
             "    [ \"$done_\" = 1 ] && return 0",
             "    if [ \"$failed\" = True ]; then",
             "      echo \"job $1 failed:\" >&2; kubectl logs \"job/$1\" --tail=40 >&2 || true; exit 1",
             "    fi", "    sleep 5", "  done", "}"]
    for rel, job in zip(files, jobs):
        lines += [f"kubectl delete job {job} --ignore-not-found --wait=true", f"kubectl apply -f {rel}",
                  f"wait_job {job}"]
    return "\n".join(lines) + "\n"


def _label(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.")
    return value or "pipeline"


# --- on a cluster: --executor kubernetes -------------------------------------------------------------------


RESULT_MARK = "KEEL_STEP_RESULT "  # the task command's last stdout line: the StepResult, read from the pod's log
def pod_blocker(pods: Any) -> str | None:
    """The first container of ``pods`` (the client's V1Pod objects) waiting for a reason it never leaves."""
    for pod in pods:
        status = getattr(pod, "status", None)
        for container in (getattr(status, "container_statuses", None) or []) + \
                (getattr(status, "init_container_statuses", None) or []):
            waiting = getattr(container.state, "waiting", None)
            if waiting is not None and waiting.reason in _HOPELESS:
                return f"{container.name}: {waiting.reason}: {waiting.message or ''}".strip().rstrip(":")
    return None


_API_RETRIES = 5  # consecutive failed status reads before a step is given up
# Waiting reasons a pod never leaves by itself (kubelet retries them with back-off, forever).
_HOPELESS = frozenset({"ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"})
_STAGED_DATA = ("cache", "pipelines", "data")  # where the runner stages a dataset: HOME/cache/pipelines/data/SHA/NAME


class KubernetesExecutor:
    """Each step task becomes a Job on the cluster of the current kubeconfig; the local runner drives them.

    The pods read their inputs from and write their outputs to the shared store named by the Secret
    ``keel-store``, so the store must be one that both this machine and the cluster reach (PostgreSQL and
    ``s3://``...); the pipeline's sources travel in a ConfigMap. Needs ``pip install 'keel[k8s]'``.
    Options: ``stage`` (resource profile), ``image``, ``namespace`` (default: the kubeconfig context's).
    """

    name = "kubernetes"

    def __init__(self, settings: Any, stage: str | None = None, image: str | None = None,
                 namespace: str | None = None, poll_s: float = 5.0, **_: object) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from keel.deploy.profiles import profile_for

        self.settings, self.profile, self.poll_s = settings, profile_for(settings.profiles, stage), poll_s
        self.image, self.namespace = image, namespace
        self._api: tuple[Any, Any] | None = None
        self._configmaps: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="keel-k8s-step")

    def _connect(self) -> tuple[Any, Any]:
        """(BatchV1Api, CoreV1Api) on first use; a refusal there fails the step and so the run, recorded."""
        if self._api is not None:
            return self._api
        from keel.errors import ConfigError

        for what, uri in (("metadata store", self.settings.store_uri), ("artifact store", self.settings.artifact_uri)):
            text = str(uri)
            if text.startswith(("sqlite:", "file://")) or "://" not in text:
                raise ConfigError(f"--executor kubernetes runs steps in pods, which cannot reach this machine's "
                                  f"{what} ({text}); use a shared store (KEEL_STORE_URI=postgresql://..., "
                                  f"KEEL_ARTIFACT_URI=s3://...) that the Secret keel-store also names, or write "
                                  f"the Jobs with `keel pipeline jobs FILE --out DIR` and apply them")
        try:
            from kubernetes import client, config
        except ImportError:
            raise ConfigError("--executor kubernetes needs the Kubernetes client: pip install 'keel[k8s]'") from None
        try:
            config.load_kube_config()
            current = config.list_kube_config_contexts()[1] or {}
        except Exception as exc:  # noqa: BLE001 - any kubeconfig problem is the same answer
            raise ConfigError(f"--executor kubernetes: no usable kubeconfig ({exc})") from None
        self.namespace = self.namespace or current.get("context", {}).get("namespace") or "default"
        self._api = (client.BatchV1Api(), client.CoreV1Api())
        return self._api

    def render(self, task: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """(sources ConfigMap, the task's Job), pure: raises InvalidInput for resources a pod cannot get."""
        return task_job(task, profile=self.profile, image=self.image)

    def submit(self, task: Any) -> Any:
        configmap, job = self.render(task)
        self._apply(configmap, job)
        return self._pool.submit(self._wait, job["metadata"]["name"], task.node)

    def _apply(self, configmap: dict[str, Any], job: dict[str, Any]) -> None:
        batch, core = self._connect()  # first: it says why when the client is missing
        from kubernetes.client.exceptions import ApiException

        from keel.errors import ConfigError

        name = configmap["metadata"]["name"]
        try:
            if name not in self._configmaps:
                try:
                    core.create_namespaced_config_map(self.namespace, configmap)
                except ApiException as exc:
                    if exc.status != 409:  # the same sources, by their hash in the name, are already there
                        raise
                self._configmaps.add(name)
            batch.create_namespaced_job(self.namespace, job)
        except ApiException as exc:
            raise ConfigError(f"the cluster refused Job {job['metadata']['name']} in namespace {self.namespace}: "
                              f"{exc.status} {exc.reason}: {(exc.body or '')[:500]}") from None

    def _wait(self, job: str, node: str) -> Any:
        import time

        from keel.pipelines.executors.base import StepResult

        failures = 0
        while True:
            try:
                status = self._connect()[0].read_namespaced_job_status(job, self.namespace).status
                failures = 0
            except Exception as exc:  # noqa: BLE001 - an API hiccup: try again a few times before giving up
                failures += 1
                if failures >= _API_RETRIES:
                    return StepResult(node, False, error=f"lost track of Job {job}: {type(exc).__name__}: {exc}")
                time.sleep(self.poll_s)
                continue
            done = {c.type for c in (status.conditions or []) if c.status == "True"} & {"Complete", "Failed"}
            if done:
                break
            stuck = self._stuck(job)
            if stuck:  # a pod that can never start produces no Job condition: do not wait forever
                return StepResult(node, False, error=f"Job {job} cannot start: {stuck}")
            time.sleep(self.poll_s)
        log = self._log(job)
        for line in reversed(log.splitlines()):
            if line.startswith(RESULT_MARK):
                return StepResult.from_json(line[len(RESULT_MARK):])
        reasons = [f"{c.reason}: {c.message}" for c in (status.conditions or []) if c.type == "Failed"]
        return StepResult(node, False, error=f"WorkerDied: Job {job} ended without a result "
                          f"({'; '.join(reasons) or 'no reason given'}); last output: {log[-2000:] or '(none)'}")

    def _stuck(self, job: str) -> str | None:
        """Why the Job's pod can never run (an image that cannot be pulled, a bad config), or None."""
        try:
            pods = self._connect()[1].list_namespaced_pod(self.namespace, label_selector=f"job-name={job}").items
        except Exception:  # noqa: BLE001 - judged again at the next poll
            return None
        return pod_blocker(pods)

    def _log(self, job: str) -> str:
        core = self._connect()[1]
        pods = core.list_namespaced_pod(self.namespace, label_selector=f"job-name={job}").items
        if not pods:
            return ""
        newest = max(pods, key=lambda p: p.metadata.creation_timestamp)
        try:
            return core.read_namespaced_pod_log(newest.metadata.name, self.namespace, container="main",
                                                tail_lines=200)
        except Exception:  # noqa: BLE001 - a pod that never started has no log; the Job's reason says why
            return ""

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def task_job(task: Any, *, profile: Profile, image: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ConfigMap of the task's sources and the Job that runs the task in a pod (pure)."""
    import hashlib

    from keel.pipelines.dsl import Resources
    from keel.pipelines.fingerprint import Project, project_files
    from keel.pipelines.loader import project_root

    file = Path(task.pipeline_file)
    project = Project(project_root(file))
    files = {project.relative(p): project.source(p) for p in project_files(file, project, task.pipeline_module)}
    digest = hashlib.sha256(json.dumps({k: v.hex() for k, v in files.items()}, sort_keys=True).encode())
    configmap_name = f"keel-sources-{digest.hexdigest()[:16]}"
    moved = dict(vars(task))
    moved.update(pipeline_file=f"{SOURCES_DIR}/{project.relative(file)}", sys_path=[SOURCES_DIR],
                 arguments={k: _pod_paths(v) for k, v in task.arguments.items()})
    where = f"step {task.node!r}"
    resources = Resources.parse(task.resources, where)
    labels = {"app.kubernetes.io/managed-by": "keel", "keel.dev/step": _label(task.node),
              "keel.dev/stage": profile.stage, "keel.dev/run": task.run_id[:63]}
    name = f"keel-{task.run_id[:12]}-{deployment_name(task.node)}"[:52].rstrip("-")
    job = step_job(name=name, args=["task", json.dumps(moved, sort_keys=True)],
                   image=image or "keel-pipeline:latest", profile=step_profile(resources, profile, where),
                   labels=labels, annotations={"keel.dev/step": task.node}, configmap=configmap_name, files=files,
                   timeout_s=resources.timeout_s)
    configmap = sources_configmap(configmap_name, files, {"app.kubernetes.io/managed-by": "keel"})
    return configmap, job


def _pod_paths(ref: Any) -> Any:
    """Dataset references point into this machine's KEEL_HOME; in the pod they name the blob to fetch."""
    if isinstance(ref, dict) and ref.get("@") == "data":
        path = Path(ref["path"])
        if path.parent.parent.parts[-3:] == _STAGED_DATA:
            from keel.deploy.kubernetes import HOME_DIR

            sha = path.parent.name
            return {"@": "data", "path": "/".join([HOME_DIR, *_STAGED_DATA, sha, path.name]), "sha256": sha}
        return ref
    if isinstance(ref, dict) and ref.get("@") in ("list", "tuple"):
        return {**ref, "items": [_pod_paths(r) for r in ref["items"]]}
    if isinstance(ref, dict) and ref.get("@") == "dict":
        return {**ref, "items": {k: _pod_paths(r) for k, r in ref["items"].items()}}
    return ref


def run_task(text: str) -> Any:
    """In the pod: fetch the task's datasets from the blob store, run it, return its StepResult."""
    from keel.artifacts.blobs import BlobStore
    from keel.pipelines.executors.base import StepTask
    from keel.pipelines.worker import execute
    from keel.settings import Settings

    task = StepTask.from_json(text)
    settings = Settings.load()
    blobs = BlobStore(settings.artifact_uri)

    def fetch(ref: Any) -> None:
        if isinstance(ref, dict) and ref.get("@") == "data" and ref.get("sha256") and not Path(ref["path"]).exists():
            blobs.copy_to(ref["sha256"], ref["path"], name=Path(ref["path"]).name)
        elif isinstance(ref, dict) and ref.get("@") in ("list", "tuple", "dict"):
            items = ref["items"]
            for item in (items.values() if isinstance(items, dict) else items):
                fetch(item)

    for ref in task.arguments.values():
        fetch(ref)
    return execute(task, settings)


# --- in the pod ---------------------------------------------------------------------------------------------


def up_to(pipe: Any, node_id: str) -> Any:
    """A copy of ``pipe`` whose graph ends at ``node_id`` (its upstream steps and itself)."""
    from keel.pipelines.dsl import Output, Pipeline

    clone = copy.copy(pipe)

    def trace(params: Mapping[str, Any]) -> Any:
        graph = Pipeline.trace(pipe, params)
        if node_id not in graph.nodes:
            raise NotFound(f"pipeline {pipe.name!r} has no step {node_id!r}; its steps: {', '.join(graph.nodes)}")
        keep, frontier = {node_id}, [node_id]
        while frontier:
            for upstream in graph.nodes[frontier.pop()].upstream():
                if upstream not in keep:
                    keep.add(upstream)
                    frontier.append(upstream)
        graph.nodes = {k: v for k, v in graph.nodes.items() if k in keep}
        outputs = graph.nodes[node_id].step.outputs
        graph.result = Output(node_id) if outputs == 1 else tuple(Output(node_id, i) for i in range(outputs))
        return graph

    clone.trace = trace
    return clone


def run_step(file: str, node_id: str, params: Mapping[str, Any], *, pipeline: str | None = None,
             settings: Any = None) -> Any:
    """Run the pipeline in ``file`` up to ``node_id``, cache on: upstream steps are cache hits when the
    Jobs before this one ran. Returns the PipelineRun (raises PipelineFailed when a step fails)."""
    from keel.pipelines.loader import find_pipeline, load_file
    from keel.pipelines.runner import run_pipeline

    pipe = find_pipeline(load_file(Path(file)), pipeline)
    return run_pipeline(up_to(pipe, node_id), dict(params), executor="inprocess", cache=True, settings=settings)


def main(argv: list[str]) -> int:
    """``step FILE STEP [--pipeline NAME] [--params JSON]`` or ``task TASK_JSON``: exit 0, or 1 on a failure."""
    import argparse

    from keel.errors import KeelError

    parser = argparse.ArgumentParser(prog="python -m keel.pipelines.executors.kubernetes")
    commands = parser.add_subparsers(dest="command", required=True)
    step = commands.add_parser("step", help="run a pipeline up to one step (the step Jobs' command)")
    step.add_argument("file")
    step.add_argument("step")
    step.add_argument("--pipeline")
    step.add_argument("--params", default="{}")
    task = commands.add_parser("task", help="run one step task (the --executor kubernetes Jobs' command)")
    task.add_argument("task_json")
    args = parser.parse_args(argv)
    if args.command == "task":
        done = run_task(args.task_json)
        if not done.ok and done.traceback:
            sys.stderr.write(done.traceback)
        print(RESULT_MARK + done.to_json(), flush=True)
        return 0 if done.ok else 1
    try:
        result = run_step(args.file, args.step, json.loads(args.params), pipeline=args.pipeline)
    except KeelError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    print(json.dumps({"run_id": result.run_id, "step": args.step, "status": result.status,
                      "steps": {n: s.status for n, s in result.steps.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
