"""Prediction-log segments as Arrow tables: the reading side of the spool format.

The server writes segments without pyarrow (:mod:`keel.serving.spool`); this
module, used by whoever reads windows of traffic, turns their chunks into
Arrow columns. One row per prediction: 1-D tensors become one column, 2-D
tensors ``x`` of width n become columns ``x_0`` .. ``x_{n-1}`` (up to
``SPLIT_MAX``), others one fixed-size list column of the row's values.
Output columns are prefixed ``output:``; an input column whose name is
reserved is prefixed ``input:``.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa

from keel.serving.spool import INPUT_PREFIX, META, OUTPUT_PREFIX, RESERVED, CorruptSegment, parse_segment

SPLIT_MAX = 1024  # a 2-D tensor up to this wide becomes one column per feature; wider ones stay a list
MODEL_KEY, VERSION_KEY = b"keel.model", b"keel.version"  # schema metadata of legacy Arrow IPC segments
ARROW_CONTINUATION = b"\xff\xff\xff\xff"  # how an Arrow IPC stream starts


def segment_table(data: bytes) -> tuple[str, int, pa.Table] | None:
    """Model, version and rows of a stored or spooled segment; None when it holds no header.

    Reads keel's segment format and the Arrow IPC streams that earlier
    servers wrote. Chunks whose tensors differ are combined, missing columns
    being null.
    """
    if not data.startswith(ARROW_CONTINUATION):
        segment = parse_segment(data)
        if segment is None:
            return None
        batches = []
        for view in segment.chunks:
            chunk = view.decode()
            batches.append(record_batch(chunk.request_ids, chunk.received_ms, chunk.latency_ms, chunk.inputs,
                                        chunk.outputs, None if chunk.rows is None else chunk.rows.tolist()))
        return segment.model, segment.version, _combine(batches)
    return legacy_segment_table(data)


def legacy_segment_table(data: bytes) -> tuple[str, int, pa.Table] | None:
    """An Arrow IPC stream segment (keel's first servers); reading stops at a torn tail."""
    source = pa.BufferReader(data)
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
        raise CorruptSegment("not a keel prediction segment (no model and version in its Arrow schema)")
    table = pa.Table.from_batches(batches, reader.schema.remove_metadata())
    return meta[MODEL_KEY].decode(), int(meta[VERSION_KEY]), table


def _combine(batches: list[pa.RecordBatch]) -> pa.Table:
    if not batches:
        return pa.table({name: pa.array([], t) for name, t in zip(META, (pa.string(), pa.int32(), pa.int64(),
                                                                        pa.float64()))})
    if all(b.schema.equals(batches[0].schema) for b in batches):
        return pa.Table.from_batches(batches)
    return pa.concat_tables([pa.Table.from_batches([b]) for b in batches], promote_options="permissive")


def record_batch(request_ids: Sequence[str], received_ms: Sequence[int] | np.ndarray,
                 latency_ms: Sequence[float] | np.ndarray, inputs: Mapping[str, Any], outputs: Mapping[str, Any],
                 rows: Sequence[int] | None = None) -> pa.RecordBatch:
    """The columns of a batch of answered requests (one row per prediction).

    ``request_ids``, ``received_ms`` and ``latency_ms`` have one entry per
    request; ``rows`` says how many rows each request sent (default one).
    """
    ids = pa.array(list(request_ids), pa.string())
    received = np.asarray(received_ms, np.int64)
    latency = np.asarray(latency_ms, np.float64)
    if rows is None:
        row = np.zeros(len(ids), np.int32)
    else:  # spread the per-request fields over each request's rows
        counts = np.asarray(rows, np.int64)
        owner = np.repeat(np.arange(len(counts)), counts)
        ids, received, latency = ids.take(pa.array(owner)), received[owner], latency[owner]
        row = (np.arange(len(owner)) - (np.cumsum(counts) - counts)[owner]).astype(np.int32)
    names: list[str] = list(META)
    arrays: list[pa.Array] = [ids, pa.array(row), pa.array(received), pa.array(latency)]
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


def _arrow(values: np.ndarray) -> pa.Array:
    if values.dtype == object:  # strings, bytes; None becomes null
        return pa.array(values, from_pandas=True)
    if values.dtype == np.float16:  # Parquet readers disagree on half floats
        values = values.astype(np.float32)
    return pa.array(values)
