"""Reading and verifying the audit trail (writing happens in store.sql.Tx)."""

from __future__ import annotations

import sqlalchemy as sa

from keel.entities import AuditEvent
from keel.governance.audit import ChainReport, verify_chain
from keel.service.context import Context
from keel.store.schema import audit_events, audit_head

_BATCH = 5000


def list_events(
    ctx: Context, *, object_id: str | None = None, action: str | None = None,
    limit: int | None = None, after_seq: int = 0,
) -> list[AuditEvent]:
    """Events in sequence order, optionally for one object or action; ``limit`` keeps the newest."""
    query = sa.select(audit_events).where(audit_events.c.seq > after_seq)
    if object_id:
        query = query.where(audit_events.c.object_id == object_id)
    if action:
        query = query.where(audit_events.c.action == action)
    if limit:
        query = query.order_by(audit_events.c.seq.desc()).limit(limit)
    else:
        query = query.order_by(audit_events.c.seq)
    with ctx.store.read() as conn:
        rows = conn.execute(query).all()
    events = [AuditEvent(**r._mapping) for r in rows]
    return sorted(events, key=lambda e: e.seq)


def verify(ctx: Context) -> ChainReport:
    """Check the whole chain, streaming it in batches (memory bounded by the batch)."""
    with ctx.store.read() as conn:
        head = conn.execute(sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).one()
        result = conn.execution_options(yield_per=_BATCH).execute(
            sa.select(audit_events).order_by(audit_events.c.seq))
        return verify_chain(result, head.seq, head.hash)
