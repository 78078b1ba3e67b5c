"""Gate decisions on model versions: recorded with every number, audited in the same transaction."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from keel.errors import NotFound
from keel.governance.roles import VIEWER
from keel.service.context import Context
from keel.service.tracking import now_ms
from keel.store.schema import gate_decisions, model_versions
from keel.store.sql import Tx

DECISION_PATH = "gate/decision.json"


@dataclass(frozen=True)
class GateDecision:
    id: str
    name: str
    version: int
    champion_version: int | None
    blessed: bool
    reasons: list[str]
    checks: list[dict[str, Any]]
    promotion_request_id: str | None
    created_by: str
    created_at: int


def record_decision(ctx: Context, name: str, version: int, *, champion_version: int | None, blessed: bool,
                    reasons: list[str], checks: list[dict[str, Any]], promotion_request_id: str | None,
                    details: dict[str, Any]) -> GateDecision:
    """Store the decision on the version (a row and an attached JSON document) and audit it."""
    decision_id = uuid.uuid4().hex
    document = {"id": decision_id, "model": name, "version": version, "champion_version": champion_version,
                "blessed": blessed, "reasons": reasons, "checks": checks,
                "promotion_request_id": promotion_request_id, **details}

    def write(tx: Tx) -> GateDecision:
        if tx.conn.execute(sa.select(model_versions.c.version).where(
                model_versions.c.name == name, model_versions.c.version == version)).first() is None:
            raise NotFound(f"model {name!r} has no version {version}")
        record = GateDecision(decision_id, name, version, champion_version, blessed, reasons, checks,
                              promotion_request_id, ctx.actor, now_ms())
        tx.conn.execute(gate_decisions.insert().values(**record.__dict__))
        tx.audit("gate.decision", "model_version", f"{name}/{version}", document)
        return record

    record = ctx.write(write, what="record gate decisions")
    from keel.service.version_artifacts import attach

    attach(ctx, name, version, DECISION_PATH, json.dumps(document, indent=2, sort_keys=True, default=str).encode(),
           kind="gate")
    return record


def link_promotion(ctx: Context, decision: GateDecision, request_id: str) -> GateDecision:
    """Record the promotion request that a blessed decision filed (after the decision itself was recorded)."""
    from dataclasses import replace

    def write(tx: Tx) -> GateDecision:
        tx.conn.execute(gate_decisions.update().where(gate_decisions.c.id == decision.id)
                        .values(promotion_request_id=request_id))
        tx.audit("gate.promotion_request", "model_version", f"{decision.name}/{decision.version}",
                 {"decision_id": decision.id, "promotion_request_id": request_id})
        return replace(decision, promotion_request_id=request_id)

    linked = ctx.write(write, what="record gate decisions")
    from keel.service.version_artifacts import attach, list_attached, read_attached

    [stored] = [a for a in list_attached(ctx, decision.name, decision.version, kind="gate") if a.path == DECISION_PATH]
    document = {**json.loads(read_attached(ctx, stored)), "promotion_request_id": request_id}
    attach(ctx, decision.name, decision.version, DECISION_PATH,
           json.dumps(document, indent=2, sort_keys=True, default=str).encode(), kind="gate")
    return linked


def decisions_for(ctx: Context, name: str, version: int | None = None) -> list[GateDecision]:
    """Gate decisions on a model's versions, newest first."""
    ctx.authorize(VIEWER, what="read gate decisions")
    query = sa.select(gate_decisions).where(gate_decisions.c.name == name)
    if version is not None:
        query = query.where(gate_decisions.c.version == version)
    with ctx.store.read() as conn:
        rows = conn.execute(query.order_by(gate_decisions.c.created_at.desc())).all()
    return [GateDecision(r.id, r.name, r.version, r.champion_version, bool(r.blessed), list(r.reasons),
                         list(r.checks), r.promotion_request_id, r.created_by, r.created_at) for r in rows]
