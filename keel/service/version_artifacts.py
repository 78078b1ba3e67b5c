"""Blobs attached to a registered version after it was logged: explanations,
evaluation results, gate decisions. Content-addressed like run artifacts; the
path is unique per version (attaching again at a path replaces it, audited)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from keel.artifacts.paths import normalize_artifact_path
from keel.errors import InvalidInput, NotFound
from keel.service.context import Context
from keel.service.tracking import now_ms
from keel.store.schema import model_versions, version_artifacts
from keel.store.sql import Tx


@dataclass(frozen=True)
class VersionArtifact:
    name: str
    version: int
    path: str
    kind: str
    sha256: str
    size: int
    created_by: str
    created_at: int


def attach(ctx: Context, name: str, version: int, path: str, data: bytes, *, kind: str) -> VersionArtifact:
    """Store ``data`` and attach it to ``name``/``version`` at ``path``."""
    path = normalize_artifact_path(path)
    if not kind or len(kind) > 64:
        raise InvalidInput(f"artifact kind must be a short non-empty string, got {kind!r}")
    sha, size = ctx.blobs.put_bytes(data)  # before the transaction: a blob without a row is harmless

    def write(tx: Tx) -> VersionArtifact:
        found = tx.conn.execute(sa.select(model_versions.c.version).where(
            model_versions.c.name == name, model_versions.c.version == version)).first()
        if found is None:
            raise NotFound(f"model {name!r} has no version {version}")
        key = (version_artifacts.c.name == name) & (version_artifacts.c.version == version) \
            & (version_artifacts.c.path == path)
        previous = tx.conn.execute(sa.select(version_artifacts.c.sha256).where(key)).scalar()
        record = VersionArtifact(name, version, path, kind, sha, size, ctx.actor, now_ms())
        if previous is not None:
            tx.conn.execute(version_artifacts.delete().where(key))
        tx.conn.execute(version_artifacts.insert().values(**record.__dict__))
        tx.audit("model.version.artifact", "model_version", f"{name}/{version}",
                 {"path": path, "kind": kind, "sha256": sha, "previous_sha256": previous})
        return record

    return ctx.write(write, what="attach an artifact to a model version")


def list_attached(ctx: Context, name: str, version: int, *, kind: str | None = None) -> list[VersionArtifact]:
    """Attached artifacts of a version, newest first."""
    query = sa.select(version_artifacts).where(version_artifacts.c.name == name,
                                               version_artifacts.c.version == version)
    if kind is not None:
        query = query.where(version_artifacts.c.kind == kind)
    with ctx.store.read() as conn:
        rows = conn.execute(query.order_by(version_artifacts.c.created_at.desc(), version_artifacts.c.path)).all()
    return [VersionArtifact(**r._mapping) for r in rows]


def read_attached(ctx: Context, item: VersionArtifact) -> bytes:
    """The bytes of an attached artifact, hash-verified."""
    return ctx.blobs.get_bytes(item.sha256, name=f"models:/{item.name}/{item.version} {item.path}")
