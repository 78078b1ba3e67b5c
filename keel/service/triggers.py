"""Triggers and their firings: every change audited.

A firing is claimed by inserting its ``dedupe_key`` (unique per trigger)
before its action runs, so the same new file or schedule tick never fires
twice, also when a scheduler is killed and restarted: what a killed
scheduler claimed stays ``running`` (at most once, never twice).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from keel.errors import Conflict, InvalidInput, NotFound
from keel.governance.roles import VIEWER
from keel.service.context import Context
from keel.service.tracking import now_ms
from keel.store.schema import trigger_firings, triggers
from keel.store.sql import Tx

KINDS = ("new_data", "dataset", "schedule", "monitor_alert", "manual")
RUNNING, SUCCEEDED, FAILED, BASELINE = "running", "succeeded", "failed", "baseline"


@dataclass(frozen=True)
class Trigger:
    id: str
    name: str
    kind: str
    spec: dict[str, Any]
    action: dict[str, Any]
    enabled: bool
    created_by: str
    created_at: int


@dataclass(frozen=True)
class Firing:
    id: str
    trigger_id: str
    dedupe_key: str
    status: str
    outcome: dict[str, Any]
    fired_at: int
    finished_at: int | None


def check_trigger(kind: str, spec: dict[str, Any], action: dict[str, Any]) -> None:
    """Refuse a trigger that could never fire or do anything (errors name the field)."""
    if kind not in KINDS:
        raise InvalidInput(f"trigger kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "new_data" and not isinstance(spec.get("path"), str):
        raise InvalidInput("a new_data trigger needs --path: a folder or glob where new files appear")
    if kind == "schedule":
        from keel.pipelines.triggers import check_cron

        check_cron(spec.get("cron"))
    if kind == "dataset" and not isinstance(spec.get("dataset"), str):
        raise InvalidInput("a dataset trigger needs --dataset: the name new data is logged under (keel.log_dataset)")
    if kind == "monitor_alert" and not isinstance(spec.get("monitor"), str):
        raise InvalidInput("a monitor-alert trigger needs --monitor: the monitor whose alerts fire it")
    if ("retrain" in action) == ("pipeline" in action):
        raise InvalidInput("a trigger needs exactly one action: --retrain MODEL or --pipeline FILE")
    if kind not in ("new_data", "dataset") and "retrain" in action and not action.get("data"):
        raise InvalidInput("a schedule, monitor-alert or manual retrain needs --data: the file to retrain on")


def create_trigger(ctx: Context, name: str, kind: str, spec: dict[str, Any], action: dict[str, Any], *,
                   baseline: list[str] = ()) -> Trigger:
    """Create a trigger; ``baseline`` keys (files already there) are recorded as never to fire."""
    check_trigger(kind, spec, action)
    if kind == "monitor_alert":
        from keel.service.monitors import get_monitor

        get_monitor(ctx, spec["monitor"])  # NotFound names it
    if not name or len(name) > 256:
        raise InvalidInput(f"trigger name must be 1 to 256 characters, got {name!r}")

    def write(tx: Tx) -> Trigger:
        if tx.conn.execute(sa.select(triggers.c.id).where(triggers.c.name == name)).first():
            raise Conflict(f"trigger {name!r} already exists (see `keel triggers list`)")
        record = Trigger(uuid.uuid4().hex, name, kind, spec, action, True, ctx.actor, now_ms())
        tx.conn.execute(triggers.insert().values(**record.__dict__))
        if baseline:  # through SQLAlchemy (not bulk_insert): the outcome column is JSON
            tx.conn.execute(trigger_firings.insert(), [
                {"id": uuid.uuid4().hex, "trigger_id": record.id, "dedupe_key": key, "status": BASELINE,
                 "outcome": {"reason": "there when the trigger was created"}, "fired_at": record.created_at,
                 "finished_at": record.created_at} for key in baseline])
        tx.audit("trigger.create", "trigger", record.id, {"name": name, "kind": kind, "spec": spec,
                                                          "action": action, "baseline": len(baseline)})
        return record

    return ctx.write(write, what="create triggers")


def get_trigger(ctx: Context, name: str) -> Trigger:
    ctx.authorize(VIEWER, what="read triggers")
    with ctx.store.read() as conn:
        row = conn.execute(sa.select(triggers).where(sa.or_(triggers.c.name == name, triggers.c.id == name))).first()
    if row is None:
        raise NotFound(f"trigger {name!r} does not exist (see `keel triggers list`)")
    return _trigger(row)


def list_triggers(ctx: Context) -> list[Trigger]:
    ctx.authorize(VIEWER, what="list triggers")
    with ctx.store.read() as conn:
        return [_trigger(r) for r in conn.execute(sa.select(triggers).order_by(triggers.c.created_at))]


def delete_trigger(ctx: Context, name: str) -> None:
    trigger = get_trigger(ctx, name)

    def write(tx: Tx) -> None:
        tx.conn.execute(trigger_firings.delete().where(trigger_firings.c.trigger_id == trigger.id))
        tx.conn.execute(triggers.delete().where(triggers.c.id == trigger.id))
        tx.audit("trigger.delete", "trigger", trigger.id, {"name": trigger.name})

    ctx.write(write, what="delete triggers")


def claimed_keys(ctx: Context, trigger_id: str) -> set[str]:
    with ctx.store.read() as conn:
        return set(conn.execute(sa.select(trigger_firings.c.dedupe_key)
                                .where(trigger_firings.c.trigger_id == trigger_id)).scalars())


def claim(ctx: Context, trigger: Trigger, dedupe_key: str, details: dict[str, Any]) -> Firing | None:
    """Record a firing as started; None when that key already fired (another scheduler, or before)."""
    def write(tx: Tx) -> Firing | None:
        exists = tx.conn.execute(sa.select(trigger_firings.c.id).where(
            trigger_firings.c.trigger_id == trigger.id, trigger_firings.c.dedupe_key == dedupe_key)).first()
        if exists:
            return None
        firing = Firing(uuid.uuid4().hex, trigger.id, dedupe_key, RUNNING, details, now_ms(), None)
        tx.conn.execute(trigger_firings.insert().values(**firing.__dict__))
        tx.audit("trigger.fire", "trigger", trigger.id, {"name": trigger.name, "firing": firing.id,
                                                         "key": dedupe_key, **details})
        return firing

    return ctx.write(write, what="fire triggers")


def finish(ctx: Context, trigger: Trigger, firing: Firing, status: str, outcome: dict[str, Any]) -> None:
    def write(tx: Tx) -> None:
        tx.conn.execute(trigger_firings.update().where(trigger_firings.c.id == firing.id).values(
            status=status, outcome={**firing.outcome, **outcome}, finished_at=now_ms()))
        tx.audit(f"trigger.{status}", "trigger", trigger.id, {"name": trigger.name, "firing": firing.id, **outcome})

    ctx.write(write, what="fire triggers")


def firings(ctx: Context, trigger_id: str, *, include_baseline: bool = False) -> list[Firing]:
    ctx.authorize(VIEWER, what="read trigger firings")
    query = sa.select(trigger_firings).where(trigger_firings.c.trigger_id == trigger_id)
    if not include_baseline:
        query = query.where(trigger_firings.c.status != BASELINE)
    with ctx.store.read() as conn:
        rows = conn.execute(query.order_by(trigger_firings.c.fired_at)).all()
    return [Firing(r.id, r.trigger_id, r.dedupe_key, r.status, dict(r.outcome), r.fired_at, r.finished_at)
            for r in rows]


def _trigger(r: Any) -> Trigger:
    return Trigger(r.id, r.name, r.kind, dict(r.spec), dict(r.action), bool(r.enabled), r.created_by, r.created_at)
