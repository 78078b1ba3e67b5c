"""The SQL metadata store: transactions that carry their audit events.

Every change of state runs through :meth:`SqlStore.write`, whose transaction
appends the audit events it produced to the hash chain before it commits: the
change and its audit record are committed together or not at all.
"""

from __future__ import annotations

import os
import random
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Sequence, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from keel.errors import Conflict, KeelError, PermissionDenied
from keel.governance import roles
from keel.governance.audit import canonical_details, event_hash
from keel.store import engine as engines
from keel.store.checkpoint import WalCheckpointer
from keel.store.schema import api_tokens, audit_events, audit_head, users

T = TypeVar("T")
_MAX_ATTEMPTS = 8
# PostgreSQL SQLSTATEs worth retrying: serialization failure, deadlock.
_PG_TRANSIENT = {"40001", "40P01"}


_prepared: dict[tuple[int, str], tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}


def _prepare(stmt: Any, dialect: sa.Dialect, column_keys: Sequence[str] | None = None) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
    """SQL text, positional parameter order and default bind values of a Core
    statement, compiled once per dialect (keyed by the statement's identity:
    use module-level statements only)."""
    key = (id(stmt), dialect.name) if column_keys is None else (id(stmt), dialect.name, tuple(column_keys))
    hit = _prepared.get(key)
    if hit is None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(column_keys) if column_keys else None)
        order = tuple(compiled.positiontup) if dialect.positional else None
        hit = _prepared[key] = (str(compiled), order, dict(compiled.params))
    return hit


def fetch_all(conn: sa.Connection, stmt: Any) -> list[tuple[Any, ...]]:
    """Run a Core SELECT on the driver cursor and return plain tuples.

    For reads that return thousands of rows (search results): the driver's
    fetchall is an order of magnitude cheaper than building SQLAlchemy rows.
    """
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    values = compiled.params
    args: Any = tuple(values[n] for n in compiled.positiontup) if conn.dialect.positional else values
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(compiled), args)
        return cursor.fetchall()
    finally:
        cursor.close()


_HEAD_FOR_UPDATE = (
    sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
)
_HEAD_UPDATE = (
    audit_head.update().where(audit_head.c.id == 1)
    .values(seq=sa.bindparam("new_seq"), hash=sa.bindparam("new_hash"))
)
# One round trip on every write: the actor's role and state, and whether the store has users at all.
_ACTOR = sa.select(
    sa.select(users.c.role).where(users.c.name == sa.bindparam("name")).scalar_subquery(),
    sa.select(users.c.disabled).where(users.c.name == sa.bindparam("name")).scalar_subquery(),
    sa.exists(sa.select(users.c.name)),
)
_TOKEN_ROLE = (
    sa.select(users.c.name, users.c.role, users.c.disabled, api_tokens.c.expires_at, api_tokens.c.revoked_at)
    .join(users, users.c.name == api_tokens.c.user).where(api_tokens.c.token_hash == sa.bindparam("token_hash"))
)
_EVENT_COLUMNS = ("seq", "time", "actor", "action", "object_type", "object_id", "details", "prev_hash", "hash")
_INSERTS: dict[int, Any] = {}


@dataclass
class _PendingEvent:
    action: str
    object_type: str
    object_id: str
    details: dict[str, Any]


