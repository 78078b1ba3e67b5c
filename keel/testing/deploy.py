"""Conformance checks every deploy target must pass (run against each one in keel's tests).

``check_target(name, spec, folder)`` plans and writes the target's files for
``spec`` and checks what every target promises: the plan is deterministic
and writes nothing, its paths stay inside the output folder, the recorded
hashes are those of the files on disk, the bundle's files travel unchanged,
Kubernetes/KServe manifests validate, nothing runs as root, and a GPU
request on a target that cannot give one is refused before anything is
written. Raises AssertionError on a failure; returns the written hashes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

from keel.errors import InvalidInput


def check_target(name: str, spec: Any, folder: str | os.PathLike[str]) -> dict[str, str]:
    from keel.artifacts.paths import normalize_artifact_path
    from keel.deploy.base import Target, get_target
    from keel.deploy.files import content, write_plan

    folder = Path(folder)
    target = get_target(name)
    assert isinstance(target, Target) and target.name == name, f"{name}: the table names another class"
    spec = dataclasses.replace(spec, target=name)
    target.check(spec)
    prepared = target.prepare(spec)

    # 1. plan is deterministic and writes nothing.
    before = _tree(folder)
    first, second = target.plan(prepared), target.plan(prepared)
    assert _contents(first) == _contents(second), f"{name}: two plans of one spec differ"
    assert _tree(folder) == before, f"{name}: plan wrote files"
    assert first.files, f"{name}: the plan has no files"

    # 2. every path is relative, normal and inside the output folder.
    for rel in first.files:
        assert normalize_artifact_path(rel) == rel, f"{name}: plan path {rel!r} is not normal"

    # 3. what is written is what was planned, hashed.
    out = folder / f"{name}-out"
    hashes = write_plan(first, out)
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == set(first.files) == set(hashes), f"{name}: written files differ from the plan"
    for rel, sha in hashes.items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == sha, f"{name}: {rel} hash differs"
        assert content(first.files[rel]) == (out / rel).read_bytes()
    for rel in first.executable:
        assert os.access(out / rel, os.X_OK), f"{name}: {rel} should be executable"

    # 4. the bundle travels unchanged where the target ships it.
    shipped = {rel.split("/", 1)[1]: sha for rel, sha in hashes.items() if rel.startswith("bundle/")}
    if shipped:
        assert shipped == dict(spec.bundle_files), f"{name}: the bundle's files changed on the way"

    # 5. manifests validate; nothing runs as root.
    texts = {rel: (out / rel).read_bytes() for rel in hashes if not rel.startswith(("bundle/", "vendor/"))}
    for rel, data in texts.items():
        if rel.endswith(".yaml"):
            from keel.deploy.validate import validate_yaml

            assert validate_yaml(data), f"{name}: {rel} has no documents"
            _assert_non_root_pods(name, rel, data)
        if rel == "Dockerfile":
            users = [line.split()[1] for line in data.decode().splitlines() if line.startswith("USER ")]
            assert users and not users[-1].startswith(("0", "root")), f"{name}: the image runs as root"
        if rel.endswith(".service"):
            text = data.decode()
            assert "User=" in text and "User=root" not in text, f"{name}: the unit runs as root"

    # 6. a GPU the target cannot give is refused before anything is written.
    if not target.gives_gpu:
        gpu_spec = dataclasses.replace(spec, profile=dataclasses.replace(spec.profile, gpu=1))
        try:
            target.check(gpu_spec)
        except InvalidInput as exc:
            assert "gpu" in str(exc).lower(), f"{name}: the GPU refusal does not say why: {exc}"
        else:
            raise AssertionError(f"{name}: a gpu request was accepted by a target that cannot give one")
    return hashes


def _assert_non_root_pods(name: str, rel: str, data: bytes) -> None:
    import yaml

    for doc in yaml.safe_load_all(data):
        pod = _pod_of(doc or {})
        if pod is None:
            continue
        assert pod.get("securityContext", {}).get("runAsNonRoot") is True, f"{name}: {rel} pod may run as root"
        for c in [*pod.get("containers", []), *pod.get("initContainers", [])]:
            ctx = c.get("securityContext", {})
            assert ctx.get("allowPrivilegeEscalation") is False and ctx.get("runAsUser", 1) != 0, \
                f"{name}: {rel} container {c.get('name')} is not locked down"


def _pod_of(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc.get("kind") in ("Deployment", "Job"):
        return doc["spec"]["template"]["spec"]
    if doc.get("kind") == "InferenceService":
        return doc["spec"]["predictor"]
    return None


def _contents(plan: Any) -> dict[str, bytes]:
    from keel.deploy.files import content

    return {rel: content(src) for rel, src in plan.files.items()} | {"<exec>": repr(sorted(plan.executable)).encode()}


def _tree(folder: Path) -> set[str]:
    return {p.as_posix() for p in folder.rglob("*")} if folder.exists() else set()
