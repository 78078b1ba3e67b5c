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

The queue is kept as columns, one buffer per model version, that each call
extends, and it holds no Python object per request: request ids are joined
into one string per call, times go into typed arrays and numeric tensors into
bytes, so nothing a request allocates outlives it and the writer does not
loop over requests. Queueing a tuple of lists per call left the garbage
collector thousands of live containers to track; they reached its older
generations and set off full collections, which cost the request loop more
than all the rest of the log together. What logging still costs the request
loop, and how it was measured: docs/prediction-log.md, "Cost".
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from keel.serving import spool

log = logging.getLogger("keel.serving.predlog")
_live: "weakref.WeakSet[PredictionLog]" = weakref.WeakSet()
PASS_SECONDS = 5.0  # the ingester also looks at the spool this often (segments of other processes)
MAX_BACKOFF = 60.0
WARN_EVERY = 60.0  # seconds between two warnings about dropped rows


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
        self._buffers: dict[tuple[Any, ...], _Buffer] = {}  # the queue
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

    def record(self, model: str, version: int, request_ids: Sequence[str], received_ms: Sequence[int] | np.ndarray,
               latency_ms: Sequence[float] | np.ndarray, inputs: Mapping[str, np.ndarray],
               outputs: Mapping[str, np.ndarray], rows: Sequence[int] | None = None) -> bool:
        """Queue one executed batch; False (counted as dropped) when the queue is full, closed, or the call malformed.

        ``request_ids``, ``received_ms`` (epoch ms) and ``latency_ms`` have one
        entry per request; ``rows`` the number of rows of each request when it
        is not one each. ``inputs`` and ``outputs`` are the batch's tensors,
        one row per prediction. The arrays are kept, not copied: do not change
        them afterwards.
        """
        k = len(request_ids)
        n = k if rows is None else sum(rows)
        problem = _problem(k, n, received_ms, latency_ms, rows, inputs, outputs)
        try:  # typed copies before the lock: a bad value fails here, with the queue untouched
            call = _Call(spool.JoinedStrings("".join(request_ids), array("q", map(len, request_ids))),
                         array("q", received_ms), array("d", latency_ms), None if rows is None else array("q", rows), n)
        except (TypeError, ValueError, OverflowError) as exc:
            problem = problem or f"request ids must be strings and times numbers ({exc})"
        if problem is not None:
            self._count_dropped(n, f"a malformed batch of {model!r} version {version}: {problem}")
            return False
        key = (model, version, tuple(inputs), tuple(outputs))
        with self._lock:
            if self._closed or self._pending_rows + n > self._max_pending:
                self._dropped += n
                return False
            buffer = self._buffers.get(key)
            if buffer is None or not buffer.fits(inputs, outputs):
                if buffer is not None:  # the model changed a dtype or a shape: queue a new buffer behind it
                    self._full.append(buffer)
                buffer = self._buffers[key] = _Buffer(key, inputs, outputs)
            buffer.add(call, inputs, outputs)
            self._pending_rows += n
        return True

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
                buffers = [*self._full, *self._buffers.values()]
                self._full, self._buffers = [], {}
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
        key = buffer.key[:2]
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


@dataclass
class _Call:
    """One ``record`` call's per-request values, already typed."""

    ids: spool.JoinedStrings
    received: array  # int64 epoch ms
    latency: array  # float64 ms
    rows: array | None  # int64 rows per request; None: one each
    n: int


