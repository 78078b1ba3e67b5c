"""Kubernetes Jobs: the shared Job shape, and the ``job`` deploy target that batch-scores a file.

``keel deploy MODEL_URI --target job --stage S --input URI --output URI``
writes one ``batch/v1`` Job that runs ``keel score`` once over the input and
writes the scored Parquet file to the output. The store settings come from
the Secret ``keel-store``, as for the kubernetes target; the input and
output are fsspec URLs the pod can reach (``s3://...``, a mounted path).

:func:`job_document` is the Job every keel batch workload uses (the pipeline
executor's step Jobs too): restartPolicy Never, a non-root locked-down pod, a
writable KEEL_HOME and /tmp on emptyDirs (the root filesystem is read-only),
a retry budget for infrastructure failures only, and clean-up after a week.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from keel.deploy import kubernetes as k8s
from keel.deploy.base import RUN_AS_UID, DeploySpec, Plan, Target
from keel.deploy.profiles import Profile
from keel.deploy.render import dump_yaml, env_list, header, node_selector, resources
from keel.errors import InvalidInput

CONTAINER = "main"
# A failing keel command exits 1 (bad input, a failing step): rerunning it gives the same answer, so the
# Job fails at once. Other exits (137 after an OOM kill, a lost node) are retried up to BACKOFF_LIMIT times.
EXIT_FAILED = 1
BACKOFF_LIMIT = 2
TTL_AFTER_FINISHED = 7 * 24 * 3600  # finished Jobs and their pods are cleaned up after a week
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_SUFFIXES = (".csv", ".parquet", ".pq")


def security_context() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "runAsUser": RUN_AS_UID, "runAsGroup": RUN_AS_UID, "capabilities": {"drop": ["ALL"]}}


def thread_env(profile: Profile) -> dict[str, str]:
    """BLAS/OpenMP pools sized to the CPU request: a pod otherwise starts one thread per node core."""
    if not profile.cpu:
        return {}
    from keel.deploy.profiles import cpu_millicores

    threads = str(max(1, math.floor(cpu_millicores(profile.cpu) / 1000)))
    return {name: threads for name in _THREAD_VARS}


def job_document(*, name: str, labels: Mapping[str, str], container: dict[str, Any], profile: Profile,
                 annotations: Mapping[str, str] | None = None, init: list[dict[str, Any]] | None = None,
                 volumes: list[dict[str, Any]] | None = None, deadline_s: int | None = None) -> dict[str, Any]:
    """A ``batch/v1`` Job running ``container`` once, with the profile's resources and placement.

    ``container`` gets the name ``main``, the profile's resources, the locked-down security context,
    the store Secret and writable KEEL_HOME and /tmp; its own env comes before the profile's env.
    """
    container = {"name": CONTAINER, **{k: v for k, v in container.items() if k != "name"}}
    env = {"KEEL_HOME": k8s.HOME_DIR, **thread_env(profile), **{e["name"]: e["value"] for e in
                                                                   container.get("env", [])}, **profile.env}
    container["env"] = env_list(env)
    container["envFrom"] = [{"secretRef": {"name": k8s.STORE_SECRET}}]
    wanted = resources(profile)
    if wanted:
        container["resources"] = wanted
    container["securityContext"] = security_context()
    container["volumeMounts"] = [{"name": "keel-home", "mountPath": k8s.HOME_DIR}, {"name": "tmp", "mountPath": "/tmp"},
                                 *container.get("volumeMounts", [])]
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_UID, "runAsGroup": RUN_AS_UID,
                            "fsGroup": RUN_AS_UID, "seccompProfile": {"type": "RuntimeDefault"}},
        "automountServiceAccountToken": False,
    }
    if init:
        pod["initContainers"] = init
    pod["containers"] = [container]
    pod["volumes"] = [{"name": "keel-home", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}, *(volumes or [])]
    selector = node_selector(profile)
    if selector:
        pod["nodeSelector"] = selector
    if profile.tolerations:
        pod["tolerations"] = [dict(t) for t in profile.tolerations]
    spec: dict[str, Any] = {
        "backoffLimit": BACKOFF_LIMIT,
        "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                                  "values": [EXIT_FAILED]}},
            # An evicted or preempted pod is not the workload's fault: it does not use up a retry.
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]},
        "ttlSecondsAfterFinished": TTL_AFTER_FINISHED,
    }
    if deadline_s is not None:
        spec["activeDeadlineSeconds"] = deadline_s
    spec["template"] = {"metadata": {"labels": dict(labels)}, "spec": pod}
    metadata: dict[str, Any] = {"name": name, "labels": dict(labels)}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


def _uri(spec: DeploySpec, key: str) -> str:
    value = spec.options.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"--target job scores a file: it needs --input URI and --output URI (fsspec URLs the pod "
                           f"can reach, e.g. s3://bucket/in.parquet); --{key} is missing")
    return value.strip()


def score_args(spec: DeploySpec, model: str) -> list[str]:
    args = ["score", model, "--input", _uri(spec, "input"), "--output", _uri(spec, "output")]
    if spec.options.get("batch_size") is not None:
        args += ["--batch-size", str(spec.options["batch_size"])]
    return args


def manifest(spec: DeploySpec) -> dict[str, Any]:
    source, _ = k8s.bundle_source(spec)
    parts = k8s.pod_parts(spec)
    volumes = [v for v in parts["volumes"] if v["name"] != "keel-home"]
    mounts = [m for m in parts["container"]["volumeMounts"] if m["name"] != "keel-home"]
    # With the store at hand `keel score` fetches and hash-checks the bundle itself, and its audit event
    # then names the model version rather than a folder; no init step is needed.
    if source == "fetch":
        model, volumes, mounts = spec.model_uri, [], []
    else:
        model = k8s.IMAGE_BUNDLE if source == "image" else f"{k8s.MODELS_DIR}/bundle"
    container = {"image": k8s.image(spec), "imagePullPolicy": "IfNotPresent",
                 "command": ["python", "-m", "keel.cli.main"], "args": score_args(spec, model),
                 "env": env_list({"KEEL_USER": "keel-score"}), "volumeMounts": mounts}
    return job_document(name=spec.name, labels=spec.labels, container=container, profile=spec.profile,
                        volumes=volumes)


class JobTarget(Target):
    """A batch-scoring Job: ``keel score`` over ``--input`` into ``--output`` with the stage's resources."""

    name = "job"
    gives_gpu = True

    def check(self, spec: DeploySpec) -> None:
        super().check(spec)
        k8s.bundle_source(spec)
        for key, suffixes in (("input", _SUFFIXES), ("output", (".parquet", ".pq"))):
            if not _uri(spec, key).lower().endswith(suffixes):
                raise InvalidInput(f"--{key} must name a {' or '.join(suffixes)} file, got {_uri(spec, key)!r}")
        batch = spec.options.get("batch_size")
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise InvalidInput(f"--batch-size must be a whole number of rows >= 1, got {batch!r}")

    def plan(self, spec: DeploySpec) -> Plan:
        notes = [f"kubectl apply -f {{out}}/{spec.name}-job.yaml",
                 f"kubectl wait --for=condition=complete job/{spec.name} --timeout=24h"]
        notes.insert(0, f"create the Secret {k8s.STORE_SECRET} with KEEL_STORE_URI and KEEL_ARTIFACT_URI first "
                        f"(and the credentials for {_uri(spec, 'input')} and {_uri(spec, 'output')})")
        return Plan({f"{spec.name}-job.yaml": dump_yaml([manifest(spec)], header(spec))}, notes=tuple(notes))
