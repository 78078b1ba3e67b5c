"""Model cards: the user-written fields (audited writes) and the card keel assembles from its store.

A card is a plain dict, schema ``keel.card/1`` (documented in
docs/model-cards.md). Its sections follow Google's Model Card Toolkit
(model details, model parameters, quantitative analysis, considerations)
and add what record-keeping asks for: the environment, every promotion
request with its checks and evidence, and who wrote the card's text when.
Rendering and diffing are pure functions in :mod:`keel.governance.card`.

User fields live in ``model_cards``: row version 0 holds the model's own,
a version's row overrides them field by field.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from keel.errors import InvalidInput, NotFound
from keel.governance.card import SCHEMA, split_metrics
from keel.governance.roles import EDITOR, VIEWER
from keel.service.context import Context
from keel.service.registry import ModelVersion, resolve_uri
from keel.service.tracking import now_ms
from keel.store.schema import (model_cards, model_versions, promotion_requests, registered_model_tags,
                               registered_models)
from keel.store.sql import Tx

# The fields people write; keel fills in everything else. Each maps to the
# card section it appears in.
CARD_FIELDS: dict[str, str] = {
    "overview": "model_details", "documentation": "model_details", "owners": "model_details",
    "licenses": "model_details", "references": "model_details", "citations": "model_details",
    "contact": "model_details",
    "intended_use": "considerations", "users": "considerations", "out_of_scope": "considerations",
    "limitations": "considerations", "tradeoffs": "considerations", "ethical_considerations": "considerations",
}
MAX_TEXT = 20_000  # characters per text
MAX_ITEMS = 100  # texts per list
MAX_STORED = 100_000  # characters of JSON for all fields of one level (model or version)
NOT_AVAILABLE = "not yet available"
MODEL_LEVEL = 0  # model_cards.version of the model's own fields
TOP_FEATURES = 10


def check_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Validate user fields: known names; text, a list of texts, or None (remove)."""
    unknown = sorted(set(fields) - set(CARD_FIELDS))
    if unknown:
        raise InvalidInput(f"unknown model card field(s) {', '.join(map(repr, unknown))}; "
                           f"the fields you can write are: {', '.join(CARD_FIELDS)}")
    checked: dict[str, Any] = {}
    for name, value in fields.items():
        if value is None:
            checked[name] = None
        elif isinstance(value, str):
            checked[name] = _text(name, value)
        elif isinstance(value, (list, tuple)):
            if len(value) > MAX_ITEMS:
                raise InvalidInput(f"card field {name!r} has {len(value)} items; at most {MAX_ITEMS} allowed")
            checked[name] = [_text(name, item) for item in value]
        else:
            raise InvalidInput(f"card field {name!r} must be text or a list of texts (None removes it), "
                               f"got {type(value).__name__}")
    return checked


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"card field {name!r}: list items must be text, got {type(value).__name__} {value!r}")
    if len(value) > MAX_TEXT:
        raise InvalidInput(f"card field {name!r} is {len(value)} characters long; at most {MAX_TEXT} allowed")
    return value


def update_card(ctx: Context, name: str, version: int | None = None, **fields: Any) -> dict[str, Any]:
    """Write user fields of the model's card (``version=None``) or of one version's card.

    A version's fields override the model's, field by field. A field set to
    None is removed. Returns the fields now stored at that level.

    Raises:
        InvalidInput: an unknown field, a value that is not text or a list of
            texts, or one too long.
        NotFound: the model or the version does not exist.
    """
    checked = check_fields(fields)
    if not checked:
        raise InvalidInput(f"give at least one card field to write; the fields are: {', '.join(CARD_FIELDS)}")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
        raise InvalidInput(f"version must be a positive integer (None for the model's own fields), got {version!r}")
    level = MODEL_LEVEL if version is None else version
    kind, object_id = ("model", name) if version is None else ("model_version", f"{name}/{version}")

    def write(tx: Tx) -> dict[str, Any]:
        _require(tx.conn, name, version)
        key = (model_cards.c.name == name) & (model_cards.c.version == level)
        # Locked: two writers of one card apply their changes one after the other, none lost.
        old = tx.conn.execute(sa.select(model_cards.c.fields).where(key).with_for_update()).scalar()
        stored = dict(old or {})
        for field, value in checked.items():
            if value is None:
                stored.pop(field, None)
            else:
                stored[field] = value
        size = len(json.dumps(stored, ensure_ascii=False))
        if size > MAX_STORED:
            raise InvalidInput(f"the card fields of {object_id} would take {size} characters; at most {MAX_STORED} "
                               "allowed: shorten them or link to a longer document (documentation, references)")
        values = {"fields": stored, "updated_by": ctx.actor, "updated_at": now_ms()}
        if old is None:
            tx.conn.execute(model_cards.insert().values(name=name, version=level, **values))
        else:
            tx.conn.execute(model_cards.update().where(key).values(**values))
        tx.audit("model.card.update", kind, object_id, {
            "set": {k: v for k, v in checked.items() if v is not None},
            "removed": sorted(k for k, v in checked.items() if v is None)})
        return stored

    return ctx.write(write, role=EDITOR, what="update a model card")