class _Buffer:
    """Queued calls of one model version whose tensors have the same names, dtypes and row shapes.

    Numeric tensors are copied into one growing ``bytearray`` per tensor as
    they are recorded, so the batch's arrays are freed on the request path
    at once and the writer gets each column as one array without a
    concatenation. Other tensors (strings, objects) are kept as arrays.
    """

    def __init__(self, key: tuple[Any, ...], inputs: Mapping[str, np.ndarray],
                 outputs: Mapping[str, np.ndarray]) -> None:
        self.key = key  # (model, version, input names, output names)
        self.ids: list[str] = []  # one string per call: its request ids joined
        self.id_lengths = array("q")  # per request, in characters
        self.received = array("q")
        self.latency = array("d")
        self.rows = array("q")  # per request, once some request has several rows (until then: empty)
        self.call_requests: list[int] = []  # of each call, to write them one by one if need be
        self.call_rows: list[int] = []
        self.n = 0
        self.inputs = {name: _Column(array_) for name, array_ in inputs.items()}
        self.outputs = {name: _Column(array_) for name, array_ in outputs.items()}

    @property
    def multi(self) -> bool:
        return len(self.rows) > 0

    def fits(self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> bool:
        """Whether a call's tensors can join this buffer's columns (same dtypes and row shapes)."""
        for columns, tensors in ((self.inputs, inputs), (self.outputs, outputs)):
            for name, tensor in tensors.items():
                if not columns[name].fits(tensor):
                    return False
        return True

    def add(self, call: _Call, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> None:
        k = len(call.received)
        if call.rows is not None or self.multi:
            if not self.multi:  # the first request of several rows: the earlier ones had one each
                self.rows.extend(_ONE * len(self.received))
            self.rows.extend(call.rows if call.rows is not None else _ONE * k)
        self.ids.append(call.ids.text)
        self.id_lengths.extend(call.ids.lengths)
        self.received.extend(call.received)
        self.latency.extend(call.latency)
        self.call_requests.append(k)
        self.call_rows.append(call.n)
        self.n += call.n
        for name, tensor in inputs.items():
            self.inputs[name].add(tensor)
        for name, tensor in outputs.items():
            self.outputs[name].add(tensor)

    def chunk(self) -> spool.EncodedChunk:
        return self._encode(0, len(self.received), 0, self.n, "".join(self.ids), *self._tensors())

    def each_call(self) -> Iterator[tuple[int, spool.EncodedChunk | Exception]]:
        """(rows, encoded chunk or the error that refused it) of each call on its own."""
        inputs, outputs = self._tensors()
        first = start = 0  # the call's first request, first row
        for text, k, n in zip(self.ids, self.call_requests, self.call_rows):
            try:
                yield n, self._encode(first, first + k, start, start + n, text, inputs, outputs)
            except Exception as exc:  # noqa: BLE001
                yield n, exc
            first, start = first + k, start + n

    def _tensors(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        return ({name: column.array() for name, column in self.inputs.items()},
                {name: column.array() for name, column in self.outputs.items()})

    def _encode(self, first: int, last: int, start: int, end: int, ids: str, inputs: dict[str, np.ndarray],
                outputs: dict[str, np.ndarray]) -> spool.EncodedChunk:
        """Requests ``first:last`` (rows ``start:end``), whose ids joined are ``ids``."""
        lengths = np.frombuffer(self.id_lengths, np.int64)[first:last]
        return spool.encode_chunk(spool.JoinedStrings(ids, lengths),
                                  np.frombuffer(self.received, np.int64)[first:last],
                                  np.frombuffer(self.latency, np.float64)[first:last],
                                  {name: tensor[start:end] for name, tensor in inputs.items()},
                                  {name: tensor[start:end] for name, tensor in outputs.items()},
                                  np.frombuffer(self.rows, np.int64)[first:last] if self.multi else None)


_ONE = array("q", [1])


class _Column:
    """One tensor's queued rows: numeric ones as bytes in a ``bytearray``, others as a list of arrays."""

    __slots__ = ("dtype", "tail", "data", "arrays")

    def __init__(self, tensor: np.ndarray) -> None:
        self.dtype, self.tail = tensor.dtype, tensor.shape[1:]
        self.data = bytearray() if tensor.dtype.kind in spool.NUMERIC_KINDS else None
        self.arrays: list[np.ndarray] = []

    def fits(self, tensor: np.ndarray) -> bool:
        if tensor.shape[1:] != self.tail:
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


def _problem(k: int, n: int, received: Any, latency: Any, rows: Sequence[int] | None,
             inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> str | None:
    """Why a call's parts do not line up (None: they do). Cheap: it runs on the request path."""
    try:
        if len(received) != k or len(latency) != k or (rows is not None and len(rows) != k):
            return f"{k} request ids, {len(received)} times, {len(latency)} latencies"
        for tensors in (inputs, outputs):
            for name, tensor in tensors.items():
                if len(tensor) != n:
                    return f"{name!r} has {len(tensor)} rows, expected {n}"
    except TypeError as exc:  # a scalar where an array belongs
        return str(exc)
    return None


@atexit.register
def _close_all_at_exit() -> None:
    """A server that exits without closing its log still keeps what it acknowledged."""
    for predlog in list(_live):
        predlog.close()
