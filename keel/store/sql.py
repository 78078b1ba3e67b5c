"""The SQL metadata store: transactions that carry their audit events.

Every change of state runs through :meth:`SqlStore.write`, whose transaction
appends the audit events it produced to the hash chain before it commits: the
change and its audit record are committed together or not at all.
"""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Sequence, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from keel.errors import Conflict, KeelError
from keel.governance.audit import canonical_details, event_hash
from keel.store import engine as engines
from keel.store.schema import audit_events, audit_head

T = TypeVar("T")
_MAX_ATTEMPTS = 8
# PostgreSQL SQLSTATEs worth retrying: serialization failure, deadlock.
_PG_TRANSIENT = {"40001", "40P01"}


@dataclass
class _PendingEvent:
    action: str
    object_type: str
    object_id: str
    details: dict[str, Any]


@dataclass
class Tx:
    """A write transaction: a connection plus the audit events it will append."""

    conn: sa.Connection
    actor: str
    _events: list[_PendingEvent] = field(default_factory=list)

    def audit(self, action: str, object_type: str, object_id: str, details: dict[str, Any] | None = None) -> None:
        """Record an audit event, written in this transaction when it commits."""
        self._events.append(_PendingEvent(action, object_type, object_id, details or {}))

    def bulk_insert(self, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert many rows given as tuples in ``columns`` order.

        The statement is still compiled by SQLAlchemy for the dialect; only the
        per-row parameter processing (costly at 10,000 rows) is skipped, so
        values must already be plain Python types the driver accepts.
        """
        if not rows:
            return
        compiled = table.insert().compile(dialect=self.conn.dialect, column_keys=list(columns))
        if self.conn.dialect.positional:
            order = [columns.index(name) for name in compiled.positiontup]
            params: Any = rows if order == list(range(len(columns))) else [tuple(r[i] for i in order) for r in rows]
        else:
            params = [dict(zip(columns, r)) for r in rows]
        self.conn.exec_driver_sql(str(compiled), params)

    def _append_chain(self) -> None:
        if not self._events:
            return
        # Locking the head row last keeps the time it is held short and gives
        # every writer the same lock order (no deadlocks on PostgreSQL).
        head = self.conn.execute(
            sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
        ).one()
        seq, prev = head.seq, head.hash
        now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        rows = []
        for ev in self._events:
            seq += 1
            details = canonical_details(ev.details)
            digest = event_hash(seq, now, self.actor, ev.action, ev.object_type, ev.object_id, details, prev)
            rows.append({
                "seq": seq, "time": now, "actor": self.actor, "action": ev.action,
                "object_type": ev.object_type, "object_id": ev.object_id,
                "details": details, "prev_hash": prev, "hash": digest,
            })
            prev = digest
        self.conn.execute(audit_events.insert(), rows)
        self.conn.execute(audit_head.update().where(audit_head.c.id == 1).values(seq=seq, hash=prev))


class SqlStore:
    """Metadata store over SQLAlchemy (SQLite embedded, PostgreSQL for teams)."""

    def __init__(self, uri: str, *, sqlite_busy_timeout: float = 30.0, migrate: bool = True) -> None:
        self.uri = uri
        self.engine: Engine = engines.create_engine(uri, sqlite_busy_timeout=sqlite_busy_timeout)
        if migrate:
            engines.ensure_schema(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def write(self, actor: str, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in one write transaction, append its audit events, commit.

        Transient contention (SQLite busy, PostgreSQL deadlock or serialization
        failure, a unique-key race between two inserters) is retried with
        jittered back-off; ``fn`` must therefore only touch the database.
        """
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            try:
                with self.engine.begin() as conn:
                    tx = Tx(conn, actor)
                    result = fn(tx)
                    tx._append_chain()
                return result
            except KeelError:
                raise
            except sa.exc.IntegrityError as exc:
                if attempt >= 3:
                    raise Conflict(f"conflicting concurrent change: {_first_line(exc)}") from exc
            except sa.exc.OperationalError as exc:
                if not _is_transient(exc) or attempt == _MAX_ATTEMPTS:
                    raise
            time.sleep(min(0.5, 0.005 * 2**attempt) * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable")

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A read-only connection (no write lock on SQLite)."""
        with self.engine.connect().execution_options(**engines.read_options()) as conn:
            with conn.begin():
                yield conn

    def close(self) -> None:
        self.engine.dispose()


def _is_transient(exc: sa.exc.OperationalError) -> bool:
    if getattr(exc.orig, "sqlstate", None) in _PG_TRANSIENT:
        return True
    text = str(exc.orig).lower()
    return "database is locked" in text or "database is busy" in text or "deadlock" in text


def _first_line(exc: Exception) -> str:
    return str(getattr(exc, "orig", exc)).strip().splitlines()[0]
