"""The inference server's prediction log: recording a batch is an append to memory.

The request path only appends to a bounded in-memory queue
(:meth:`PredictionLog.record`). A writer thread turns what is queued into
chunks appended to one segment file per model version in the spool
directory (see :mod:`keel.serving.spool`; no pyarrow in the server), and flushes and fsyncs every
``flush_interval`` seconds: that is when a prediction becomes durable. It
seals a segment after ``segment_seconds`` or ``segment_rows``; an ingester
thread then hands each sealed segment to ``ingest`` (normally
``keel.service.predictions.ingest_segment``) and deletes it. If the store is
away, segments wait on disk and the ingester retries with back-off.

When the queue holds ``max_pending_rows`` rows, ``record`` drops the batch and
counts it instead of growing: memory stays bounded even if the disk stalls.

A call is queued as it is (a tuple of the caller's lists and arrays) until
``GROUP`` calls of its model version wait; they are then checked and folded
together into columns, one buffer per model version, which hold no Python
object per request: request ids are joined into one string, times go into
typed arrays and numeric tensors into bytes, so the writer does not loop over
requests. Folding 32 calls at once rather than each on its own took the
server's batch callback from 4.2 to 2.6 µs per call of 7 requests in a tight
loop, and from about 8.8 to 7.7 µs timed inside a loaded server. Holding each call's objects until the
writer flushed (0.2 s) left the garbage collector thousands of live
containers to track; they reached its older generations and set off full
collections, which cost more than all the rest of the log: 32 calls stay far
below its first threshold. What logging still costs the request loop, and
how it was measured: docs/prediction-log.md, "Cost".
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
import time
import weakref
from array import array
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from keel.serving import spool

log = logging.getLogger("keel.serving.predlog")
_live: "weakref.WeakSet[PredictionLog]" = weakref.WeakSet()
PASS_SECONDS = 5.0  # the ingester also looks at the spool this often (segments of other processes)
MAX_BACKOFF = 60.0
WARN_EVERY = 60.0  # seconds between two warnings about dropped rows
# Calls of one model version queued as they are before being folded into columns together: a request
# path that only appends a tuple, while what is held stays far below the collector's first threshold.
GROUP = 32
_Call = tuple  # (request_ids, started, finished, epoch offset, rows or None, row count, inputs, outputs)


class PredictionLog:
    """Spool every answered request to disk off the request path, then into the store.

    Args:
        spool_dir: Local directory of the spool (created if missing). Several
            processes may share it; segments left by a crashed process are
            sealed when a log starts on it and ingested with the others.
        ingest: Called with the path of each sealed segment, in a background
            thread; None keeps sealed segments on disk.
        flush_interval: Seconds between flushes (write, fsync) of open segments.
        segment_seconds: Age at which a segment is sealed for ingestion.
        segment_rows: Rows at which a segment is sealed for ingestion.
        max_pending_rows: Rows the in-memory queue may hold before ``record`` drops.
    """

    def __init__(self, spool_dir: str | Path, ingest: Callable[[Path], Any] | None, *,
                 flush_interval: float = 0.2, segment_seconds: float = 5.0, segment_rows: int = 50_000,
                 max_pending_rows: int = 200_000) -> None:
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._ingest = ingest
        self._flush_interval, self._segment_seconds = flush_interval, segment_seconds
        self._segment_rows, self._max_pending = segment_rows, max_pending_rows
        self._lock = threading.Lock()  # guards the queue and the counters that record() touches
        self._waiting: dict[tuple[str, int], list[_Call]] = {}  # calls as recorded, fewer than GROUP a key
        self._buffers: dict[tuple[str, int], _Buffer] = {}  # the queue, in columns
        self._full: list[_Buffer] = []  # queued buffers that took no more calls (another dtype or shape came)
        self._pending_rows = self._logged = self._dropped = 0
        self._warned = -WARN_EVERY
        self._ingested = self._ingest_errors = 0
        self._closed = False
        self._segments: dict[tuple[str, int], spool.Segment] = {}  # writer thread only
        self._stop = threading.Event()
        self._wake_ingester = threading.Event()
        self._writer_done = threading.Event()
        spool.seal_abandoned(self.spool_dir)  # before our own writer opens anything
        self._writer = threading.Thread(target=self._write_loop, name="keel-predlog-writer", daemon=True)
        self._writer.start()
        self._ingester: threading.Thread | None = None
        if ingest is not None:
            self._wake_ingester.set()  # first pass at once: leftovers of an earlier run
            self._ingester = threading.Thread(target=self._ingest_loop, name="keel-predlog-ingest", daemon=True)
            self._ingester.start()
        _live.add(self)

    def record(self, model: str, version: int, request_ids: Sequence[str], started: Sequence[float] | np.ndarray,
               finished: float, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray],
               rows: Sequence[int] | None = None, *, epoch_offset: float | None = None) -> bool:
        """Queue one executed batch; False (counted as dropped) when the queue is full or closed.

        ``request_ids`` and ``started`` (when each request arrived) have one
        entry per request; ``finished`` is when the batch was answered, so a
        request's latency is ``finished`` less its start. Times are seconds of
        ``time.perf_counter()``; ``epoch_offset``, when given, is instead what
        turns them into Unix time (0.0 for Unix seconds). ``rows`` is the number
        of rows of each request when it is not one each. ``inputs`` and
        ``outputs`` are the batch's tensors, one row per prediction.

        The call is kept as it is (do not change its lists or arrays
        afterwards) until ``GROUP`` calls of its model version are queued;
        they are then checked and folded into the queue's columns together.
        A call found malformed then (ids that are not strings or hold a NUL,
        times that are not numbers, tensors whose rows do not add up) is
        dropped, counted in ``stats()['dropped']`` and warned about. Only a
        call whose counts disagree at once is refused here.
        """
        k = len(request_ids)
        try:
            n = k if rows is None else sum(rows)
            problem = None if len(started) == k and (rows is None or len(rows) == k) else \
                f"{k} request ids but another number of times or row counts"
            offset = time.time() - time.perf_counter() if epoch_offset is None else float(epoch_offset)
        except (TypeError, ValueError) as exc:
            n, problem = k, str(exc)
        if problem is not None:
            return self._refuse(n, model, version, problem)
        key = (model, version)
        with self._lock:
            if self._closed or self._pending_rows + n > self._max_pending:
                self._dropped += n
                return False
            self._pending_rows += n
            waiting = self._waiting.get(key)
            if waiting is None:
                waiting = self._waiting[key] = []
            waiting.append((request_ids, started, finished, offset, rows, n, inputs, outputs))
            if len(waiting) < GROUP:
                return True
            del self._waiting[key]
            dropped = self._absorb(key, waiting)
        for lost, why in dropped:
            self._count_dropped(lost, why)
        return True

    def _refuse(self, rows: int, model: str, version: int, problem: str) -> bool:
        self._count_dropped(rows, f"a malformed batch of {model!r} version {version}: {problem}")
        return False

    def _absorb(self, key: tuple[str, int], calls: list[_Call]) -> list[tuple[int, str]]:
        """Fold queued calls into their buffer's columns (under the lock); (rows, why) of those dropped."""
        buffer = self._buffers.get(key)
        if buffer is not None and buffer.add_group(calls):
            return []
        dropped = []
        for call in calls:  # one by one: some call does not fit the others, or this buffer
            try:
                problem = self._absorb_one(key, call)
            except Exception as exc:  # noqa: BLE001 - one odd call must not stop the request loop or the writer
                problem = f"{type(exc).__name__}: {exc}"
            if problem is not None:
                self._pending_rows -= call[5]
                dropped.append((call[5], f"a malformed batch of {key[0]!r} version {key[1]}: {problem}"))
        return dropped

    def _absorb_one(self, key: tuple[str, int], call: _Call) -> str | None:
        """Queue one call (under the lock); why it cannot be, or None."""
        request_ids, started, finished, offset, rows, n, inputs, outputs = call
        k = len(request_ids)
        try:
            ids = "\0".join(request_ids)
            start, end, counts = array("d", started), float(finished), None if rows is None else array("q", rows)
        except (TypeError, ValueError, OverflowError) as exc:
            return f"request ids must be strings and times numbers ({exc})"
        if k and ids.count("\0") != k - 1:
            return "a request id holds a NUL character"
        buffer = self._buffers.get(key)
        if buffer is not None and buffer.add(ids, start, end, offset, counts, n, inputs, outputs):
            return None
        problem = _problem(n, inputs, outputs)
        if problem is None:
            if buffer is not None:  # the model changed a name, dtype or shape: a new buffer behind it
                self._full.append(buffer)
            buffer = self._buffers[key] = _Buffer(key, inputs, outputs)
            buffer.add(ids, start, end, offset, counts, n, inputs, outputs)
        return problem

    def stats(self) -> dict[str, int]:
        """Counters in rows (``segments_ingested``, ``ingest_errors``: in segments, attempts)."""
        return {"logged": self._logged, "dropped": self._dropped, "pending": self._pending_rows,
                "segments_ingested": self._ingested, "ingest_errors": self._ingest_errors}

    def close(self, timeout: float = 10.0) -> None:
        """Write and seal everything queued, then ingest what is sealed, within ``timeout`` seconds.

        What the ingester could not store in time stays in the spool directory
        and is ingested by the next log started on it (or ``keel.service.predictions.ingest_spool``).
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
        self._stop.set()
        self._writer.join(timeout)
        if self._ingester is not None:
            self._wake_ingester.set()
            self._ingester.join(max(0.0, deadline - time.monotonic()))
        if self._writer.is_alive() or (self._ingester is not None and self._ingester.is_alive()):
            log.warning("keel: the prediction log did not finish within %.1f s; what is sealed stays in %s",
                        timeout, self.spool_dir)
        _live.discard(self)

    # -- writer thread -----------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            stopping = self._stop.wait(self._flush_interval)
            with self._lock:
                waiting, self._waiting = self._waiting, {}
                dropped = [d for key, calls in waiting.items() for d in self._absorb(key, calls)]
                buffers = [*self._full, *self._buffers.values()]
                self._full, self._buffers = [], {}
            for rows, why in dropped:
                self._count_dropped(rows, why)
            try:
                for buffer in buffers:
                    self._append(buffer)
                self._sync(seal_all=stopping)
            except Exception:  # noqa: BLE001 - the thread must outlive any one bad flush
                log.exception("keel: prediction log flush failed")
            with self._lock:  # counted until written, so the queue bound covers the writer's hands too
                self._pending_rows -= sum(buffer.n for buffer in buffers)
            if stopping:
                break
        self._writer_done.set()
        self._wake_ingester.set()

    def _append(self, buffer: _Buffer) -> None:
        key = buffer.key
        try:
            chunks = [(buffer.n, buffer.chunk())]
        except Exception:  # noqa: BLE001 - calls that do not fit together: write them one by one
            chunks = list(buffer.each_call())
        for rows, chunk in chunks:
            if isinstance(chunk, Exception):
                self._count_dropped(rows, f"a malformed batch of {key[0]!r} version {key[1]}: {chunk}")
                continue
            try:
                self._write(key, chunk)
            except Exception as exc:  # noqa: BLE001 - a full or failing disk
                self._count_dropped(rows, f"writing to the spool failed: {exc}")
                segment = self._segments.pop(key, None)
                if segment is not None:
                    segment.discard()

    def _write(self, key: tuple[str, int], chunk: spool.EncodedChunk) -> None:
        segment = self._segments.get(key)
        if segment is not None and (segment.signature != chunk.signature or segment.rows >= self._segment_rows):
            self._seal(key)  # other tensors (the model changed its outputs) start a new segment
            segment = None
        if segment is None:
            segment = self._segments[key] = spool.Segment(self.spool_dir, key[0], key[1], chunk.signature)
        segment.write(chunk)
        self._logged += chunk.rows  # only this thread writes it

    def _sync(self, *, seal_all: bool) -> None:
        now = time.monotonic()
        for key, segment in list(self._segments.items()):
            if seal_all or segment.rows >= self._segment_rows or now - segment.opened >= self._segment_seconds:
                self._seal(key)
            else:
                segment.sync()

    def _seal(self, key: tuple[str, int]) -> None:
        self._segments.pop(key).seal()
        self._wake_ingester.set()

    def _count_dropped(self, rows: int, why: str) -> None:
        with self._lock:
            self._dropped += rows
            now = time.monotonic()
            if now - self._warned < WARN_EVERY:
                return
            self._warned = now
        log.warning("keel: dropped %d prediction rows: %s (stats()['dropped'] counts them all)", rows, why)

    # -- ingester thread ---------------------------------------------------
    def _ingest_loop(self) -> None:
        failures = 0
        while True:
            self._wake_ingester.wait(min(MAX_BACKOFF, 2.0 ** failures) if failures else PASS_SECONDS)
            self._wake_ingester.clear()
            final = self._writer_done.is_set()  # read before the pass: then it sees every sealed segment
            try:
                for _ in spool.drain(self.spool_dir, self._ingest):  # type: ignore[arg-type]
                    self._ingested += 1
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the store may be away for a while
                failures += 1
                self._ingest_errors += 1
                log.warning("keel: could not ingest prediction segments from %s (attempt %d): %s",
                            self.spool_dir, failures, exc)
            if final:
                return


class _Buffer:
    """Queued calls of one model version whose tensors have the same names, dtypes and row shapes.

    Numeric tensors are copied into one growing ``bytearray`` per tensor as
    they are recorded, so the batch's arrays are freed on the request path
    at once and the writer gets each column as one array without a
    concatenation. Other tensors (strings, objects) are kept as arrays.
    Times stay as recorded (starts per request; finish and clock offset per
    call): the writer turns them into ``received_ms`` and ``latency_ms``.
    """

    def __init__(self, key: tuple[str, int], inputs: Mapping[str, np.ndarray],
                 outputs: Mapping[str, np.ndarray]) -> None:
        self.key = key  # (model, version)
        self.ids: list[str] = []  # the request ids of a call, or of a group of calls, joined by NULs
        self.id_requests = array("q")  # of each entry of ids, as the next one
        self.id_rows = array("q")
        self.started = array("d")  # per request
        self.finished = array("d")  # per call, as the next two
        self.offsets = array("d")  # seconds from the call's clock to Unix time
        self.call_requests = array("q")
        self.rows = array("q")  # per request, once some request has several rows (until then: empty)
        self.n = 0
        self.inputs = [_Column(name, tensor) for name, tensor in inputs.items()]
        self.outputs = [_Column(name, tensor) for name, tensor in outputs.items()]

    def add(self, ids: str, started: array, finished: float, offset: float, counts: array | None, n: int,
            inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> bool:
        """Queue a call; False, with nothing queued, if its tensors do not fit this buffer's columns."""
        for columns, tensors in ((self.inputs, inputs), (self.outputs, outputs)):
            if len(columns) != len(tensors):
                return False
            for column, (name, tensor) in zip(columns, tensors.items()):
                if not column.fits(name, tensor, n):
                    return False
        k = len(started)
        if counts is not None or self.rows:
            if not self.rows:  # the first request of several rows: the earlier ones had one each
                self.rows.extend(_ONE * len(self.started))
            self.rows.extend(counts if counts is not None else _ONE * k)
        self.ids.append(ids)
        self.id_requests.append(k)
        self.id_rows.append(n)
        self.started.extend(started)
        self.finished.append(finished)
        self.offsets.append(offset)
        self.call_requests.append(k)
        self.n += n
        for column, tensor in zip(self.inputs, inputs.values()):
            column.add(tensor)
        for column, tensor in zip(self.outputs, outputs.values()):
            column.add(tensor)
        return True

    def add_group(self, calls: list[_Call]) -> bool:
        """Queue calls together (no request of several rows, numeric tensors only); False, with nothing
        queued, if any call does not fit the others or this buffer. A few operations for all the calls."""
        id_lists, starts, finishes, offsets, row_counts, per_call, input_maps, output_maps = zip(*calls)
        if row_counts.count(None) != len(calls):
            return False
        k = sum(per_call)
        try:
            ids = "\0".join(map("\0".join, id_lists))
            if k and ids.count("\0") != k - 1:
                return False
            started = memoryview(np.fromiter(itertools.chain.from_iterable(starts), np.float64, k)).cast("B")
            finished, offset = array("d", finishes), array("d", offsets)
            tensors = []
            for columns, maps in ((self.inputs, input_maps), (self.outputs, output_maps)):
                if set(map(len, maps)) != {len(columns)}:
                    return False  # other names (the same number of them, all found below, are the same names)
                for column in columns:
                    if column.data is None:
                        return False  # strings and objects: each call is checked on its own
                    arrays = [tensors_[column.name] for tensors_ in maps]
                    joined = np.concatenate(arrays, dtype=column.dtype, casting="no")
                    if joined.shape[1:] != column.tail or tuple(map(len, arrays)) != per_call:
                        return False
                    tensors.append((column, joined))
        except Exception:  # noqa: BLE001 - whatever the checks meet, nothing is queued yet: call by call then
            return False
        self.ids.append(ids)
        self.id_requests.append(k)
        self.id_rows.append(k)
        self.started.frombytes(started)  # the doubles' bytes: one copy
        if self.rows:
            self.rows.extend(_ONE * k)
        self.finished.extend(finished)
        self.offsets.extend(offset)
        self.call_requests.extend(per_call)
        self.n += k
        for column, joined in tensors:
            column.data.extend(joined)  # type: ignore[union-attr]
        return True

    def chunk(self) -> spool.EncodedChunk:
        received, latency = self._times()
        inputs, outputs = self._tensors()
        return spool.encode_chunk(spool.JoinedStrings("\0".join(self.ids), len(self.started)), received, latency,
                                  inputs, outputs, np.frombuffer(self.rows, np.int64) if self.rows else None)

    def each_call(self) -> Iterator[tuple[int, spool.EncodedChunk | Exception]]:
        """(rows, encoded chunk or the error that refused it) of each call (or group of calls) on its own."""
        (received, latency), counts = self._times(), np.frombuffer(self.rows, np.int64) if self.rows else None
        inputs, outputs = self._tensors()
        first = start = 0  # the call's first request, first row
        for text, k, n in zip(self.ids, self.id_requests, self.id_rows):
            try:
                yield n, spool.encode_chunk(spool.JoinedStrings(text, k), received[first:first + k],
                                            latency[first:first + k],
                                            {name: tensor[start:start + n] for name, tensor in inputs.items()},
                                            {name: tensor[start:start + n] for name, tensor in outputs.items()},
                                            None if counts is None else counts[first:first + k])
            except Exception as exc:  # noqa: BLE001
                yield n, exc
            first, start = first + k, start + n

    def _times(self) -> tuple[np.ndarray, np.ndarray]:
        """Per request: received_ms (Unix milliseconds, rounded) and latency_ms."""
        started, per_call = np.frombuffer(self.started, np.float64), np.frombuffer(self.call_requests, np.int64)
        finished = np.repeat(np.frombuffer(self.finished, np.float64), per_call)
        offsets = np.repeat(np.frombuffer(self.offsets, np.float64), per_call)
        return np.rint((started + offsets) * 1000).astype(np.int64), (finished - started) * 1000

    def _tensors(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        return ({column.name: column.array() for column in self.inputs},
                {column.name: column.array() for column in self.outputs})


_ONE = array("q", [1])


class _Column:
    """One tensor's queued rows: numeric ones as bytes in a ``bytearray``, others as a list of arrays."""

    __slots__ = ("name", "dtype", "tail", "data", "arrays")

    def __init__(self, name: str, tensor: np.ndarray) -> None:
        self.name, self.dtype, self.tail = name, tensor.dtype, tensor.shape[1:]
        self.data = bytearray() if tensor.dtype.kind in spool.NUMERIC_KINDS else None
        self.arrays: list[np.ndarray] = []

    def fits(self, name: str, tensor: np.ndarray, rows: int) -> bool:
        """Whether ``tensor``, named ``name``, of ``rows`` rows, can join this column."""
        try:
            if name != self.name or len(tensor) != rows or tensor.shape[1:] != self.tail:
                return False
        except (TypeError, AttributeError):  # a scalar, or not an array at all
            return False
        if self.data is None:
            return tensor.dtype.kind not in spool.NUMERIC_KINDS  # strings of any width concatenate
        return tensor.dtype is self.dtype or tensor.dtype == self.dtype

    def add(self, tensor: np.ndarray) -> None:
        if self.data is None:
            self.arrays.append(tensor)
            return
        try:
            self.data.extend(tensor)  # the buffer protocol: one memcpy (not +=: numpy would take that as addition)
        except (BufferError, TypeError):  # not C-contiguous
            self.data.extend(np.ascontiguousarray(tensor))

    def array(self) -> np.ndarray:
        """Every queued row as one array (over the bytes, not a copy, for numeric columns)."""
        if self.data is None:
            return self.arrays[0] if len(self.arrays) == 1 else np.concatenate(self.arrays)
        return np.frombuffer(self.data, self.dtype).reshape(-1, *self.tail)


def _problem(n: int, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> str | None:
    """Why a call's tensors cannot be queued (None: they can). Runs only when a call did not fit its buffer."""
    for tensors in (inputs, outputs):
        for name, tensor in tensors.items():
            if not isinstance(name, str):
                return f"tensor names must be strings, got {name!r}"
            if not isinstance(tensor, np.ndarray) or tensor.ndim == 0:
                return f"{name!r} is not an array of rows"
            if len(tensor) != n:
                return f"{name!r} has {len(tensor)} rows, expected {n}"
            if tensor.dtype.kind not in spool.NUMERIC_KINDS and tensor.dtype.kind not in "OUS":
                return f"{name!r} has values of dtype {tensor.dtype}, which cannot be logged"
    return None


@atexit.register
def _close_all_at_exit() -> None:
    """A server that exits without closing its log still keeps what it acknowledged."""
    for predlog in list(_live):
        predlog.close()
