"""The prediction spool on local disk: the columns, segment files and their locks.

A segment holds predictions of one model version as an Arrow IPC stream,
named ``<created_ms>-<uuid>.open`` while it is written and renamed to
``.arrows`` once closed (sealed). Its file name without the suffix is the
segment's name in the store, unique across processes and hosts. Model and
version travel in the stream's schema metadata.

The writer of an open segment holds an exclusive ``flock`` on it until it is
sealed, so several server processes may share one spool directory: an open
segment that someone else can lock is abandoned (its writer died) and is
sealed as it is. A writer killed mid-write leaves a stream without its end
marker, perhaps with a torn last message; reading stops there and keeps every
batch before it. Platforms without ``fcntl`` get no locks: there, give each
process a spool directory of its own.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

OPEN, SEALED = ".open", ".arrows"
MODEL_KEY, VERSION_KEY = b"keel.model", b"keel.version"
META = ("request_id", "row", "received_ms", "latency_ms")
# Added to a window when it is read (keel.service.predictions); inputs may not take them either.
RESERVED = frozenset({*META, "version", "label"})
OUTPUT_PREFIX, INPUT_PREFIX = "output:", "input:"
SPLIT_MAX = 1024  # a 2-D tensor up to this wide becomes one column per feature; wider ones stay a list


def record_batch(request_ids: Sequence[str], received_ms: Sequence[int] | np.ndarray,
                 latency_ms: Sequence[float] | np.ndarray, inputs: Mapping[str, Any], outputs: Mapping[str, Any],
                 rows: Sequence[int] | None = None) -> pa.RecordBatch:
    """The columns of a batch of answered requests (one row per prediction).

    ``request_ids``, ``received_ms`` and ``latency_ms`` have one entry per
    request; ``rows`` says how many rows each request sent (default one). The
    tensors in ``inputs`` and ``outputs`` have one row per prediction: 1-D
    tensors become one column, 2-D tensors ``x`` of width n become columns
    ``x_0`` .. ``x_{n-1}``, others (and wider ones) one fixed-size list column
    of the row's values. Output columns are prefixed ``output:``; an input
    column whose name is reserved is prefixed ``input:``.
    """
    ids = _strings(request_ids)
    received = np.asarray(received_ms, np.int64)
    latency = np.asarray(latency_ms, np.float64)
    if rows is None:
        row = np.zeros(len(ids), np.int32)
    else:  # spread the per-request fields over each request's rows
        counts = np.asarray(rows, np.int64)
        owner = np.repeat(np.arange(len(counts)), counts)
        ids, received, latency = ids.take(_arrow(owner)), received[owner], latency[owner]
        row = (np.arange(len(owner)) - (np.cumsum(counts) - counts)[owner]).astype(np.int32)
    names: list[str] = list(META)
    arrays: list[pa.Array] = [ids, _arrow(row), _arrow(received), _arrow(latency)]
    for prefix, tensors in (("", inputs), (OUTPUT_PREFIX, outputs)):
        for name, values in tensors.items():
            for column, array in _flatten(prefix + name, np.asarray(values)):
                if not prefix and (column in RESERVED or column.startswith(OUTPUT_PREFIX)):
                    column = INPUT_PREFIX + column
                names.append(column)
                arrays.append(array)
    if len(set(names)) != len(names):
        raise ValueError(f"prediction columns are not unique: {names}")
    return pa.RecordBatch.from_arrays(arrays, names=names)  # raises if row counts disagree


def _flatten(name: str, values: np.ndarray) -> Iterator[tuple[str, pa.Array]]:
    if values.ndim <= 1:
        yield name, _arrow(values.reshape(-1))
    elif values.ndim == 2 and values.shape[1] <= SPLIT_MAX:
        for j in range(values.shape[1]):
            yield f"{name}_{j}", _arrow(values[:, j])
    else:
        width = int(np.prod(values.shape[1:]))
        yield name, pa.FixedSizeListArray.from_arrays(_arrow(values.reshape(-1)), width)


# Arrays are built from their buffers: ``pa.array`` imports pandas on its
# first call (to check for pandas objects), 60 MiB more resident in a server
# whose ONNX fast path otherwise never loads it.
def _arrow(values: np.ndarray) -> pa.Array:
    if values.dtype == object:  # strings, bytes; None becomes null
        return pa.array(values, from_pandas=True)
    if values.dtype == np.float16:  # Parquet readers disagree on half floats
        values = values.astype(np.float32)
    if values.dtype.kind == "b":
        bits = np.packbits(values.astype(bool, copy=False), bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])
    if values.dtype.kind in "iuf" and values.dtype.isnative:
        values = np.ascontiguousarray(values)
        return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])
    return pa.array(values)


def _strings(values: Sequence[str]) -> pa.Array:
    encoded = [v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets),
                                                             pa.py_buffer(b"".join(encoded))])


class Segment:
    """An open segment of one model version, locked by this process until sealed."""

    def __init__(self, spool_dir: Path, model: str, version: int, schema: pa.Schema) -> None:
        while True:
            path = spool_dir / f"{int(time.time() * 1000):013d}-{uuid.uuid4().hex}{OPEN}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            if _lock(fd, path):
                break
            os.close(fd)  # a recovery pass took the new file between open and lock: use another name
        self.path, self.model, self.version = path, model, version
        self.schema = schema.with_metadata({MODEL_KEY: model, VERSION_KEY: str(version)})
        self.rows, self.opened, self._dirty = 0, time.monotonic(), True
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)  # one write() per flush, not one per buffer
        try:
            self._stream = pa.ipc.new_stream(self._file, self.schema)
            self.sync()
            _fsync_dir(spool_dir)  # the new name survives a power cut too
        except BaseException:
            self._file.close()  # unlocked: the next recovery pass seals (or drops) what it holds
            raise

    def conform(self, batch: pa.RecordBatch) -> pa.RecordBatch | None:
        """``batch`` in this segment's schema (safe casts only), or None if it does not fit."""
        if batch.schema.equals(self.schema):
            return batch
        if batch.schema.names != self.schema.names:
            return None
        try:
            return batch.cast(self.schema.remove_metadata())
        except (pa.ArrowException, ValueError, TypeError):
            return None

    def write(self, batch: pa.RecordBatch) -> None:
        self._stream.write_batch(batch)
        self.rows += batch.num_rows
        self._dirty = True

    def sync(self) -> None:
        """The durability point: everything written so far is on disk."""
        if self._dirty:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._dirty = False

    def seal(self) -> Path:
        """Close the stream and rename the file to ``.arrows`` (ready to ingest)."""
        try:
            self._stream.close()  # writes the end marker
            self._dirty = True
            self.sync()
            sealed = self.path.with_suffix(SEALED)
            os.replace(self.path, sealed)
            return sealed
        finally:
            self._file.close()  # releases the lock, after the rename

    def discard(self) -> None:
        """Give up a segment whose file failed: the next recovery pass seals what it holds."""
        try:
            self._file.close()
        except OSError:
            pass


