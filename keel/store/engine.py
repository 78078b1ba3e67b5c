"""Engine creation and schema upgrades for the metadata store.

The only dialect-aware code outside the migrations is here, and it is
connection set-up, not SQL the store runs: SQLite gets WAL, a busy timeout,
foreign keys and BEGIN IMMEDIATE for writers, so that concurrent processes
queue for the write lock instead of failing with "database is locked".
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from keel.errors import ConfigError
from keel.store.checkpoint import SAFETY_NET_PAGES, WAL_SIZE_LIMIT

# Must equal the newest revision in migrations/versions (a test checks it):
# opening an up-to-date store then costs one SELECT and no alembic import.
HEAD_REVISION = "0007"
KNOWN_REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006", "0007")  # oldest first
MIGRATIONS_DIR = Path(__file__).with_name("migrations")

_READ_ONLY = "keel_read_only"
_upgraded: set[str] = set()
_upgrade_lock = threading.Lock()


def create_engine(uri: str, *, sqlite_busy_timeout: float = 30.0) -> Engine:
    """Create an engine for ``uri`` with keel's connection settings."""
    try:
        url = make_url(uri)
    except Exception as exc:
        raise ConfigError(f"KEEL_STORE_URI is not a valid SQLAlchemy URL: {uri!r} ({exc})") from None
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, sqlite_busy_timeout)
    try:
        return sa.create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        hint = " (pip install 'keel[postgres]')" if url.get_backend_name() == "postgresql" else ""
        raise ConfigError(f"no database driver for {url.drivername}: {exc}{hint}") from None


def _sqlite_engine(url: sa.URL, busy_timeout: float) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url, connect_args={"timeout": busy_timeout, "check_same_thread": False}
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take over transaction control from the sqlite3 module so that the
        # "begin" hook below decides what kind of BEGIN is sent.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        cur.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a crash of the process loses nothing committed;
        # only a power cut may lose the last commits, never corrupting the file.
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute(f"PRAGMA wal_autocheckpoint = {SAFETY_NET_PAGES}")  # see store/checkpoint.py
        cur.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # A deferred transaction that reads and then writes can fail at once
        # with SQLITE_BUSY (its busy handler cannot help); IMMEDIATE takes the
        # write lock up front and waits for it.
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        # Straight on the driver: this runs once per transaction, on the hot path.
        conn.connection.driver_connection.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def read_options() -> dict[str, Any]:
    """Execution options for a read-only transaction (no write lock on SQLite)."""
    return {_READ_ONLY: True}


def current_revision(engine: Engine) -> str | None:
    """The schema revision recorded in the store, or None for an empty store."""
    try:
        with engine.connect().execution_options(**read_options()) as conn:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except sa.exc.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    except sa.exc.ProgrammingError:  # PostgreSQL: relation does not exist
        return None


def ensure_schema(engine: Engine) -> None:
    """Apply pending migrations once per engine URL and process (first use)."""
    key = str(engine.url)
    if key in _upgraded:
        return
    with _upgrade_lock:
        if key in _upgraded:
            return
        revision = current_revision(engine)
        if revision is not None and revision not in KNOWN_REVISIONS:
            raise ConfigError(
                f"the store at {engine.url.render_as_string(hide_password=True)} has schema revision "
                f"{revision!r}, newer than this keel knows ({HEAD_REVISION}); upgrade keel"
            )
        if revision != HEAD_REVISION:
            upgrade(engine)
        _upgraded.add(key)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run alembic migrations up to ``revision`` inside one transaction."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
