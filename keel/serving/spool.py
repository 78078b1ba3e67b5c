"""The prediction spool on local disk: the segment format, segment files and their locks.

A segment holds predictions of one model version, named
``<created_ms>-<uuid>.open`` while it is written and renamed to ``.log``
once closed (sealed). Its file name without the suffix is the segment's name
in the store, unique across processes and hosts. The sealed file is stored
as it is: ingesting a segment converts nothing.

The format is a sequence of frames after an 8-byte magic: each frame is
``<u32 length><u32 crc32><payload>``. The first payload is a JSON header
(model, version); each later one is a *chunk*, the requests of one flush: a
JSON header naming the columns, their encodings, dtypes and shapes, then
their raw bytes. A writer that seals a segment ends it with a *seal record*,
a frame whose payload is a JSON summary (model, version, rows, requests,
first and last ``received_ms``) followed by its own length and
``SEAL_MAGIC``: found from the end of the file, it lets ingestion store the
segment without reading its chunks (:func:`sealed_summary`). A segment
sealed after its writer died has no seal record and is parsed instead.
Numbers are stored as numpy lays them out, strings as UTF-8
with offsets. Nothing is ever unpickled: a reader accepts only numeric and
boolean dtypes and the string encodings, and checks every size.

Why not Arrow IPC: the server would have to import pyarrow, about 38 MiB
resident, a quarter of one worker's memory budget, only to write bytes that
no one reads until they are stored. The reading side converts chunks to
Arrow (:mod:`keel.serving.log_table`).

The writer of an open segment holds an exclusive ``flock`` on it until it is
sealed, so several server processes may share one spool directory: an open
segment that someone else can lock is abandoned (its writer died) and is
sealed as it is. A writer killed mid-write leaves a torn last frame; reading
stops at the first frame whose length or checksum does not hold and keeps
every chunk before it. Platforms without ``fcntl`` get no locks: there, give
each process a spool directory of its own.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

OPEN, SEALED = ".open", ".log"
LEGACY_SEALED = ".arrows"  # Arrow IPC segments of keel 0.1's first servers: still ingested
CORRUPT = ".corrupt"
log = logging.getLogger("keel.serving.spool")
MAGIC = b"KEELPL1\n"  # also how a stored blob is told from the Parquet of earlier versions
SEAL_MAGIC = b"KEELEND\n"  # the last bytes of a segment that its writer sealed
META = ("request_id", "row", "received_ms", "latency_ms")
# Added to a window when it is read (keel.service.prediction_windows); inputs may not take them either.
RESERVED = frozenset({*META, "version", "label"})
OUTPUT_PREFIX, INPUT_PREFIX = "output:", "input:"
_FRAME = struct.Struct("<II")  # payload length, crc32 of the payload
_HEAD = struct.Struct("<I")  # length of a chunk's JSON header
_SEAL_TAIL = struct.Struct("<I")  # a seal record's payload length, just before SEAL_MAGIC
SEAL_KEYS = ("model", "version", "rows", "requests", "first_ms", "last_ms")
MAX_FRAME = 1 << 31
NUMERIC_KINDS = "biuf"  # the only dtypes a reader rebuilds: no objects, no pickles


class CorruptSegment(ValueError):
    """A frame that passed its checksum but does not describe valid columns."""


# -- writing -------------------------------------------------------------
@dataclass
class EncodedChunk:
    """One flush's requests of one model version, ready to append to a segment."""

    signature: tuple[Any, ...]  # the tensors' names, encodings and row shapes: a segment holds one
    parts: list[bytes | memoryview]  # the frame's payload, in pieces (no copy of the tensors)
    rows: int
    requests: int
    first_ms: int | None  # the earliest and latest received_ms (None: no requests)
    last_ms: int | None


@dataclass
class JoinedStrings:
    """Strings kept as one: ``text`` is them joined by NUL characters, which none of them holds.

    How the prediction log queues request ids: one object per call rather
    than one per request, and, when all are ASCII, the bytes of a column
    without touching each string again."""

    text: str
    count: int

    def __len__(self) -> int:
        return self.count

    def split(self) -> list[str]:
        return self.text.split("\0") if self.count else []

    def ascii_column(self) -> tuple[np.ndarray, bytes] | None:
        """(offsets, bytes) of the strings as a UTF-8 column when they are all ASCII; None otherwise."""
        if not self.text.isascii():
            return None
        joined = self.text.encode("ascii")
        offsets = np.empty(self.count + 1, np.int64)
        offsets[0] = 0
        if self.count:
            ends = np.flatnonzero(np.frombuffer(joined, np.uint8) == 0)
            if len(ends) != self.count - 1:
                raise ValueError(f"{self.count} strings joined, but {len(ends) + 1} found")
            offsets[1:-1] = ends - np.arange(self.count - 1)  # each separator before an end shifts it by one
            offsets[-1] = len(joined) - (self.count - 1)
        return offsets, joined.replace(b"\0", b"")


