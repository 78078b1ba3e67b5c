"""Client-side metric buffer: logging a metric is a tuple append.

Values are written in bulk, one transaction per flush: when the buffer holds
``max_items`` values, when a value has waited ``interval`` seconds (a daemon
thread), at run end, at interpreter exit, and on demand (``keel.flush()``).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from typing import Callable, Sequence

from keel.errors import KeelError

log = logging.getLogger("keel.tracking")

Row = tuple  # a metrics row: see keel.service.tracking.MetricRow
_live: "weakref.WeakSet[MetricBuffer]" = weakref.WeakSet()


class MetricBuffer:
    """Thread-safe append-only buffer in front of a bulk writer."""

    def __init__(self, write: Callable[[Sequence[Row]], None], *, max_items: int, interval: float) -> None:
        self._write = write
        self._max = max_items
        self._interval = interval
        self._items: deque[Row] = deque()  # append/popleft are atomic: no lock on the hot path
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.background_error: BaseException | None = None
        _live.add(self)

    def add(self, row: Row) -> None:
        self._items.append(row)
        if len(self._items) >= self._max:
            self.flush()
        elif self._thread is None:
            self._start_thread()

    def __len__(self) -> int:
        return len(self._items)

    def flush(self) -> None:
        """Write everything buffered now. Errors are raised to the caller.

        A refused batch (unknown run, invalid value) is dropped with the error;
        a failed write for any other reason is put back to be retried.
        """
        with self._flush_lock:
            n = len(self._items)
            if not n:
                return
            pop = self._items.popleft
            batch = [pop() for _ in range(n)]
            try:
                self._write(batch)
            except KeelError:
                raise
            except BaseException:
                self._items.extendleft(reversed(batch))
                raise

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self.flush()

    def _start_thread(self) -> None:
        with self._flush_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="keel-metric-flush", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            if self._closed:
                return
            if self._items:
                try:
                    self.flush()
                    self.background_error = None
                except BaseException as exc:  # keep the thread alive; the next foreground flush reports it
                    self.background_error = exc
                    log.warning("keel: background metric flush failed: %s", exc)
                    time.sleep(self._interval)


@atexit.register
def _flush_all_at_exit() -> None:
    for buf in list(_live):
        try:
            buf.close()
        except BaseException as exc:  # at exit there is no caller left to raise to
            log.error("keel: could not flush %d metric values at exit: %s", len(buf), exc)
