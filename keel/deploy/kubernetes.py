"""Kubernetes: a Deployment, a Service and (with a replica range) a HorizontalPodAutoscaler.

The pod runs ``keel serve`` from an image that has keel and the model's
libraries (``keel deploy --target docker`` builds one). The bundle comes
from one of three places (``--bundle-from``):

- ``fetch`` (default for ``models:/`` and ``runs:/`` URIs): an init container
  fetches and hash-checks it from the artifact store into a shared emptyDir;
  the store settings come from the Secret ``keel-store`` (KEEL_STORE_URI,
  KEEL_ARTIFACT_URI and any cloud credentials).
- ``pvc:CLAIM``: a PersistentVolumeClaim holding the bundle, mounted read-only.
- ``image`` (default for a bundle folder): the bundle baked into the image at
  ``/app/bundle`` by the docker target.

Everything runs as a non-root user with a read-only root filesystem.
"""

from __future__ import annotations

import re
from typing import Any

from keel.deploy.base import RUN_AS_UID, DeploySpec, Plan, Target
from keel.deploy.render import LIVE, READY, dump_yaml, env_list, header, node_selector, resources, serve_args
from keel.errors import InvalidInput

MODELS_DIR = "/models"
HOME_DIR = "/var/lib/keel"
STORE_SECRET = "keel-store"
IMAGE_BUNDLE = "/app/bundle"
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def bundle_source(spec: DeploySpec) -> tuple[str, str | None]:
    """("fetch" | "pvc" | "image", claim name or None) from the options and the model URI."""
    choice = spec.options.get("bundle_from")
    registry = spec.model_uri.startswith(("models:/", "runs:/"))
    if choice in (None, ""):
        choice = "fetch" if registry else "image"
    if choice == "fetch":
        if not registry:
            raise InvalidInput(f"--bundle-from fetch needs a models:/ or runs:/ URI (the init step fetches it from "
                               f"the store); {spec.model_uri} is a folder: use --bundle-from image or pvc:CLAIM")
        return "fetch", None
    if choice == "image":
        return "image", None
    if isinstance(choice, str) and choice.startswith("pvc:"):
        claim = choice[4:]
        # A claim name is a DNS-1123 subdomain: lower-case labels of letters, digits and '-', joined by '.'.
        if not (0 < len(claim) <= 253 and _SUBDOMAIN.match(claim)):
            raise InvalidInput(f"--bundle-from pvc:CLAIM needs a claim name (lower-case DNS subdomain, at most 253 "
                               f"characters), got {claim!r}")
        return "pvc", claim
    raise InvalidInput(f"--bundle-from must be fetch, image or pvc:CLAIM, got {choice!r}")


def image(spec: DeploySpec) -> str:
    if spec.image:
        return spec.image
    tag = f"v{spec.model_version}" if spec.model_version is not None else "latest"
    return f"keel-{spec.name}:{tag}"


def _security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "runAsUser": RUN_AS_UID, "runAsGroup": RUN_AS_UID, "capabilities": {"drop": ["ALL"]}}


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": 5,
            "failureThreshold": failures}