def encode_chunk(request_ids: Sequence[str] | JoinedStrings, received_ms: Sequence[int] | np.ndarray,
                 latency_ms: Sequence[float] | np.ndarray, inputs: Mapping[str, Any], outputs: Mapping[str, Any],
                 rows: Sequence[int] | None = None) -> EncodedChunk:
    """The bytes of a batch of answered requests; raises ValueError/TypeError for what cannot be stored.

    ``request_ids``, ``received_ms`` and ``latency_ms`` have one entry per
    request; ``rows`` how many rows each request sent (default one). The
    tensors of ``inputs`` and ``outputs`` have one row per prediction.
    """
    k = len(request_ids)
    counts = None if rows is None else np.asarray(rows, np.int32)
    n = k if counts is None else int(counts.sum())
    columns: list[dict[str, Any]] = []
    parts: list[bytes | memoryview] = []
    signature: list[tuple[Any, ...]] = []

    def add(role: str, name: str, values: Any, length: int) -> None:
        array = np.asarray(values)
        if array.ndim == 0 or len(array) != length:
            raise ValueError(f"{role} {name!r} has {0 if array.ndim == 0 else len(array)} rows, expected {length}")
        column, pieces = _encode(array)
        columns.append({"role": role, "name": name, **column})
        parts.extend(pieces)
        if role in ("input", "output"):
            signature.append((role, name, column["encoding"], column.get("dtype"), tuple(column["shape"][1:])))

    plain = request_ids.ascii_column() if isinstance(request_ids, JoinedStrings) else None
    if plain is not None:  # a character is a byte
        offsets, data = plain
        column = {"encoding": "utf8", "shape": [k], "size": len(data), "nulls": False}
        pieces: list[bytes | memoryview] = [memoryview(offsets).cast("B"), data]
    else:
        ids = request_ids.split() if isinstance(request_ids, JoinedStrings) else list(request_ids)
        column, pieces = _encode_strings(ids, [k])
    columns.append({"role": "meta", "name": "request_id", **column})
    parts.extend(pieces)
    received = np.asarray(received_ms, np.int64)
    add("meta", "received_ms", received, k)
    add("meta", "latency_ms", np.asarray(latency_ms, np.float64), k)
    if counts is not None:
        add("meta", "rows", counts, k)
    for role, tensors in (("input", inputs), ("output", outputs)):
        for name, values in tensors.items():
            if not isinstance(name, str):
                raise TypeError(f"tensor names must be strings, got {name!r}")
            add(role, name, values, n)
    header = json.dumps({"requests": k, "rows": n, "columns": columns}, separators=(",", ":")).encode()
    first, last = (int(received.min()), int(received.max())) if k else (None, None)
    return EncodedChunk(tuple(signature), [_HEAD.pack(len(header)), header, *parts], n, k, first, last)


def _encode(array: np.ndarray) -> tuple[dict[str, Any], list[bytes | memoryview]]:
    """(column description, byte pieces) of one tensor."""
    shape = list(array.shape)
    if array.dtype.kind in NUMERIC_KINDS:
        array = np.ascontiguousarray(array, array.dtype.newbyteorder("<"))
        return ({"encoding": "raw", "dtype": array.dtype.str, "shape": shape, "size": array.nbytes},
                [memoryview(array).cast("B")])
    if array.dtype.kind not in "OUS":
        raise TypeError(f"cannot log values of dtype {array.dtype}")
    return _encode_strings(array.reshape(-1).tolist(), shape)


