"""KServe: an InferenceService (serving.kserve.io/v1beta1) with keel serve as a custom predictor.

keel serve speaks the Open Inference Protocol (KServe v2) itself, so the
predictor is a plain container; KServe adds routing, revisions and canary
traffic. minReplicas/maxReplicas, the CPU scale target and
canaryTrafficPercent come from the stage's profile. The container, its init
step and its volumes are the Kubernetes target's (same image, same bundle
sources, same non-root security context).
"""

from __future__ import annotations

from typing import Any

from keel.deploy import kubernetes as k8s
from keel.deploy.base import DeploySpec, Plan, Target
from keel.deploy.render import dump_yaml, header, node_selector

API_VERSION = "serving.kserve.io/v1beta1"
CONTAINER = "kserve-container"  # the name KServe expects for a custom predictor's serving container


def manifest(spec: DeploySpec) -> dict[str, Any]:
    profile = spec.profile
    parts = k8s.pod_parts(spec)
    container = {**parts["container"], "name": CONTAINER}
    container["env"] = [*container["env"], {"name": "PROTOCOL", "value": "v2"}]
    predictor: dict[str, Any] = {
        "minReplicas": profile.min_replicas if profile.min_replicas is not None else profile.replicas,
    }
    if profile.max_replicas is not None:
        predictor["maxReplicas"] = profile.max_replicas
    predictor["scaleMetric"] = "cpu"
    predictor["scaleTarget"] = profile.target_cpu_utilization
    if profile.canary_traffic_percent is not None:
        predictor["canaryTrafficPercent"] = profile.canary_traffic_percent
    predictor["securityContext"] = {"runAsNonRoot": True, "runAsUser": k8s.RUN_AS_UID, "runAsGroup": k8s.RUN_AS_UID,
                                    "fsGroup": k8s.RUN_AS_UID, "seccompProfile": {"type": "RuntimeDefault"}}
    predictor["automountServiceAccountToken"] = False
    if parts["init"]:
        predictor["initContainers"] = parts["init"]
    predictor["containers"] = [container]
    predictor["volumes"] = parts["volumes"]
    selector = node_selector(profile)
    if selector:
        predictor["nodeSelector"] = selector
    if profile.tolerations:
        predictor["tolerations"] = [dict(t) for t in profile.tolerations]
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": {"name": spec.name, "labels": spec.labels},
        "spec": {"predictor": predictor},
    }


class KServeTarget(Target):
    name = "kserve"
    gives_gpu = True

    def check(self, spec: DeploySpec) -> None:
        super().check(spec)
        k8s.bundle_source(spec)

    def plan(self, spec: DeploySpec) -> Plan:
        notes = [f"kubectl apply -f {{out}}/{spec.name}-inferenceservice.yaml"]
        if k8s.bundle_source(spec)[0] == "fetch":
            notes.insert(0, f"create the Secret {k8s.STORE_SECRET} with KEEL_STORE_URI and KEEL_ARTIFACT_URI first")
        return Plan({f"{spec.name}-inferenceservice.yaml": dump_yaml([manifest(spec)], header(spec))},
                    notes=tuple(notes))
