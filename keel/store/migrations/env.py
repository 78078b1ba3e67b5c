"""Alembic environment: keel runs migrations in-process on a connection it
already holds (see keel.store.engine.upgrade), never from an alembic.ini."""

from __future__ import annotations

from alembic import context

from keel.store.schema import metadata

# Arbitrary constant naming keel's migration lock on PostgreSQL.
_PG_MIGRATION_LOCK = 0x6B65656C

connection = context.config.attributes["connection"]
if connection.dialect.name == "postgresql":
    # Several processes may open a new database at once; the transaction-level
    # advisory lock makes them migrate one after the other. (SQLite writers are
    # already serialised by BEGIN IMMEDIATE.)
    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