@dataclass
class Tx:
    """A write transaction: a connection plus the audit events it will append.

    ``fetch``, ``execute_many`` and ``bulk_insert`` run SQLAlchemy-compiled
    statements straight on the driver cursor of this transaction's
    connection. That skips SQLAlchemy's per-call statement handling (about
    0.1 ms a call, which dominated small audited writes) while the SQL stays
    SQLAlchemy's own, for whichever database is behind the store. Values must
    be plain Python types the driver accepts.
    """

    conn: sa.Connection
    actor: str
    # The actor's role as checked at the start of this transaction; None in an
    # open store (no users yet), where every role is allowed.
    role: str | None = None
    _events: list[_PendingEvent] = field(default_factory=list)
    _cursor: Any = None

    def authorize(self, required: str, *, token_hash: str | None = None, what: str | None = None) -> str | None:
        """Check, inside this transaction, that the actor holds ``required``.

        With ``token_hash`` the actor is whoever owns that token, checked
        afresh (a revoked token fails on its next use). Returns the role held
        (None: open store) and keeps it in ``self.role``.
        """
        doing = f" to {what}" if what else ""
        if token_hash is not None:
            found = self.fetch(_TOKEN_ROLE, {"token_hash": token_hash})
            if not found:
                raise PermissionDenied("the API token is not valid (unknown or deleted)")
            user, role, disabled, expires_at, revoked_at = found[0]
            if revoked_at is not None:
                raise PermissionDenied(f"the API token of {user!r} was revoked")
            if expires_at is not None and expires_at <= time.time() * 1000:
                raise PermissionDenied(f"the API token of {user!r} has expired")
        else:
            (role, disabled, any_user), = self.fetch(_ACTOR, {"name": self.actor})
            if role is None:
                if not any_user:
                    self.role = None  # open store
                    return None
                raise PermissionDenied(f"{self.actor!r} is not a keel user; an admin can add them with "
                                       f"`keel users add {self.actor} --role ROLE`")
            user = self.actor
        if disabled:
            raise PermissionDenied(f"user {user!r} is disabled")
        if not roles.allows(role, required):
            raise PermissionDenied(f"user {user!r} has the {role} role; {required} or higher is needed{doing}")
        self.role = role
        return role

    def audit(self, action: str, object_type: str, object_id: str, details: dict[str, Any] | None = None) -> None:
        """Record an audit event, written in this transaction when it commits."""
        self._events.append(_PendingEvent(action, object_type, object_id, details or {}))

    def fetch(self, stmt: Any, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Execute a module-level statement with ``params``; rows as tuples (none for DML)."""
        sql, order, defaults = _prepare(stmt, self.conn.dialect)
        values = {**defaults, **params} if params else defaults
        cur = self._driver(sql, tuple(values[n] for n in order) if order is not None else values)
        return cur.fetchall() if cur.description is not None else []

    def execute_many(self, stmt: Any, rows: Sequence[dict[str, Any]]) -> None:
        """executemany of a module-level statement over dict rows."""
        if not rows:
            return
        sql, order, defaults = _prepare(stmt, self.conn.dialect)
        if order is not None:
            args: Any = [tuple({**defaults, **r}[n] for n in order) for r in rows]
        else:
            args = [{**defaults, **r} for r in rows]
        self._driver(sql, args, many=True)

    def bulk_insert(self, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert rows given as tuples in ``columns`` order."""
        if not rows:
            return
        stmt = _INSERTS.get(id(table))
        if stmt is None:
            stmt = _INSERTS[id(table)] = table.insert()
        sql, order, _ = _prepare(stmt, self.conn.dialect, columns)
        if order is None:
            args: Any = [dict(zip(columns, r)) for r in rows]
        elif order == tuple(columns):
            args = rows
        else:
            index = [columns.index(n) for n in order]
            args = [tuple(r[i] for i in index) for r in rows]
        if len(args) == 1:
            self._driver(sql, args[0])
        else:
            self._driver(sql, args, many=True)

    def _driver(self, sql: str, args: Any, *, many: bool = False) -> Any:
        if self._cursor is None:
            self._cursor = self.conn.connection.cursor()
        try:
            if many:
                self._cursor.executemany(sql, args)
            else:
                self._cursor.execute(sql, args)
        except self.conn.dialect.loaded_dbapi.Error as exc:
            # Same exception classes as SQLAlchemy raises, so retries and callers see one kind.
            raise sa.exc.DBAPIError.instance(sql, args, exc, self.conn.dialect.loaded_dbapi.Error) from exc
        return self._cursor

    def _finish(self) -> None:
        """Append this transaction's audit events to the chain (before commit)."""
        if self._events:
            # Locking the head row last keeps the time it is held short and gives
            # every writer the same lock order (no deadlocks on PostgreSQL).
            (seq, prev), = self.fetch(_HEAD_FOR_UPDATE)
            now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
            rows = []
            for ev in self._events:
                seq += 1
                details = canonical_details(ev.details)
                digest = event_hash(seq, now, self.actor, ev.action, ev.object_type, ev.object_id, details, prev)
                rows.append((seq, now, self.actor, ev.action, ev.object_type, ev.object_id, details, prev, digest))
                prev = digest
            self.bulk_insert(audit_events, _EVENT_COLUMNS, rows)
            self.fetch(_HEAD_UPDATE, {"new_seq": seq, "new_hash": prev})
        if self._cursor is not None:
            self._cursor.close()


class SqlStore:
    """Metadata store over SQLAlchemy (SQLite embedded, PostgreSQL for teams)."""

    def __init__(self, uri: str, *, sqlite_busy_timeout: float = 30.0, migrate: bool = True) -> None:
        self.uri = uri
        self.engine: Engine = engines.create_engine(uri, sqlite_busy_timeout=sqlite_busy_timeout)
        if migrate:
            engines.ensure_schema(self.engine)
        # Each thread keeps one connection for writes: checking one out of the
        # pool and back costs ~70 us, more than a small write transaction itself.
        self._local = threading.local()
        self._held: "weakref.WeakSet[sa.Connection]" = weakref.WeakSet()
        self._checkpointer: WalCheckpointer | None = None
        database = self.engine.url.database
        if self.dialect == "sqlite" and database and database != ":memory:":
            self._checkpointer = WalCheckpointer(self.engine, database)
            self._checkpointer.start()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def write(self, actor: str, fn: Callable[[Tx], T], *, role: str | None = None,
              token_hash: str | None = None, what: str | None = None) -> T:
        """Run ``fn`` in one write transaction, append its audit events, commit.

        With ``role``, the actor (or the owner of ``token_hash``) must hold it
        (checked first, in the same transaction). A refusal (PermissionDenied,
        PolicyViolation) rolls the change back and is then recorded as an
        audit event of its own.

        Transient contention (SQLite busy, PostgreSQL deadlock or serialization
        failure, a unique-key race between two inserters) is retried with
        jittered back-off; ``fn`` must therefore only touch the database.
        """
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            conn = self._write_connection()
            try:
                with conn.begin():
                    tx = Tx(conn, actor)
                    if role is not None:
                        tx.authorize(role, token_hash=token_hash, what=what)
                    result = fn(tx)
                    tx._finish()
                return result
            except KeelError as exc:
                action = getattr(exc, "audit_action", None)
                if action:
                    self._record_refusal(actor, action, exc, what)
                raise
            except sa.exc.DBAPIError as exc:
                if not exc.connection_invalidated and not conn.invalidated:
                    if isinstance(exc, sa.exc.IntegrityError):
                        if attempt >= 3:
                            raise Conflict(f"conflicting concurrent change: {_first_line(exc)}") from exc
                    elif not isinstance(exc, sa.exc.OperationalError) or not _is_transient(exc) \
                            or attempt == _MAX_ATTEMPTS:
                        raise
                elif attempt == _MAX_ATTEMPTS:
                    raise
                else:  # the server dropped the connection: take a fresh one and retry
                    self._local.conn = None
            time.sleep(min(0.5, 0.005 * 2**attempt) * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable")

    def _record_refusal(self, actor: str, action: str, exc: KeelError, what: str | None) -> None:
        object_type, object_id = getattr(exc, "audit_object", None) or ("actor", actor)

        def record(tx: Tx) -> None:
            tx.audit(action, object_type, object_id, {"attempted": what, "reason": str(exc)})

        self.write(actor, record)

    def _write_connection(self) -> sa.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.invalidated or self._local.pid != os.getpid():
            conn = self._local.conn = self.engine.connect()
            self._local.pid = os.getpid()  # never reuse a connection across fork()
            self._held.add(conn)
        return conn

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A read-only connection (no write lock on SQLite)."""
        with self.engine.connect().execution_options(**engines.read_options()) as conn:
            with conn.begin():
                yield conn

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        for conn in list(self._held):
            conn.close()
        self.engine.dispose()


def _is_transient(exc: sa.exc.OperationalError) -> bool:
    if getattr(exc.orig, "sqlstate", None) in _PG_TRANSIENT:
        return True
    text = str(exc.orig).lower()
    return "database is locked" in text or "database is busy" in text or "deadlock" in text


def _first_line(exc: Exception) -> str:
    return str(getattr(exc, "orig", exc)).strip().splitlines()[0]
