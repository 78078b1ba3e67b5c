"""Run artifacts: content in the blob store, the path -> sha256 map in the metadata store.

Order of writes: the blob first (atomic, deduplicated), then the metadata row
in an audited transaction. A crash between the two leaves an unreferenced blob
(harmless, deduplicated on retry); a row never points at missing content.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from keel.entities import ArtifactInfo
from keel.errors import InvalidInput, NotFound
from keel.artifacts.paths import normalize_artifact_path, safe_join
from keel.service.context import Context
from keel.service.tracking import now_ms, require_run
from keel.store.schema import artifacts
from keel.store.sql import Tx


def log_file(ctx: Context, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None) -> ArtifactInfo:
    """Store one local file as ``artifact_path`` (default: its file name) of the run."""
    src = Path(local_path)
    if not src.is_file():
        raise NotFound(f"cannot log artifact: {src} is not a file")
    logical = normalize_artifact_path(artifact_path or src.name)
    _check_run(ctx, run_id)
    sha, size = ctx.blobs.put_file(src)
    return _record(ctx, run_id, [(logical, sha, size)])[0]


def log_bytes(ctx: Context, run_id: str, data: bytes, artifact_path: str) -> ArtifactInfo:
    logical = normalize_artifact_path(artifact_path)
    _check_run(ctx, run_id)
    sha, size = ctx.blobs.put_bytes(data)
    return _record(ctx, run_id, [(logical, sha, size)])[0]


def log_dir(ctx: Context, run_id: str, local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> list[ArtifactInfo]:
    """Store every file under ``local_dir``; symlinks leading outside it are refused."""
    root = Path(local_dir)
    if not root.is_dir():
        raise NotFound(f"cannot log artifacts: {root} is not a directory")
    base = root.resolve()
    prefix = normalize_artifact_path(artifact_path) + "/" if artifact_path else ""
    files: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            if path.is_symlink():
                target = path.resolve()
                if target != base and base not in target.parents:
                    raise InvalidInput(f"refusing to log {path}: it is a symlink to {target}, outside {base}")
                if name in dirnames:  # os.walk does not descend into it; do not log what it holds twice
                    continue
            if path.is_file():
                files.append((prefix + path.relative_to(root).as_posix(), path))
    _check_run(ctx, run_id)
    entries = []
    for logical, path in files:
        sha, size = ctx.blobs.put_file(path)
        entries.append((normalize_artifact_path(logical), sha, size))
    return _record(ctx, run_id, entries)


def _check_run(ctx: Context, run_id: str) -> None:
    with ctx.store.read() as conn:
        require_run(conn, run_id)


def _record(ctx: Context, run_id: str, entries: list[tuple[str, str, int]]) -> list[ArtifactInfo]:
    if not entries:
        return []
    created = now_ms()

    def write(tx: Tx) -> None:
        require_run(tx.conn, run_id)
        paths = [e[0] for e in entries]
        tx.conn.execute(artifacts.delete().where(artifacts.c.run_id == run_id, artifacts.c.path.in_(paths)))
        tx.conn.execute(artifacts.insert(), [
            {"run_id": run_id, "path": p, "sha256": s, "size": n, "created_at": created} for p, s, n in entries
        ])
        tx.audit("artifact.log", "run", run_id, {"artifacts": {p: s for p, s, _ in entries}})

    ctx.write(write, what="log artifacts")
    return [ArtifactInfo(p, s, n) for p, s, n in entries]


def list_artifacts(ctx: Context, run_id: str, prefix: str | None = None) -> list[ArtifactInfo]:
    query = sa.select(artifacts).where(artifacts.c.run_id == run_id).order_by(artifacts.c.path)
    if prefix:
        norm = normalize_artifact_path(prefix)
        query = query.where(sa.or_(artifacts.c.path == norm, artifacts.c.path.startswith(norm + "/", autoescape=True)))
    with ctx.store.read() as conn:
        require_run(conn, run_id)
        return [ArtifactInfo(r.path, r.sha256, r.size) for r in conn.execute(query)]


def read_bytes(ctx: Context, run_id: str, artifact_path: str) -> bytes:
    """The content of one artifact, hash-verified."""
    logical = normalize_artifact_path(artifact_path)
    with ctx.store.read() as conn:
        require_run(conn, run_id)
        sha = conn.execute(
            sa.select(artifacts.c.sha256).where(artifacts.c.run_id == run_id, artifacts.c.path == logical)
        ).scalar()
    if sha is None:
        raise NotFound(f"run {run_id} has no artifact {logical!r}")
    return ctx.blobs.get_bytes(sha, name=f"runs:/{run_id}/{logical}")


def download(ctx: Context, run_id: str, dest: str | os.PathLike[str], prefix: str | None = None) -> list[Path]:
    """Copy artifacts (all, or those under ``prefix``) into ``dest``, verifying each hash."""
    infos = list_artifacts(ctx, run_id, prefix)
    if prefix and not infos:
        raise NotFound(f"run {run_id} has no artifact under {prefix!r}")
    Path(dest).mkdir(parents=True, exist_ok=True)
    out = []
    for info in infos:
        target = safe_join(dest, info.path)
        out.append(ctx.blobs.copy_to(info.sha256, target, name=f"runs:/{run_id}/{info.path}"))
    return out
