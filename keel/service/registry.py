"""The model registry: registered models, numbered versions and aliases, every change audited.

A version points at a model logged with a run (``runs:/RUN_ID/PATH``) and
pins the sha256 of its keel.yaml, which vouches for every file of the bundle.
Protected aliases (``production`` by default, ``[policy] protected_aliases``
in keel.toml) move only through an approved promotion request
(keel/service/promotions.py), never directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from keel.errors import InvalidInput, NotFound, PermissionDenied
from keel.service.context import Context
from keel.service.tracking import now_ms, require_run
from keel.store.schema import artifacts, model_aliases, model_versions, registered_model_tags, registered_models
from keel.store.sql import Tx

_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,127}$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]{0,255}$")
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[^/]+))$")


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    run_id: str
    artifact_path: str
    manifest_sha256: str
    format: str
    created_by: str
    created_at: int
    aliases: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        return f"runs:/{self.run_id}/{self.artifact_path}"

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str | None
    owner: str
    created_at: int
    latest_version: int | None
    aliases: dict[str, int]
    tags: dict[str, str] = field(default_factory=dict)


def check_model_name(name: Any) -> str:
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        raise InvalidInput(f"model name must start with a letter or digit and use letters, digits, '_', '-', '.' "
                           f"(at most 256), got {name!r}")
    return name


def check_alias(alias: Any) -> str:
    if not isinstance(alias, str) or not _ALIAS.match(alias) or alias.isdigit():
        raise InvalidInput(f"alias must start with a letter and use letters, digits, '_', '-' (at most 128), "
                           f"got {alias!r}")
    return alias


def register_version(ctx: Context, name: str, run_id: str, artifact_path: str, *, format: str,
                     description: str | None = None) -> ModelVersion:
    """Register the model logged at ``runs:/run_id/artifact_path`` as the next version of ``name``."""
    check_model_name(name)
    manifest_path = f"{artifact_path}/keel.yaml"

    def write(tx: Tx) -> ModelVersion:
        require_run(tx.conn, run_id)
        sha = tx.conn.execute(sa.select(artifacts.c.sha256).where(
            artifacts.c.run_id == run_id, artifacts.c.path == manifest_path)).scalar()
        if sha is None:
            raise NotFound(f"runs:/{run_id}/{artifact_path} is not a logged model (no keel.yaml there)")
        now = now_ms()
        # Locking the model's row makes concurrent registrations of one model take
        # their numbers one after the other (SQLite writers are serialised anyway).
        locked = sa.select(registered_models.c.name).where(registered_models.c.name == name).with_for_update()
        if tx.conn.execute(locked).first() is None:
            # Two first registrations may race here: the loser hits the key and is retried.
            tx.conn.execute(registered_models.insert().values(name=name, description=None, owner=ctx.actor,
                                                              created_at=now))
            tx.audit("model.create", "model", name, {"owner": ctx.actor})
        last = tx.conn.execute(sa.select(sa.func.max(model_versions.c.version))
                               .where(model_versions.c.name == name)).scalar()
        version = (last or 0) + 1
        record = ModelVersion(name, version, run_id, artifact_path, sha, format, ctx.actor, now)
        tx.conn.execute(model_versions.insert().values(
            name=name, version=version, run_id=run_id, artifact_path=artifact_path, manifest_sha256=sha,
            format=format, description=description, created_by=ctx.actor, created_at=now))
        tx.audit("model.version.create", "model_version", f"{name}/{version}",
                 {"source": record.source, "manifest_sha256": sha, "format": format})
        return record

    return ctx.write(write, what="register a model version")


def protected_aliases(ctx: Context) -> frozenset[str]:
    from keel.governance.policy import load_policy

    return load_policy(ctx.settings.policy).protected_aliases


def set_alias(ctx: Context, name: str, alias: str, version: int) -> ModelVersion:
    """Point ``alias`` at ``version`` (moving it if it pointed elsewhere)."""
    check_alias(alias)
    protected = alias in protected_aliases(ctx)

    def write(tx: Tx) -> ModelVersion:
        if protected:  # refused inside the write so that the refusal is audited
            raise _protected(name, alias, f"`keel models promote {name} {version} --to {alias}`, "
                                          "then another user approves it")
        target = _version(tx.conn, name, version)
        move_alias(tx, name, alias, version, actor=ctx.actor)
        return target

    return ctx.write(write, what="move an alias")


def move_alias(tx: Tx, name: str, alias: str, version: int, *, actor: str,
               request_id: str | None = None) -> int | None:
    """Point ``alias`` at ``version`` inside ``tx``; returns the version it pointed at before.

    The caller has decided this move is allowed (an unprotected alias, or an
    approved promotion request, named in the audit event).
    """
    _version(tx.conn, name, version)
    old = tx.conn.execute(sa.select(model_aliases.c.version).where(
        model_aliases.c.name == name, model_aliases.c.alias == alias)).scalar()
    values = {"version": version, "updated_by": actor, "updated_at": now_ms()}
    if old is None:
        tx.conn.execute(model_aliases.insert().values(name=name, alias=alias, **values))
    elif old != version:
        tx.conn.execute(model_aliases.update().where(
            model_aliases.c.name == name, model_aliases.c.alias == alias).values(**values))
    if old != version:
        details: dict[str, Any] = {"alias": alias, "version": version, "previous": old}
        if request_id:
            details["request"] = request_id
        tx.audit("model.alias.set", "model", name, details)
    return old


def delete_alias(ctx: Context, name: str, alias: str) -> None:
    check_alias(alias)
    protected = alias in protected_aliases(ctx)

    def write(tx: Tx) -> None:
        if protected:
            raise _protected(name, alias, "a promotion request of another version")
        old = tx.conn.execute(sa.select(model_aliases.c.version).where(
            model_aliases.c.name == name, model_aliases.c.alias == alias)).scalar()
        if old is None:
            raise NotFound(f"model {name!r} has no alias {alias!r}")
        tx.conn.execute(model_aliases.delete().where(model_aliases.c.name == name, model_aliases.c.alias == alias))
        tx.audit("model.alias.delete", "model", name, {"alias": alias, "version": old})

    ctx.write(write, what="delete an alias")


def get_version(ctx: Context, name: str, version: int | None = None, *, alias: str | None = None) -> ModelVersion:
    """A version by number or by alias."""
    with ctx.store.read() as conn:
        if alias is not None:
            number = conn.execute(sa.select(model_aliases.c.version).where(
                model_aliases.c.name == name, model_aliases.c.alias == alias)).scalar()
            if number is None:
                _require_model(conn, name)
                raise NotFound(f"model {name!r} has no alias {alias!r} (see `keel models show {name}`)")
            version = number
        if version is None:
            raise InvalidInput("give a version number or an alias")
        return _version(conn, name, version)


def resolve_uri(ctx: Context, uri: str) -> ModelVersion:
    """The version a ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` URI names."""
    match = _URI.match(uri)
    if not match:
        raise InvalidInput(f"not a registry URI: {uri!r}; expected models:/NAME/VERSION or models:/NAME@ALIAS")
    if match["alias"]:
        return get_version(ctx, match["name"], alias=match["alias"])
    return get_version(ctx, match["name"], int(match["version"]))


def update_model(ctx: Context, name: str, *, description: str | None = None,
                 tags: dict[str, str] | None = None, delete_tags: list[str] | tuple[str, ...] = ()) -> RegisteredModel:
    """Change a registered model's description and tags (None leaves the description as it is)."""
    from keel.service.validation import check_key, tag_value

    if description is not None and (not isinstance(description, str) or len(description) > 10_000):
        raise InvalidInput("description must be text of at most 10000 characters")
    tags = {check_key("tag", k): tag_value(k, v) for k, v in (tags or {}).items()}
    for key in delete_tags:
        check_key("tag", key)

    def write(tx: Tx) -> None:
        _require_model(tx.conn, name)
        if description is not None:
            tx.conn.execute(registered_models.update().where(registered_models.c.name == name)
                            .values(description=description))
        for key in [*tags, *delete_tags]:
            tx.conn.execute(registered_model_tags.delete().where(
                registered_model_tags.c.name == name, registered_model_tags.c.key == key))
        for key, value in tags.items():
            tx.conn.execute(registered_model_tags.insert().values(name=name, key=key, value=value))
        tx.audit("model.update", "model", name, {"description": description, "tags": tags,
                                                 "deleted_tags": list(delete_tags)})

    ctx.write(write, what="update a registered model")
    return next(m for m in list_models(ctx) if m.name == name)


def list_models(ctx: Context) -> list[RegisteredModel]:
    with ctx.store.read() as conn:
        models = conn.execute(sa.select(registered_models).order_by(registered_models.c.name)).all()
        latest = dict(conn.execute(sa.select(model_versions.c.name, sa.func.max(model_versions.c.version))
                                   .group_by(model_versions.c.name)).all())
        aliases: dict[str, dict[str, int]] = {}
        for name, alias, version in conn.execute(sa.select(model_aliases.c.name, model_aliases.c.alias,
                                                           model_aliases.c.version).order_by(model_aliases.c.alias)):
            aliases.setdefault(name, {})[alias] = version
        tags: dict[str, dict[str, str]] = {}
        for name, key, value in conn.execute(sa.select(registered_model_tags).order_by(registered_model_tags.c.key)):
            tags.setdefault(name, {})[key] = value
    return [RegisteredModel(m.name, m.description, m.owner, m.created_at, latest.get(m.name), aliases.get(m.name, {}),
                            tags.get(m.name, {})) for m in models]


def list_versions(ctx: Context, name: str) -> list[ModelVersion]:
    with ctx.store.read() as conn:
        _require_model(conn, name)
        rows = conn.execute(sa.select(model_versions).where(model_versions.c.name == name)
                            .order_by(model_versions.c.version)).all()
        aliases = _aliases_by_version(conn, name)
    return [_record(r, aliases.get(r.version, ())) for r in rows]


def _protected(name: str, alias: str, how: str) -> PermissionDenied:
    error = PermissionDenied(f"alias {alias!r} is protected: it moves only through an approved promotion "
                             f"request ({how})")
    error.audit_object = ("model", name)
    return error


def _version(conn: sa.Connection, name: str, version: int) -> ModelVersion:
    row = conn.execute(sa.select(model_versions).where(
        model_versions.c.name == name, model_versions.c.version == version)).first()
    if row is None:
        _require_model(conn, name)
        raise NotFound(f"model {name!r} has no version {version} (see `keel models versions {name}`)")
    return _record(row, _aliases_by_version(conn, name).get(version, ()))


def _aliases_by_version(conn: sa.Connection, name: str) -> dict[int, tuple[str, ...]]:
    out: dict[int, list[str]] = {}
    for alias, version in conn.execute(sa.select(model_aliases.c.alias, model_aliases.c.version)
                                       .where(model_aliases.c.name == name).order_by(model_aliases.c.alias)):
        out.setdefault(version, []).append(alias)
    return {k: tuple(v) for k, v in out.items()}


def _require_model(conn: sa.Connection, name: str) -> None:
    if conn.execute(sa.select(registered_models.c.name).where(registered_models.c.name == name)).first() is None:
        raise NotFound(f"registered model {name!r} does not exist (see `keel models list`)")


def _record(row: Any, aliases: tuple[str, ...]) -> ModelVersion:
    return ModelVersion(row.name, row.version, row.run_id, row.artifact_path, row.manifest_sha256, row.format,
                        row.created_by, row.created_at, aliases)