def _encode_strings(values: list[Any], shape: list[int]) -> tuple[dict[str, Any], list[bytes | memoryview]]:
    """(column description, byte pieces) of strings or bytes (None for a null), flattened in ``values``."""
    data, lengths, binary, valid = _join_plain(values), None, False, None
    if data is not None:  # the common case, request ids above all: all ASCII str, or all bytes
        binary = isinstance(data, bytes)
        lengths = list(map(len, values))
        if not binary:
            data = data.encode("ascii")
    else:
        kinds = set(map(type, values))
        binary = bytes in kinds
        valid = np.ones(len(values), np.uint8)
        encoded: list[bytes] = []
        for i, value in enumerate(values):
            if value is None:
                valid[i] = 0
                encoded.append(b"")
            elif isinstance(value, bytes if binary else str):
                encoded.append(value if binary else value.encode())
            else:
                raise TypeError(f"cannot log a {type(value).__name__} among {'bytes' if binary else 'strings'}")
        lengths, data = list(map(len, encoded)), b"".join(encoded)
    offsets = np.zeros(len(values) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    nulls = valid is not None and bool((valid == 0).any())
    column = {"encoding": "binary" if binary else "utf8", "shape": shape, "size": len(data), "nulls": nulls}
    pieces: list[bytes | memoryview] = [memoryview(offsets).cast("B"), data]
    if nulls:
        pieces.append(memoryview(valid).cast("B"))  # type: ignore[arg-type]
    return column, pieces


def _join_plain(values: list[Any]) -> str | bytes | None:
    """All of ``values`` joined when they are all ASCII ``str`` (a character is a byte) or all
    ``bytes``; None otherwise. Three passes in C instead of a loop in Python."""
    try:
        joined = "".join(values)
    except TypeError:
        try:
            return b"".join(values)
        except TypeError:
            return None
    return joined if joined.isascii() else None


def seal_record(model: str, version: int, rows: int, requests: int, first_ms: int | None,
                last_ms: int | None) -> bytes:
    """The payload of the frame that ends a sealed segment (see the module's docstring)."""
    summary = json.dumps({"sealed": {"model": model, "version": version, "rows": rows, "requests": requests,
                                     "first_ms": first_ms, "last_ms": last_ms}}, separators=(",", ":")).encode()
    body = _HEAD.pack(len(summary)) + summary
    return body + _SEAL_TAIL.pack(len(body) + _SEAL_TAIL.size + len(SEAL_MAGIC)) + SEAL_MAGIC


def frame(payload_parts: Sequence[bytes | memoryview]) -> list[bytes | memoryview]:
    """``payload_parts`` behind their frame header (length and checksum)."""
    crc, size = 0, 0
    for part in payload_parts:
        crc = zlib.crc32(part, crc)
        size += len(part) if isinstance(part, bytes) else part.nbytes
    if size >= MAX_FRAME:
        raise ValueError(f"a chunk of {size} bytes is over the {MAX_FRAME} byte frame limit")
    return [_FRAME.pack(size, crc), *payload_parts]


# -- reading -------------------------------------------------------------
@dataclass
class Chunk:
    """The requests of one flush, decoded: numpy arrays over the segment's bytes."""

    request_ids: list[str]
    received_ms: np.ndarray  # per request
    latency_ms: np.ndarray  # per request
    rows: np.ndarray | None  # rows per request; None: one each
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


@dataclass
class SegmentData:
    model: str
    version: int
    chunks: list["ChunkView"]
    valid_bytes: int  # the whole frames; a torn tail starts here
    sealed: dict[str, Any] | None = None  # the seal record's summary, if the writer sealed the segment

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.chunks)