def read_segment(path: Path) -> tuple[str, int, pa.Table] | None:
    """Model, version and rows of a segment file; None when it holds no schema.

    Reading stops at the end marker or at a torn tail (a killed writer)."""
    with pa.OSFile(str(path)) as source:
        try:
            reader = pa.ipc.open_stream(source)
        except (pa.ArrowException, OSError):
            return None  # the writer died before the schema reached the disk
        batches = []
        while True:
            try:
                batches.append(reader.read_next_batch())
            except StopIteration:
                break
            except (pa.ArrowException, OSError):
                break
    meta = reader.schema.metadata or {}
    if MODEL_KEY not in meta or VERSION_KEY not in meta:
        raise ValueError(f"{path} is not a keel prediction segment (no model and version in its schema)")
    table = pa.Table.from_batches(batches, reader.schema.remove_metadata())
    return meta[MODEL_KEY].decode(), int(meta[VERSION_KEY]), table


def segment_name(path: Path) -> str:
    return path.name.split(".", 1)[0]


def seal_abandoned(spool_dir: Path) -> int:
    """Seal the open segments whose writer is gone; returns how many."""
    sealed = 0
    for path in sorted(spool_dir.glob("*" + OPEN)):
        fd = _claim(path)
        if fd is None:
            continue  # a live writer holds it
        try:
            os.replace(path, path.with_suffix(SEALED))
            sealed += 1
        finally:
            os.close(fd)
    return sealed


def drain(spool_dir: Path, ingest: Callable[[Path], Any]) -> Iterator[tuple[Path, Any]]:
    """Ingest the sealed segments, oldest first, deleting each once ingested.

    Yields (path, what ``ingest`` returned); an error of ``ingest`` stops the
    pass and leaves that segment and the later ones in place for the next."""
    for path in sorted(spool_dir.glob("*" + SEALED)):
        fd = _claim(path)
        if fd is None:
            continue  # another process is ingesting it, or has just done so
        try:
            result = ingest(path)
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
        yield path, result


def _claim(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    if _lock(fd, path):
        return fd
    os.close(fd)
    return None


def _lock(fd: int, path: Path) -> bool:
    """Lock the file open at ``fd`` if no one else holds it and ``path`` still names it."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
    try:  # the file may have been renamed between our open and our lock
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _fsync_dir(path: Path) -> None:
    if os.name == "posix":
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
