"""Schema migrations: applied on first use, by `keel db upgrade`, and recorded."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from keel.store import engine as engines
from keel.store.schema import metadata
from keel.store.sql import SqlStore

pytestmark = pytest.mark.store


def test_head_revision_constant_matches_the_migration_scripts():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(engines.MIGRATIONS_DIR))
    scripts = ScriptDirectory.from_config(config)
    assert scripts.get_current_head() == engines.HEAD_REVISION
    assert tuple(reversed([s.revision for s in scripts.walk_revisions()])) == engines.KNOWN_REVISIONS


def test_a_store_from_a_newer_keel_is_refused_clearly(store_uri):
    from keel.errors import ConfigError

    SqlStore(store_uri).close()
    engine = engines.create_engine(store_uri)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engines._upgraded.clear()
    with pytest.raises(ConfigError, match=rf"schema revision '9999', newer than this keel knows \({engines.HEAD_REVISION}\)"):
        SqlStore(store_uri)
    engine.dispose()


def test_first_use_creates_the_schema_that_the_code_expects(store_uri):
    store = SqlStore(store_uri)
    assert engines.current_revision(store.engine) == engines.HEAD_REVISION
    inspector = sa.inspect(store.engine)
    for table in metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == set(table.columns.keys()), table.name
    store.close()


def test_upgrade_is_idempotent(store_uri):
    engine = engines.create_engine(store_uri)
    engines.upgrade(engine)
    engines.upgrade(engine)
    assert engines.current_revision(engine) == engines.HEAD_REVISION
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'k.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    store.close()


def test_foreign_keys_are_enforced(client, raw_engine):
    with pytest.raises(sa.exc.IntegrityError):
        with client.ctx.store.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO params (run_id, key, value) VALUES ('ghost', 'k', 'v')"))


def test_a_store_at_an_older_revision_is_upgraded_on_first_use_keeping_its_data(store_uri):
    engine = engines.create_engine(store_uri)
    engines.upgrade(engine, "0001")  # as an older keel left it
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO experiments (id, name, created_at) VALUES ('e1', 'old', 1)"))
    engine.dispose()
    engines._upgraded.clear()
    store = SqlStore(store_uri)
    assert engines.current_revision(store.engine) == engines.HEAD_REVISION
    with store.read() as conn:
        assert conn.execute(sa.text("SELECT name FROM experiments")).scalar() == "old"
        assert conn.execute(sa.text("SELECT COUNT(*) FROM model_versions")).scalar() == 0
    store.close()