class ChunkView:
    """A chunk's header and payload; columns are decoded on demand."""

    def __init__(self, payload: memoryview) -> None:
        if len(payload) < _HEAD.size:
            raise CorruptSegment("a chunk shorter than its header")
        (head,) = _HEAD.unpack_from(payload)
        try:
            self.header = json.loads(bytes(payload[_HEAD.size:_HEAD.size + head]))
            self.requests, self.rows = int(self.header["requests"]), int(self.header["rows"])
            columns = self.header["columns"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptSegment(f"a chunk header that is not valid: {exc}") from None
        self._columns: dict[tuple[str, str], tuple[dict[str, Any], memoryview]] = {}
        at = _HEAD.size + head
        for column in columns:
            at = self._locate(column, payload, at)
        if at != len(payload):
            raise CorruptSegment(f"a chunk with {len(payload) - at} bytes beyond its columns")

    def _locate(self, column: Any, payload: memoryview, at: int) -> int:
        try:
            role, name, encoding, shape = column["role"], column["name"], column["encoding"], column["shape"]
            size = int(column["size"])
            if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d >= 0 for d in shape)):
                raise ValueError(f"bad shape {shape!r}")
            count = int(np.prod(shape))
            if encoding == "raw":
                dtype = np.dtype(column["dtype"])
                if dtype.kind not in NUMERIC_KINDS or size != count * dtype.itemsize:
                    raise ValueError(f"dtype {dtype} with {size} bytes for shape {shape}")
                extra = 0
            elif encoding in ("utf8", "binary"):
                extra = 8 * (count + 1) + (count if column.get("nulls") else 0)
            else:
                raise ValueError(f"unknown encoding {encoding!r}")
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptSegment(f"a column description that is not valid ({column!r}): {exc}") from None
        end = at + size + extra
        if end > len(payload):
            raise CorruptSegment(f"column {name!r} runs past the end of its chunk")
        self._columns[(role, name)] = (column, payload[at:end])
        return end

    def names(self, role: str) -> list[str]:
        return [name for r, name in self._columns if r == role]

    def column(self, role: str, name: str) -> np.ndarray:
        column, data = self._columns[(role, name)]
        shape = tuple(column["shape"])
        if column["encoding"] == "raw":
            return np.frombuffer(data, column["dtype"]).reshape(shape)
        count = int(np.prod(shape))
        offsets = np.frombuffer(data[:8 * (count + 1)], "<i8")
        start = 8 * (count + 1)
        text = data[start:start + column["size"]]
        if count and (offsets[0] != 0 or offsets[-1] != len(text) or (np.diff(offsets) < 0).any()):
            raise CorruptSegment(f"column {column['name']!r} has offsets that do not fit its data")
        raw = bytes(text)
        values: list[Any] = [raw[offsets[i]:offsets[i + 1]] for i in range(count)]
        if column["encoding"] == "utf8":
            values = [v.decode() for v in values]
        if column.get("nulls"):
            valid = np.frombuffer(data[start + column["size"]:], np.uint8)
            values = [v if ok else None for v, ok in zip(values, valid)]
        array = np.empty(count, object)
        array[:] = values
        return array.reshape(shape)

    def decode(self) -> Chunk:
        rows = self.column("meta", "rows") if ("meta", "rows") in self._columns else None
        return Chunk(list(self.column("meta", "request_id")), self.column("meta", "received_ms"),
                     self.column("meta", "latency_ms"), rows,
                     {name: self.column("input", name) for name in self.names("input")},
                     {name: self.column("output", name) for name in self.names("output")})

    def received_ms(self) -> np.ndarray:
        """Per prediction row (a request's time repeated over its rows)."""
        received = self.column("meta", "received_ms")
        if ("meta", "rows") in self._columns:
            received = np.repeat(received, self.column("meta", "rows"))
        return received


