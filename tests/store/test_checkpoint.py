"""SQLite WAL checkpoints run in the background and keep the log bounded."""

from __future__ import annotations

import os

from keel.store.sql import SqlStore


def test_checkpointer_empties_the_wal_and_stops_with_the_store(tmp_path):
    db = tmp_path / "wal.db"
    store = SqlStore(f"sqlite:///{db}")
    assert store._checkpointer is not None and store._checkpointer._thread.is_alive()

    def write(tx):
        for i in range(200):
            tx.audit("test.write", "thing", str(i), {"i": i})

    for _ in range(20):
        store.write("tester", write)
    assert os.path.getsize(f"{db}-wal") > 0
    store._checkpointer.checkpoint("TRUNCATE")
    assert os.path.getsize(f"{db}-wal") == 0  # everything copied back, log reset
    thread = store._checkpointer._thread
    store.close()
    assert not thread.is_alive()
    reopened = SqlStore(f"sqlite:///{db}")
    with reopened.read() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM audit_events").scalar() == 4000
    reopened.close()
