"""Client-side write buffer: logging a metric, a param or a tag is an append.

What the fluent API logs from a run's start to its end (the run itself
included) is written in bulk,
one transaction per flush (keel.service.tracking.write_batch): when
``max_metrics`` values are waiting, when something has waited ``interval``
seconds (a daemon thread), at run end, at interpreter exit, and on demand
(``keel.flush()``). Reads through the same client flush first, so a client
always reads its own writes.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections import deque
from typing import Callable

from keel.errors import KeelError
from keel.service.tracking import MetricRow, NewRun, RunBatch

log = logging.getLogger("keel.tracking")
_live: "weakref.WeakSet[WriteBuffer]" = weakref.WeakSet()


class WriteBuffer:
    """Thread-safe queues in front of one batched writer."""

    def __init__(self, write: Callable[[RunBatch], None], *, max_metrics: int, interval: float) -> None:
        self._write = write
        self._max = max_metrics
        self._interval = interval
        # deque append/popleft are atomic: no lock on the hot path.
        self._metrics: deque[MetricRow] = deque()
        self._params: deque[tuple[str, str, str]] = deque()
        self._tags: deque[tuple[str, str, str]] = deque()
        self._ends: deque[tuple[str, str, int]] = deque()
        self._creates: deque[NewRun] = deque()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        _live.add(self)

    def add_metric(self, row: MetricRow) -> None:
        self._metrics.append(row)
        if len(self._metrics) >= self._max:
            self.flush()
        elif self._thread is None:
            self._start_thread()

    def add_metrics(self, rows: list[MetricRow]) -> None:
        self._metrics.extend(rows)
        if len(self._metrics) >= self._max:
            self.flush()
        elif self._thread is None:
            self._start_thread()

    def add_create(self, run: NewRun) -> None:
        self._creates.append(run)
        if self._thread is None:
            self._start_thread()

    def add_params(self, rows: list[tuple[str, str, str]]) -> None:
        self._params.extend(rows)
        if self._thread is None:
            self._start_thread()

    def add_tags(self, rows: list[tuple[str, str, str]]) -> None:
        self._tags.extend(rows)
        if self._thread is None:
            self._start_thread()

    def add_end(self, run_id: str, status: str, end_time: int) -> None:
        self._ends.append((run_id, status, end_time))

    def __len__(self) -> int:
        return len(self._metrics) + len(self._params) + len(self._tags) + len(self._ends) + len(self._creates)

    def flush(self) -> None:
        """Write everything buffered now, in one transaction. Errors reach the caller.

        If the store refuses the batch (an unknown run, a param changed by
        another process), each run's part is retried on its own so that one
        bad run does not cost the others their data; the refused parts are
        dropped and the first refusal is raised. A batch that failed for any
        other reason (the database went away) is put back to be retried.
        """
        with self._flush_lock:
            batch = RunBatch(_drain(self._params), _drain(self._tags), _drain(self._metrics), _drain(self._ends),
                             _drain(self._creates))
            if not batch:
                return
            try:
                self._write(batch)
            except KeelError as exc:
                if len(batch.run_ids()) == 1:
                    raise
                self._salvage(batch, exc)
            except BaseException:
                self._metrics.extendleft(reversed(batch.metrics))
                self._params.extendleft(reversed(batch.params))
                self._tags.extendleft(reversed(batch.tags))
                self._ends.extendleft(reversed(batch.ends))
                self._creates.extendleft(reversed(batch.creates))
                raise

    def _salvage(self, batch: RunBatch, first: KeelError) -> None:
        refused: KeelError | None = None
        for run_id in batch.run_ids():
            try:
                self._write(batch.only(run_id))
            except KeelError as exc:
                refused = refused or exc
        raise refused or first

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self.flush()

    def _start_thread(self) -> None:
        with self._flush_lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._loop, name="keel-flush", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            if self._closed:
                return
            if len(self):
                try:
                    self.flush()
                except BaseException as exc:  # keep the thread alive; foreground flushes report errors
                    log.warning("keel: background flush failed: %s", exc)


def _drain(queue: deque) -> list:
    pop = queue.popleft
    return [pop() for _ in range(len(queue))]


@atexit.register
def _flush_all_at_exit() -> None:
    for buf in list(_live):
        try:
            buf.close()
        except BaseException as exc:  # at exit there is no caller left to raise to
            log.error("keel: could not write %d buffered values at exit: %s", len(buf), exc)
