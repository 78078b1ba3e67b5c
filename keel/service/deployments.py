"""Deployments: resolve a model, plan a target's files, write them, apply, record; and stop.

Every check that can refuse a deploy (target, profile, GPU, port, options,
output folder, role) runs before anything is written. Each deploy and each
stop is a row in ``deployments`` and an audit event in the same transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import sqlalchemy as sa

from keel.errors import Conflict, InvalidInput, KeelError, NotFound
from keel.governance.roles import EDITOR, VIEWER
from keel.service.context import Context
from keel.service.tracking import now_ms
from keel.store.schema import deployments
from keel.store.sql import Tx

WRITTEN, RUNNING, BUILT, STOPPED, FAILED = "written", "running", "built", "stopped", "failed"
# Options recorded with a deployment (plain values only; never settings or secrets).
_RECORDED_OPTIONS = ("quantize", "quantize_tolerance", "sample", "build", "bundle_from", "install_dir", "host",
                     "input", "output", "batch_size")


@dataclass(frozen=True)
class Deployment:
    id: str
    target: str
    stage: str
    model_name: str | None
    model_version: int | None
    model_uri: str
    bundle_sha256: str
    out_dir: str
    files: dict[str, str]
    profile: dict[str, Any]
    options: dict[str, Any]
    state: dict[str, Any]
    status: str
    created_by: str
    created_at: int
    stopped_by: str | None = None
    stopped_at: int | None = None
    notes: tuple[str, ...] = field(default=(), compare=False)  # next steps, not stored


def deploy(ctx: Context, uri: str, *, target: str, stage: str | None = None, out: str | Path | None = None,
           port: int | None = None, name: str | None = None, image: str | None = None,
           options: Mapping[str, Any] | None = None) -> Deployment:
    """Deploy the model at ``uri`` to ``target`` with the resources of ``stage``; returns the record."""
    from keel.deploy.base import DEFAULT_PORT, check_name, get_target
    from keel.deploy.files import check_out, write_plan
    from keel.deploy.profiles import profile_for

    tgt = get_target(target)
    profile = profile_for(ctx.settings.profiles, stage)
    options = dict(options or {})
    port = DEFAULT_PORT if port is None else port
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidInput(f"--port must be a whole number from 1 to 65535, got {port!r}")
    if name is not None:
        check_name(name)
    deployment_id = uuid.uuid4().hex
    ctx.authorize(EDITOR, what="deploy a model")
    spec = _spec(ctx, uri, tgt.name, profile, port, name, image, options)
    out_dir = check_out(out if out is not None else
                        Path(ctx.settings.home) / "deployments" / f"{spec.name}-{tgt.name}-{deployment_id[:8]}")
    if tgt.starts:
        _refuse_taken_port(ctx, tgt.name, port)
    tgt.check(spec)
    spec = tgt.prepare(spec)
    plan = tgt.plan(spec)
    _validate(plan, tgt.name)
    files = write_plan(plan, out_dir)
    record = Deployment(
        id=deployment_id, target=tgt.name, stage=profile.stage, model_name=spec.model_name,
        model_version=spec.model_version, model_uri=spec.model_uri, bundle_sha256=spec.bundle_files["keel.yaml"],
        out_dir=str(out_dir), files=files, profile=profile.to_dict(),
        options={k: options[k] for k in _RECORDED_OPTIONS if options.get(k) not in (None, False)},
        state={"port": port, "name": spec.name, **({"quantization": spec.extras["quantization"]}
                                                    if spec.extras.get("quantization") else {})},
        status=WRITTEN, created_by=ctx.actor, created_at=now_ms(),
        notes=tuple(n.replace("{out}", str(out_dir)) for n in plan.notes))
    try:
        state = tgt.apply(spec, out_dir)
    except KeelError as exc:
        _insert(ctx, replace(record, status=FAILED, state={**record.state, "error": str(exc)[:2000]}))
        raise
    record = replace(record, state={**record.state, **state}, status=_status_after_apply(tgt, state))
    try:
        _insert(ctx, record)
    except BaseException:
        tgt.delete(out_dir, record.state)  # nothing runs that is not recorded
        raise
    return record


def stop(ctx: Context, deployment_id: str) -> Deployment:
    """Stop what the deployment started (local: the server) and mark it stopped; its files stay."""
    from keel.deploy.base import get_target

    ctx.authorize(EDITOR, what="stop a deployment")
    record = get_deployment(ctx, deployment_id)
    if record.status == STOPPED:
        raise Conflict(f"deployment {record.id} was already stopped by {record.stopped_by}")
    get_target(record.target).delete(Path(record.out_dir), record.state)
    now = now_ms()

    def write(tx: Tx) -> None:
        tx.conn.execute(deployments.update().where(deployments.c.id == record.id)
                        .values(status=STOPPED, stopped_by=ctx.actor, stopped_at=now))
        tx.audit("deployment.stop", "deployment", record.id,
                 {"target": record.target, "model": record.model_name, "version": record.model_version,
                  "previous_status": record.status})

    ctx.write(write, role=EDITOR, what="stop a deployment")
    return replace(record, status=STOPPED, stopped_by=ctx.actor, stopped_at=now)


def get_deployment(ctx: Context, deployment_id: str, *, live: bool = False) -> Deployment:
    """A deployment by id (or a unique prefix of at least 6 characters)."""
    ctx.authorize(VIEWER, what="read deployments")
    if not isinstance(deployment_id, str) or not deployment_id.isalnum() or len(deployment_id) < 6:
        raise InvalidInput(f"deployment id must be at least 6 letters or digits, got {deployment_id!r}")
    with ctx.store.read() as conn:
        rows = conn.execute(sa.select(deployments).where(deployments.c.id.startswith(deployment_id.lower()))
                            .limit(2)).mappings().all()
    if not rows:
        raise NotFound(f"no deployment {deployment_id!r} (see `keel deployments list`)")
    if len(rows) > 1:
        raise InvalidInput(f"deployment id prefix {deployment_id!r} is ambiguous; give more characters")
    record = _record(rows[0])
    return _live(record) if live else record


def list_deployments(ctx: Context, *, model: str | None = None, target: str | None = None,
                     live: bool = False) -> list[Deployment]:
    """Deployments, newest first; ``live`` asks each target whether what it started still runs."""
    ctx.authorize(VIEWER, what="list deployments")
    query = sa.select(deployments).order_by(deployments.c.created_at.desc(), deployments.c.id)
    if model is not None:
        query = query.where(deployments.c.model_name == model)
    if target is not None:
        query = query.where(deployments.c.target == target)
    with ctx.store.read() as conn:
        records = [_record(r) for r in conn.execute(query).mappings()]
    return [_live(r) for r in records] if live else records


def _spec(ctx: Context, uri: str, target: str, profile: Any, port: int, name: str | None, image: str | None,
          options: dict[str, Any]) -> Any:
    from keel.deploy.base import DeploySpec, check_name, deployment_name
    from keel.formats.api import resolve_bundle
    from keel.formats.bundle import MANIFEST, read_manifest, sha256_file, verify_files

    model_name = model_version = None
    pinned = uri
    if uri.startswith("models:/"):
        from keel.service.registry import resolve_uri

        version = resolve_uri(ctx, uri)
        model_name, model_version = version.name, version.version
        pinned = version.uri  # an alias moves; a deployment keeps the version it was made from
    folder, _ = resolve_bundle(pinned, ctx.settings)
    manifest = read_manifest(folder)
    verify_files(manifest)
    if not pinned.startswith(("models:/", "runs:/")):
        pinned = str(Path(folder).absolute())
    files = {**manifest.files, MANIFEST: sha256_file(folder / MANIFEST)}
    base = model_name or (uri.rstrip("/").rsplit("/", 1)[-1] if uri.startswith("runs:/") else Path(pinned).name)
    label = f"{base}-v{model_version}" if model_version is not None else base
    return DeploySpec(target=target, name=check_name(name or deployment_name(label)), model_uri=pinned,
                      bundle=Path(folder), bundle_files=dict(sorted(files.items())), manifest=manifest.data,
                      profile=profile, model_name=model_name, model_version=model_version, port=port,
                      image=image, options=options, settings=ctx.settings)


def _refuse_taken_port(ctx: Context, target: str, port: int) -> None:
    """A running deployment of ours on the port is named, so the user knows what to stop."""
    for other in list_deployments(ctx, target=target):
        if other.status == RUNNING and other.state.get("port") == port and _live(other).status == RUNNING:
            raise Conflict(f"port {port} is taken by deployment {other.id} ({other.model_uri}); choose another "
                           f"--port or stop it first: keel deployments stop {other.id}")


def _validate(plan: Any, target: str) -> None:
    """Kubernetes and KServe manifests are checked against their schemas when the validator is installed."""
    if target not in ("kubernetes", "kserve", "job"):
        return
    try:
        import kubernetes_validate  # noqa: F401
    except ImportError:
        return
    from keel.deploy.files import content
    from keel.deploy.validate import validate_yaml

    for rel, source in plan.files.items():
        if rel.endswith(".yaml"):
            validate_yaml(content(source))


def _status_after_apply(tgt: Any, state: Mapping[str, Any]) -> str:
    if tgt.starts:
        return RUNNING
    return BUILT if state.get("built") else WRITTEN


def _live(record: Deployment) -> Deployment:
    from keel.deploy.base import get_target

    if record.status != RUNNING:
        return record
    now = get_target(record.target).status(Path(record.out_dir), record.state)
    return record if now == RUNNING else replace(record, status=f"{STOPPED} (exited)")


def _insert(ctx: Context, record: Deployment) -> None:
    def write(tx: Tx) -> None:
        tx.conn.execute(deployments.insert().values(
            id=record.id, target=record.target, stage=record.stage, model_name=record.model_name,
            model_version=record.model_version, model_uri=record.model_uri, bundle_sha256=record.bundle_sha256,
            out_dir=record.out_dir, files=record.files, profile=record.profile, options=record.options,
            state=record.state, status=record.status, created_by=record.created_by, created_at=record.created_at))
        tx.audit("deployment.create", "deployment", record.id, {
            "target": record.target, "stage": record.stage, "model": record.model_name,
            "version": record.model_version, "uri": record.model_uri, "bundle_sha256": record.bundle_sha256,
            "out_dir": record.out_dir, "status": record.status, "files": record.files})

    ctx.write(write, role=EDITOR, what="deploy a model")


def _record(row: Mapping[str, Any]) -> Deployment:
    return Deployment(**{k: row[k] for k in Deployment.__dataclass_fields__ if k != "notes"})
