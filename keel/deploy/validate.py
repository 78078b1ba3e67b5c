"""Offline validation of rendered manifests: Kubernetes' own JSON schemas, and KServe's from this repo.

Core objects (Deployment, Service, HorizontalPodAutoscaler, ...) are checked
strictly (unknown fields refused) by ``kubernetes-validate``, which ships the
schemas of every Kubernetes release; keel checks the oldest release it
supports and the newest one installed. An InferenceService is checked against
``schemas/inferenceservice.json``, and its predictor's pod fields against the
Kubernetes PodSpec schema.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from keel.errors import ConfigError, InvalidInput

OLDEST_KUBERNETES = "1.30"
SCHEMAS = Path(__file__).with_name("schemas")
_POD_FIELDS = ("containers", "initContainers", "volumes", "nodeSelector", "tolerations", "securityContext",
               "automountServiceAccountToken", "affinity", "serviceAccountName", "imagePullSecrets",
               "priorityClassName", "terminationGracePeriodSeconds")


def _kubernetes_validate() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        raise ConfigError("validating Kubernetes manifests needs kubernetes-validate: pip install 'keel[deploy]'") \
            from None
    return kubernetes_validate


def validate_documents(documents: Iterable[dict[str, Any]]) -> list[str]:
    """Validate each document; returns ``"Kind/name"`` of each, or raises InvalidInput naming the field."""
    checked = []
    for doc in documents:
        kind = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        if doc.get("kind") == "InferenceService":
            validate_inference_service(doc)
        else:
            validate_core(doc)
        checked.append(kind)
    return checked


def validate_core(doc: dict[str, Any]) -> None:
    kv = _kubernetes_validate()
    for version in sorted({OLDEST_KUBERNETES, kv.latest_version()}):
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            # The error carries jsonschema's fields: where in the document, and what is wrong.
            where = ".".join(str(p) for p in exc.absolute_path) or "(top)"
            raise InvalidInput(f"{doc.get('kind')} {doc.get('metadata', {}).get('name')!r} is not valid Kubernetes "
                               f"{version}: at {where}: {exc.message}") from None
        except kv.SchemaNotFoundError:
            raise InvalidInput(f"Kubernetes {version} has no schema for {doc.get('apiVersion')} "
                               f"{doc.get('kind')}") from None


def validate_inference_service(doc: dict[str, Any]) -> None:
    import jsonschema

    try:
        jsonschema.Draft7Validator(_kserve_schema()).validate(doc)
    except jsonschema.ValidationError as error:
        where = ".".join(str(p) for p in error.absolute_path) or "(top)"
        raise InvalidInput(f"InferenceService {doc.get('metadata', {}).get('name')!r} does not match KServe's "
                           f"v1beta1 schema: at {where}: {error.message}") from None
    predictor = doc["spec"]["predictor"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": doc["metadata"]["name"]},
           "spec": {k: predictor[k] for k in _POD_FIELDS if k in predictor}}
    validate_core(pod)


@lru_cache(maxsize=1)
def _kserve_schema() -> dict[str, Any]:
    return json.loads((SCHEMAS / "inferenceservice.json").read_text())


def validate_yaml(text: str | bytes) -> list[str]:
    """Validate every document of a YAML file."""
    import yaml

    return validate_documents([d for d in yaml.safe_load_all(text) if d])