def _require(conn: sa.Connection, name: str, version: int | None) -> None:
    if conn.execute(sa.select(registered_models.c.name).where(registered_models.c.name == name)).first() is None:
        raise NotFound(f"registered model {name!r} does not exist (see `keel models list`)")
    if version is not None and conn.execute(sa.select(model_versions.c.version).where(
            model_versions.c.name == name, model_versions.c.version == version)).first() is None:
        raise NotFound(f"model {name!r} has no version {version} (see `keel models versions {name}`)")


def _card_rows(conn: sa.Connection, name: str, version: int) -> dict[str, Any]:
    """The stored rows by level: ``{"model": row, "version": row}`` (either may be missing)."""
    rows = conn.execute(sa.select(model_cards).where(
        model_cards.c.name == name, model_cards.c.version.in_([MODEL_LEVEL, version]))).all()
    return {"model" if r.version == MODEL_LEVEL else "version": r for r in rows}


def _merged(rows: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The merged fields, and for each the level it came from."""
    fields: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for level in ("model", "version"):  # the version's fields win
        for key, value in (rows[level].fields if level in rows else {}).items():
            fields[key], origin[key] = value, level
    return fields, origin


def written_fields(conn: sa.Connection, name: str, version: int) -> tuple[list[str], dict[str, Any] | None]:
    """The user-written fields a version's card shows (merged, non-empty), and the newest edit's who/when.

    What the promotion policy's ``model_card`` check looks at.
    """
    rows = _card_rows(conn, name, version)
    fields, _ = _merged(rows)
    present = sorted(k for k, v in fields.items() if v not in (None, "", []))
    newest = max(rows.values(), key=lambda r: r.updated_at, default=None)
    return present, (None if newest is None else {"by": newest.updated_by, "at": newest.updated_at})


# -- the card ----------------------------------------------------------------------------
def build_card(ctx: Context, uri: str) -> dict[str, Any]:
    """Assemble the card of the version ``uri`` (``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``).

    Returns a JSON-ready dict with schema ``keel.card/1``. Fairness,
    monitoring and the gate come from the version's life in operation
    (``keel.service.card_ops``); each says ``not yet available`` and why until
    there is something to show.
    """
    from keel.service.card_ops import fairness_section, gate_section, monitoring_section
    from keel.service.datasets import run_datasets
    from keel.service.tracking import get_run

    ctx.authorize(VIEWER, what="read a model card")
    mv = resolve_uri(ctx, uri)
    with ctx.store.read() as conn:
        model = conn.execute(sa.select(registered_models).where(registered_models.c.name == mv.name)).one()
        description = conn.execute(sa.select(model_versions.c.description).where(
            model_versions.c.name == mv.name, model_versions.c.version == mv.version)).scalar()
        model_tags = dict(conn.execute(sa.select(registered_model_tags.c.key, registered_model_tags.c.value)
                                       .where(registered_model_tags.c.name == mv.name)
                                       .order_by(registered_model_tags.c.key)).all())
        rows = _card_rows(conn, mv.name, mv.version)
        requests = conn.execute(sa.select(promotion_requests).where(
            promotion_requests.c.name == mv.name, promotion_requests.c.version == mv.version)
            .order_by(promotion_requests.c.requested_at, promotion_requests.c.id)).all()
    fields, origin = _merged(rows)
    run = get_run(ctx, mv.run_id)
    manifest, lock = _bundle(ctx, mv)
    signature = manifest.get("signature") or {}
    meta = manifest.get("meta") or {}
    user = {key: fields.get(key) for key in CARD_FIELDS}
    env = manifest.get("environment") or {}
    return {
        "schema": SCHEMA,
        "generated_at": _iso(now_ms()),
        "model_details": {
            "name": mv.name, "version": mv.version, "uri": mv.uri,
            **{k: v for k, v in user.items() if CARD_FIELDS[k] == "model_details"},
            "owners": user["owners"] or [model.owner],
            "description": model.description, "version_description": description,
            "registered_by": mv.created_by, "registered_at": _iso(mv.created_at),
            "source": mv.source, "run_id": mv.run_id, "manifest_sha256": mv.manifest_sha256, "tags": model_tags,
        },
        "model_parameters": {
            "format": mv.format, "format_version": manifest.get("format_version"),
            "architecture": meta.get("estimator") or mv.format,
            "libraries": manifest.get("libraries") or {},
            "input_format": signature.get("inputs"), "output_format": signature.get("outputs"),
            "outputs": manifest.get("outputs") or {},
            "params": dict(run.params),
            "data": [_dataset(d) for d in run_datasets(ctx, mv.run_id)],
        },
        "quantitative_analysis": {"metrics": split_metrics({k: _number(v) for k, v in run.metrics.items()})},
        "considerations": {k: v for k, v in user.items() if CARD_FIELDS[k] == "considerations"},
        "fairness": fairness_section(ctx, mv.name, mv.version),
        "explanation": _explanation(ctx, mv),
        "environment": {
            "python": lock.get("python") or env.get("python"),
            "implementation": lock.get("implementation") or env.get("implementation"),
            "platform": lock.get("platform") or env.get("platform"),
            "packages": lock.get("packages") or {},
            "source_commit": run.source.commit or env.get("source_commit"),
            "source_dirty": run.source.dirty, "entry_point": run.source.entry_point,
        },
        "aliases": list(mv.aliases),
        "approvals": [_request(r) for r in requests],
        "gate": gate_section(ctx, mv.name, mv.version),
        "monitoring": monitoring_section(ctx, mv.name, mv.version),
        "record": {
            "model_fields": _written(rows.get("model")), "version_fields": _written(rows.get("version")),
            "field_origin": dict(sorted(origin.items())),
        },
    }


def _bundle(ctx: Context, mv: ModelVersion) -> tuple[dict[str, Any], dict[str, Any]]:
    import yaml

    from keel.envs.lock import EnvironmentLock
    from keel.service.artifacts import read_bytes

    manifest = yaml.safe_load(read_bytes(ctx, mv.run_id, f"{mv.artifact_path}/keel.yaml")) or {}
    lock_name = (manifest.get("environment") or {}).get("lock") or "requirements.lock"
    try:
        text = read_bytes(ctx, mv.run_id, f"{mv.artifact_path}/{lock_name}").decode("utf-8")
    except NotFound:  # an imported or hand-made bundle may lack one; the card says what is known
        return manifest, {}
    return manifest, EnvironmentLock.from_text(text).to_dict()


def _dataset(d: Any) -> dict[str, Any]:
    columns = (d.profile or {}).get("columns") or {}
    return {"name": d.name, "digest": d.digest, "context": d.context, "source": d.source, "rows": d.num_rows,
            "data_sha256": d.data_sha256, "schema": d.schema,
            "profile": {name: _column(p) for name, p in columns.items()}}


def _column(p: dict[str, Any]) -> dict[str, Any]:
    summary = {k: p.get(k) for k in ("kind", "missing", "missing_share", "n_unique", "min", "max", "mean", "std")
               if p.get(k) is not None}
    freq = p.get("frequencies")
    if freq and freq.get("values"):
        summary["top_values"] = dict(zip(map(str, freq["values"][:5]), freq["counts"][:5]))
    return summary


def _explanation(ctx: Context, mv: ModelVersion) -> dict[str, Any] | None:
    from keel.service.version_artifacts import list_attached, read_attached

    found = list_attached(ctx, mv.name, mv.version, kind="explanation")
    if not found:
        return None
    item = found[0]
    data = json.loads(read_attached(ctx, item))
    entries = data.get("global") or []
    methods = list(data.get("methods") or dict.fromkeys(e.get("method") for e in entries))
    top = []  # the strongest features of each method: methods measure on different scales
    for method in methods:
        ranked = sorted((e for e in entries if e.get("method") == method), key=_importance)
        top += [{"feature": e.get("feature"), "importance": _number(e.get("importance")), "std": _number(e.get("std")),
                 "method": method} for e in ranked[:TOP_FEATURES]]
    created = data.get("created_at")
    return {"path": item.path, "sha256": item.sha256, "created_by": data.get("created_by") or item.created_by,
            "created_at": _iso(created) if isinstance(created, int) else created or _iso(item.created_at),
            "methods": methods, "target": data.get("target"), "data": data.get("data"), "score": data.get("score"),
            "top_features": top}


def _importance(entry: dict[str, Any]) -> float:
    value = entry.get("importance")
    return -value if isinstance(value, (int, float)) and math.isfinite(value) else math.inf


def _request(r: Any) -> dict[str, Any]:
    return {"id": r.id, "alias": r.alias, "status": r.status, "requester": r.requester,
            "requested_at": _iso(r.requested_at), "comment": r.comment, "checks": list(r.checks or []),
            "checks_passed": bool(r.checks_passed), "decided_by": r.decided_by, "decided_at": _iso(r.decided_at),
            "reason": r.reason, "decision_checks": None if r.decision_checks is None else list(r.decision_checks),
            "previous_version": r.previous_version}


def _written(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"fields": sorted(row.fields or {}), "updated_by": row.updated_by, "updated_at": _iso(row.updated_at)}


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _number(value: Any) -> Any:
    """Strict JSON has no NaN or infinity: such values become the strings "NaN", "Infinity", "-Infinity"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value