def pod_parts(spec: DeploySpec) -> dict[str, Any]:
    """The server container, init containers and volumes, shared with the KServe target."""
    source, claim = bundle_source(spec)
    bundle_path = IMAGE_BUNDLE if source == "image" else f"{MODELS_DIR}/bundle"
    env = {"KEEL_HOME": HOME_DIR, "KEEL_USER": "keel-serve", **spec.profile.env}
    container: dict[str, Any] = {
        "name": "keel-serve",
        "image": image(spec),
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "keel.cli.main"],
        "args": serve_args(spec, bundle_path),
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "env": env_list(env),
        "resources": resources(spec.profile),
        # The start probe covers model loading; liveness then only catches a hung server.
        "startupProbe": _probe(LIVE, period=5, failures=60),
        "livenessProbe": _probe(LIVE, period=10, failures=3),
        "readinessProbe": _probe(READY, period=5, failures=3),
        "securityContext": _security(),
        "volumeMounts": [{"name": "keel-home", "mountPath": HOME_DIR}],
    }
    volumes: list[dict[str, Any]] = [{"name": "keel-home", "emptyDir": {}}]
    init: list[dict[str, Any]] = []
    if source == "fetch":
        container["volumeMounts"].append({"name": "models", "mountPath": MODELS_DIR, "readOnly": True})
        container["envFrom"] = [{"secretRef": {"name": STORE_SECRET}}]
        volumes.append({"name": "models", "emptyDir": {}})
        init.append({
            "name": "fetch-model",
            "image": image(spec),
            "imagePullPolicy": "IfNotPresent",
            "command": ["python", "-m", "keel.deploy.fetch", spec.model_uri, f"{MODELS_DIR}/bundle"],
            "env": env_list({"KEEL_HOME": HOME_DIR, "KEEL_USER": "keel-fetch"}),
            "envFrom": [{"secretRef": {"name": STORE_SECRET}}],
            "securityContext": _security(),
            "volumeMounts": [{"name": "models", "mountPath": MODELS_DIR},
                             {"name": "keel-home", "mountPath": HOME_DIR}],
        })
    elif source == "pvc":
        container["volumeMounts"].append({"name": "models", "mountPath": MODELS_DIR, "readOnly": True})
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
    if not container["resources"]:
        del container["resources"]
    return {"container": container, "init": init, "volumes": volumes}


def pod_spec(spec: DeploySpec) -> dict[str, Any]:
    parts = pod_parts(spec)
    pod: dict[str, Any] = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_UID, "runAsGroup": RUN_AS_UID,
                            "fsGroup": RUN_AS_UID, "seccompProfile": {"type": "RuntimeDefault"}},
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 45,  # keel serve drains in-flight requests for up to 30 s
    }
    if parts["init"]:
        pod["initContainers"] = parts["init"]
    pod["containers"] = [parts["container"]]
    pod["volumes"] = parts["volumes"]
    selector = node_selector(spec.profile)
    if selector:
        pod["nodeSelector"] = selector
    if spec.profile.tolerations:
        pod["tolerations"] = [dict(t) for t in spec.profile.tolerations]
    return pod


def manifests(spec: DeploySpec) -> list[dict[str, Any]]:
    """Deployment, Service and, with a replica range, an autoscaling/v2 HorizontalPodAutoscaler."""
    profile = spec.profile
    labels = spec.labels
    selector = {"app.kubernetes.io/name": spec.name}
    replicas = profile.min_replicas if profile.autoscaled and profile.min_replicas else profile.replicas
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": spec.name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec(spec)},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": spec.name, "labels": labels},
        "spec": {"type": "ClusterIP", "selector": selector,
                 "ports": [{"name": "http", "port": spec.port, "targetPort": "http", "protocol": "TCP"}]},
    }
    documents = [deployment, service]
    if profile.autoscaled:
        documents.append({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": spec.name, "labels": labels},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
                "minReplicas": max(1, profile.min_replicas if profile.min_replicas is not None else profile.replicas),
                "maxReplicas": profile.max_replicas,
                "metrics": [{"type": "Resource", "resource": {
                    "name": "cpu", "target": {"type": "Utilization",
                                              "averageUtilization": profile.target_cpu_utilization}}}],
            },
        })
    return documents


class KubernetesTarget(Target):
    name = "kubernetes"
    gives_gpu = True

    def check(self, spec: DeploySpec) -> None:
        super().check(spec)
        bundle_source(spec)
        if spec.profile.autoscaled and not spec.profile.cpu:
            raise InvalidInput(f"profile {spec.profile.stage!r} autoscales on CPU utilization, which needs a cpu "
                               f"request: set cpu in [profiles.{spec.profile.stage}]")

    def plan(self, spec: DeploySpec) -> Plan:
        notes = [f"kubectl apply -f {{out}}/{spec.name}.yaml"]
        if bundle_source(spec)[0] == "fetch":
            notes.insert(0, f"create the Secret {STORE_SECRET} with KEEL_STORE_URI and KEEL_ARTIFACT_URI first")
        return Plan({f"{spec.name}.yaml": dump_yaml(manifests(spec), header(spec))}, notes=tuple(notes))
