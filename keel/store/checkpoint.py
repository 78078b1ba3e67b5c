"""SQLite WAL checkpoints off the writers' path.

In WAL mode every commit appends to the ``-wal`` file, and by default the
commit that crosses 1,000 pages copies the WAL back into the database and
fsyncs it, stalling that one caller for milliseconds. That cost, spread over
small transactions, was a third of the time of a short run. A daemon thread
per store runs passive checkpoints instead (they never block writers), and the
connections keep a high automatic threshold only as a safety net.
"""

from __future__ import annotations

import logging
import os
import threading

from sqlalchemy.engine import Engine

log = logging.getLogger("keel.store")

SAFETY_NET_PAGES = 25_000  # wal_autocheckpoint on every connection (~100 MB at 4 KiB pages)
WAL_SIZE_LIMIT = 16 << 20  # journal_size_limit: the WAL file shrinks back to this after a reset
# A passive checkpoint never waits, so under non-stop writing it may never
# catch up and the WAL keeps growing; past this many frames the thread waits
# for a pause (writers queue for a moment on their busy timeout) and truncates.
TRUNCATE_FRAMES = 20_000
INTERVAL_SECONDS = 0.5


class WalCheckpointer:
    """Background passive checkpoints for one SQLite database file."""

    def __init__(self, engine: Engine, db_path: str) -> None:
        self._engine = engine
        self._wal = db_path + "-wal"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, name="keel-wal-checkpoint", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def checkpoint(self, mode: str = "PASSIVE") -> int:
        """One checkpoint now; returns the frames in the WAL. PASSIVE copies
        what it can without waiting; TRUNCATE waits and empties the WAL."""
        if mode not in ("PASSIVE", "TRUNCATE"):
            raise ValueError(f"checkpoint mode must be PASSIVE or TRUNCATE, got {mode!r}")
        raw = self._engine.raw_connection()
        try:
            _busy, frames, _copied = raw.driver_connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            return frames
        finally:
            raw.close()

    def _loop(self) -> None:
        while not self._stop.wait(INTERVAL_SECONDS):
            try:
                if not os.path.exists(self._wal):
                    continue
                if self.checkpoint("PASSIVE") > TRUNCATE_FRAMES:
                    self.checkpoint("TRUNCATE")
            except Exception as exc:  # a failed checkpoint is retried next round; SQLite's safety net remains
                log.debug("keel: background WAL checkpoint failed: %s", exc)
