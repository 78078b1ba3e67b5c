"""Fixtures: every test gets its own KEEL_HOME and metadata store.

The store is SQLite unless KEEL_TEST_STORE_URI names a PostgreSQL database;
then each test gets its own schema in it (created and dropped here), so the
same tests run against both backends.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa

from keel.settings import Settings

STORE_ENV = "KEEL_TEST_STORE_URI"


@pytest.fixture(autouse=True)
def _finish_background_onnx_copies(store_uri: str) -> Iterator[None]:
    """A test's background ONNX conversions finish before its store is dropped (torn down first)."""
    yield
    import sys

    if "keel.formats.onnx_copy" in sys.modules:
        sys.modules["keel.formats.onnx_copy"].wait(120)


@pytest.fixture
def store_uri(tmp_path: Path) -> Iterator[str]:
    base = os.environ.get(STORE_ENV)
    if not base:
        uri = f"sqlite:///{tmp_path / 'home' / 'keel.db'}"
        yield uri
        _close_shared_clients(uri)
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    uri = url.render_as_string(hide_password=False)
    try:
        yield uri
    finally:
        _close_shared_clients(uri)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def _close_shared_clients(uri: str) -> None:
    """The fluent API keeps a client per store; a test's store goes away with the test."""
    import gc
    import sys

    if "keel.tracking.fluent" in sys.modules:
        sys.modules["keel.tracking.fluent"].close_clients(uri)
    gc.collect()  # clients a test made and dropped release their connections now, not at some later GC


@pytest.fixture
def settings(tmp_path: Path, store_uri: str) -> Settings:
    home = tmp_path / "home"
    return Settings.load(
        {"home": home, "store_uri": store_uri, "artifact_uri": str(home / "artifacts"), "user": "alice"},
        env={}, cwd=tmp_path,
    )


@pytest.fixture
def client(settings: Settings):
    from keel.tracking.client import Client

    c = Client(settings)
    yield c
    c.close()


@pytest.fixture
def keel_env(settings: Settings) -> dict[str, str]:
    """Environment for a child process (CLI or worker) pointing at this test's store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update({
        "KEEL_HOME": str(settings.home), "KEEL_STORE_URI": settings.store_uri,
        "KEEL_ARTIFACT_URI": settings.artifact_uri, "KEEL_USER": settings.user,
    })
    return env


@pytest.fixture
def raw_engine(settings: Settings):
    """A plain engine on the test store, for tampering with it behind keel's back."""
    engine = sa.create_engine(settings.store_uri)
    yield engine
    engine.dispose()
