"""Promotion requests: a version asks for an alias; policy checks run and are
recorded; a protected alias moves only when an approver who is not the
requester approves. Every step, and every refusal, is an audit event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from keel.errors import Conflict, IntegrityError, InvalidInput, NotFound, PermissionDenied, PolicyViolation
from keel.governance import policy as rules
from keel.service import fairness_eval
from keel.governance.roles import APPROVER, EDITOR, VIEWER, allows
from keel.service.cards import written_fields
from keel.service.context import Context
from keel.service.registry import check_alias, move_alias
from keel.service.tracking import now_ms
from keel.store.schema import (
    datasets, latest_metrics, model_versions, promotion_requests, run_inputs,
)
from keel.store.sql import Tx

PENDING, APPROVED, REJECTED, CANCELLED = "pending", "approved", "rejected", "cancelled"
POLICY_ACTOR = "policy"  # decided_by of a request that policy approved on its own
_MAX_TEXT = 4000


@dataclass(frozen=True)
class PromotionRequest:
    id: str
    name: str
    version: int
    alias: str
    status: str
    requester: str
    requested_at: int
    comment: str | None
    checks: list[dict[str, Any]]
    checks_passed: bool
    decided_by: str | None
    decided_at: int | None
    reason: str | None
    decision_checks: list[dict[str, Any]] | None
    previous_version: int | None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def request_promotion(ctx: Context, name: str, version: int, alias: str, *,
                      comment: str | None = None) -> PromotionRequest:
    """File a request for ``version`` to take ``alias``; run and record the policy checks.

    For an unprotected alias whose policy allows it, passing checks approve
    the request at once (decided by "policy"); otherwise it waits for an approver.
    """
    check_alias(alias)
    comment = _text("comment", comment, required=False)
    alias_policy = rules.load_policy(ctx.settings.policy).for_alias(alias)

    def write(tx: Tx) -> PromotionRequest:
        duplicate = tx.conn.execute(sa.select(promotion_requests.c.id).where(
            promotion_requests.c.name == name, promotion_requests.c.version == version,
            promotion_requests.c.alias == alias, promotion_requests.c.status == PENDING)).scalar()
        if duplicate:
            raise Conflict(f"models:/{name}/{version} already has a pending request for {alias!r}: {duplicate}")
        checks = [c.to_dict() for c in rules.evaluate(alias_policy, _evidence(ctx, tx.conn, name, version))]
        passed = all(c["passed"] for c in checks)
        request_id = uuid.uuid4().hex
        now = now_ms()
        tx.conn.execute(promotion_requests.insert().values(
            id=request_id, name=name, version=version, alias=alias, status=PENDING, requester=ctx.actor,
            requested_at=now, comment=comment, checks=checks, checks_passed=passed))
        tx.audit("promotion.request", "promotion", request_id, {
            "model": name, "version": version, "alias": alias, "checks_passed": passed, "checks": checks,
            "policy": alias_policy.to_dict(), "comment": comment})
        if passed and alias_policy.auto_approve:
            _decide(tx, request_id, APPROVED, POLICY_ACTOR, "checks passed; policy approves this alias on its own",
                    checks)
        return _get(tx.conn, request_id)

    return ctx.write(write, role=EDITOR, what="request a promotion")


def approve(ctx: Context, request_id: str, reason: str) -> PromotionRequest:
    """Approve a pending request: re-run its checks, then move the alias.

    Needs the approver role (once users exist) and four eyes: the requester
    cannot approve their own request.
    """
    reason = _text("reason", reason, required=True)

    def write(tx: Tx) -> PromotionRequest:
        req = _pending(tx, request_id, "approve")
        if req.requester == ctx.actor:
            raise _denied(req, f"{ctx.actor!r} requested {req.id} and cannot approve it: four eyes are needed "
                               "(another user with the approver role must approve)")
        alias_policy = rules.load_policy(ctx.settings.policy).for_alias(req.alias)
        checks = [c.to_dict() for c in rules.evaluate(alias_policy, _evidence(ctx, tx.conn, req.name, req.version))]
        failed = [c for c in checks if not c["passed"]]
        if failed:
            error = PolicyViolation(f"request {req.id} fails {len(failed)} check(s): "
                                    + "; ".join(f"{c['name']}: {c['detail']}" for c in failed))
            error.audit_object = ("promotion", req.id)
            raise error
        return _decide(tx, req.id, APPROVED, ctx.actor, reason, checks)

    return ctx.write(write, role=APPROVER, what="approve promotion requests")


def reject(ctx: Context, request_id: str, reason: str) -> PromotionRequest:
    """Reject a pending request; the alias stays where it was."""
    reason = _text("reason", reason, required=True)

    def write(tx: Tx) -> PromotionRequest:
        req = _pending(tx, request_id, "reject")
        return _decide(tx, req.id, REJECTED, ctx.actor, reason, None)

    return ctx.write(write, role=APPROVER, what="reject promotion requests")


def cancel(ctx: Context, request_id: str, reason: str | None = None) -> PromotionRequest:
    """Withdraw a pending request (its requester, or an approver)."""
    reason = _text("reason", reason, required=False)

    def write(tx: Tx) -> PromotionRequest:
        req = _pending(tx, request_id, "cancel")
        if req.requester != ctx.actor and not allows(tx.role, APPROVER):
            raise _denied(req, f"only {req.requester!r} or an approver can cancel request {req.id}")
        return _decide(tx, req.id, CANCELLED, ctx.actor, reason, None)

    return ctx.write(write, role=EDITOR, what="cancel promotion requests")


def get_request(ctx: Context, request_id: str) -> PromotionRequest:
    ctx.authorize(VIEWER, what="read promotion requests")
    with ctx.store.read() as conn:
        return _get(conn, _full_id(conn, request_id))


def list_requests(ctx: Context, *, name: str | None = None, status: str | None = None,
                  version: int | None = None) -> list[PromotionRequest]:
    ctx.authorize(VIEWER, what="list promotion requests")
    query = sa.select(promotion_requests).order_by(promotion_requests.c.requested_at, promotion_requests.c.id)
    if name is not None:
        query = query.where(promotion_requests.c.name == name)
    if version is not None:
        query = query.where(promotion_requests.c.version == version)
    if status is not None:
        if status not in (PENDING, APPROVED, REJECTED, CANCELLED):
            raise InvalidInput(f"status must be one of pending, approved, rejected, cancelled; got {status!r}")
        query = query.where(promotion_requests.c.status == status)
    with ctx.store.read() as conn:
        return [_record(r) for r in conn.execute(query).all()]


# -- internals -------------------------------------------------------------------
def _decide(tx: Tx, request_id: str, status: str, actor: str, reason: str | None,
            checks: list[dict[str, Any]] | None) -> PromotionRequest:
    req = _get(tx.conn, request_id)
    previous = None
    if status == APPROVED:
        previous = move_alias(tx, req.name, req.alias, req.version, actor=actor, request_id=req.id)
    tx.conn.execute(promotion_requests.update().where(promotion_requests.c.id == request_id).values(
        status=status, decided_by=actor, decided_at=now_ms(), reason=reason, decision_checks=checks,
        previous_version=previous))
    action = {APPROVED: "promotion.approve", REJECTED: "promotion.reject", CANCELLED: "promotion.cancel"}[status]
    details: dict[str, Any] = {"model": req.name, "version": req.version, "alias": req.alias, "reason": reason,
                               "requester": req.requester, "decided_by": actor}
    if status == APPROVED:
        details.update(previous_version=previous, checks=checks)
    tx.audit(action, "promotion", request_id, details)
    return _get(tx.conn, request_id)


def _pending(tx: Tx, request_id: str, verb: str) -> PromotionRequest:
    full = _full_id(tx.conn, request_id)
    # Lock the request so two approvers cannot both decide it (PostgreSQL; SQLite writers are serial).
    row = tx.conn.execute(sa.select(promotion_requests).where(promotion_requests.c.id == full)
                          .with_for_update()).first()
    req = _record(row)
    if req.status != PENDING:
        raise Conflict(f"request {req.id} is already {req.status} (by {req.decided_by}); only pending requests "
                       f"can be {verb}d")
    return req


def _denied(req: PromotionRequest, message: str) -> PermissionDenied:
    error = PermissionDenied(message)
    error.audit_object = ("promotion", req.id)
    return error


def _evidence(ctx: Context, conn: sa.Connection, name: str, version: int) -> rules.Evidence:
    row = conn.execute(sa.select(model_versions).where(
        model_versions.c.name == name, model_versions.c.version == version)).first()
    if row is None:
        raise NotFound(f"model {name!r} has no version {version} (see `keel models versions {name}`)")
    metrics = {k: (None if nan else v) for k, v, nan in conn.execute(
        sa.select(latest_metrics.c.key, latest_metrics.c.value, latest_metrics.c.is_nan)
        .where(latest_metrics.c.run_id == row.run_id))}
    card_fields, card_updated = written_fields(conn, name, version)
    used = conn.execute(sa.select(datasets.c.id, datasets.c.name, datasets.c.digest, datasets.c.num_rows,
                                  run_inputs.c.context)
                        .join(run_inputs, run_inputs.c.dataset_id == datasets.c.id)
                        .where(run_inputs.c.run_id == row.run_id).order_by(datasets.c.name)).all()
    return rules.Evidence(metrics=metrics, card_fields=tuple(card_fields), card_updated=card_updated,
                          datasets=tuple({"id": d.id, "name": d.name, "digest": d.digest, "rows": d.num_rows,
                                          "context": d.context} for d in used),
                          bundle=_bundle(ctx, row.manifest_sha256), fairness=fairness_eval.newest(ctx, name, version))


def _bundle(ctx: Context, sha: str) -> dict[str, Any]:
    try:
        ctx.blobs.get_bytes(sha, name="keel.yaml")  # hash-verified read
    except (IntegrityError, NotFound, OSError) as exc:
        return {"manifest_sha256": sha, "verified": False, "detail": f"bundle manifest unusable: {exc}"}
    return {"manifest_sha256": sha, "verified": True, "detail": "bundle manifest present and hash-verified"}


def _full_id(conn: sa.Connection, request_id: str) -> str:
    """Accept a full request id or a unique prefix of at least 6 characters."""
    if not isinstance(request_id, str) or len(request_id) < 6 or not request_id.isalnum():
        raise InvalidInput(f"request id must be the id or a prefix of at least 6 characters, got {request_id!r}")
    ids = conn.execute(sa.select(promotion_requests.c.id).where(
        promotion_requests.c.id.startswith(request_id.lower())).limit(2)).scalars().all()
    if not ids:
        raise NotFound(f"promotion request {request_id!r} does not exist (see `keel models requests`)")
    if len(ids) > 1:
        raise InvalidInput(f"request id prefix {request_id!r} is ambiguous; give more characters")
    return ids[0]


def _get(conn: sa.Connection, request_id: str) -> PromotionRequest:
    row = conn.execute(sa.select(promotion_requests).where(promotion_requests.c.id == request_id)).first()
    if row is None:
        raise NotFound(f"promotion request {request_id!r} does not exist")
    return _record(row)


def _record(row: Any) -> PromotionRequest:
    return PromotionRequest(**row._mapping)


def _text(field: str, value: Any, *, required: bool) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidInput(f"a {field} is required: say why, it goes into the audit trail and the model card")
        return None
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise InvalidInput(f"{field} must be text of at most {_MAX_TEXT} characters")
    return value.strip()