def parse_segment(data: bytes | memoryview) -> SegmentData | None:
    """The chunks of a segment's bytes; None when not even its header is whole.

    Stops at the first torn or corrupt frame (a writer killed mid-write)."""
    view = memoryview(data)
    if len(view) < len(MAGIC) or bytes(view[:len(MAGIC)]) != MAGIC:
        if len(view) >= len(MAGIC) or bytes(view) != MAGIC[:len(view)]:
            raise CorruptSegment("not a keel prediction segment (wrong magic bytes)")
        return None
    frames = _frames(view, len(MAGIC))
    first = next(frames, None)
    if first is None:
        return None
    try:
        header = json.loads(bytes(first[0]))
        model, version = str(header["model"]), int(header["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptSegment(f"a segment header that is not valid: {exc}") from None
    chunks, end, sealed = [], first[1], None
    for payload, after in frames:
        sealed = _seal_summary(payload)
        if sealed is not None:
            end = after
            break  # the end: nothing is written after a seal record
        try:
            chunks.append(ChunkView(payload))
        except CorruptSegment:
            break  # a frame whose checksum holds but whose sense does not: keep what came before
        end = after
    return SegmentData(model, version, chunks, end, sealed)


def sealed_summary(path: Path) -> dict[str, Any] | None:
    """The seal record of a segment file, read from its end without reading its chunks.

    A dict with ``model``, ``version``, ``rows``, ``requests``, ``first_ms`` and ``last_ms``; None when
    the file does not end with a whole seal record (its writer died: parse it).
    """
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        tail = _SEAL_TAIL.size + len(SEAL_MAGIC)
        if size < len(MAGIC) + _FRAME.size + tail:
            return None
        fh.seek(size - tail)
        end = fh.read(tail)
        if end[_SEAL_TAIL.size:] != SEAL_MAGIC:
            return None
        (length,) = _SEAL_TAIL.unpack_from(end)
        start = size - length - _FRAME.size
        if not tail <= length < 1 << 16 or start < len(MAGIC):
            return None
        fh.seek(start)
        frame_bytes = fh.read(_FRAME.size + length)
    declared, crc = _FRAME.unpack_from(frame_bytes)
    payload = memoryview(frame_bytes)[_FRAME.size:]
    if declared != length or zlib.crc32(payload) != crc:
        return None
    return _seal_summary(payload)


def _seal_summary(payload: memoryview) -> dict[str, Any] | None:
    if len(payload) < _HEAD.size + _SEAL_TAIL.size + len(SEAL_MAGIC) or payload[-len(SEAL_MAGIC):] != SEAL_MAGIC:
        return None
    (head,) = _HEAD.unpack_from(payload)
    try:
        summary = json.loads(bytes(payload[_HEAD.size:_HEAD.size + head]))["sealed"]
        return {key: summary[key] for key in SEAL_KEYS}
    except (ValueError, KeyError, TypeError):
        return None


def _frames(view: memoryview, at: int) -> Iterator[tuple[memoryview, int]]:
    while at + _FRAME.size <= len(view):
        size, crc = _FRAME.unpack_from(view, at)
        start, end = at + _FRAME.size, at + _FRAME.size + size
        if end > len(view):
            return  # torn: the writer died while writing this frame
        payload = view[start:end]
        if zlib.crc32(payload) != crc:
            return
        yield payload, end
        at = end


def read_segment(path: Path) -> SegmentData | None:
    """Model, version and chunks of a segment file (see :func:`parse_segment`)."""
    return parse_segment(path.read_bytes())


class Segment:
    """An open segment of one model version, locked by this process until sealed."""

    def __init__(self, spool_dir: Path, model: str, version: int, signature: tuple[Any, ...]) -> None:
        while True:
            path = spool_dir / f"{int(time.time() * 1000):013d}-{uuid.uuid4().hex}{OPEN}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            if _lock(fd, path):
                break
            os.close(fd)  # a recovery pass took the new file between open and lock: use another name
        self.path, self.model, self.version, self.signature = path, model, version, signature
        self.rows, self.requests, self.opened, self._dirty = 0, 0, time.monotonic(), True
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)  # one write() per flush, not one per chunk
        try:
            header = json.dumps({"model": model, "version": version}).encode()
            self._write_parts([MAGIC, *frame([header])])
            self.sync()
            _fsync_dir(spool_dir)  # the new name survives a power cut too
        except BaseException:
            self._file.close()  # unlocked: the next recovery pass seals (or drops) what it holds
            raise

    def write(self, chunk: EncodedChunk) -> None:
        self._write_parts(frame(chunk.parts))
        self.rows += chunk.rows
        self.requests += chunk.requests
        if chunk.first_ms is not None and chunk.last_ms is not None:
            self.first_ms = chunk.first_ms if self.first_ms is None else min(self.first_ms, chunk.first_ms)
            self.last_ms = chunk.last_ms if self.last_ms is None else max(self.last_ms, chunk.last_ms)
        self._dirty = True

    def _write_parts(self, parts: Sequence[bytes | memoryview]) -> None:
        for part in parts:
            self._file.write(part)

    def sync(self) -> None:
        """The durability point: everything written so far is on disk."""
        if self._dirty:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._dirty = False

    def seal(self) -> Path:
        """Write the seal record, sync and rename the file to ``.log`` (ready to ingest)."""
        try:
            self._write_parts(frame([seal_record(self.model, self.version, self.rows, self.requests,
                                                 self.first_ms, self.last_ms)]))
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
    pass and leaves that segment and the later ones in place for the next.
    A file that ``ingest`` finds is no segment (:class:`CorruptSegment`) is
    renamed ``.corrupt`` and kept for a person to look at, so that it does not
    hold up the others."""
    for path in sorted([*spool_dir.glob("*" + SEALED), *spool_dir.glob("*" + LEGACY_SEALED)]):
        fd = _claim(path)
        if fd is None:
            continue  # another process is ingesting it, or has just done so
        try:
            try:
                result = ingest(path)
            except CorruptSegment as exc:
                os.replace(path, path.with_suffix(CORRUPT))
                log.error("keel: %s is not a readable prediction segment, kept as %s: %s",
                          path, path.with_suffix(CORRUPT).name, exc)
                continue
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
