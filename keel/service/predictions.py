"""Served predictions in the store: spool segments in, windows of traffic out, labels by request id.

Each sealed spool segment (keel.serving.spool) becomes one Parquet blob and
one ``prediction_segments`` row, keyed by the segment's unique name, so
ingesting a segment again (after a crash between commit and delete) adds
nothing. Ingestion writes one audit event per segment, never per prediction.
Windows are read back segment by segment; labels are joined by request id.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq  # here, not in the ingester thread: imported when the server starts
import sqlalchemy as sa

from keel.errors import InvalidInput, NotFound
from keel.serving import spool
from keel.service.context import Context
from keel.service.tracking import now_ms
from keel.store.schema import prediction_labels, prediction_segments
from keel.store.sql import Tx

_IN_CHUNK = 1000  # request ids per IN (...) query, well under every driver's parameter limit
_LABEL_COLUMNS = ("model", "request_id", "label", "created_by", "created_at")
_EMPTY = pa.schema([("request_id", pa.string()), ("version", pa.int32()), ("row", pa.int32()),
                    ("received_ms", pa.int64()), ("latency_ms", pa.float64())])


def ingest_segment(ctx: Context, path: str | Path) -> int:
    """Store one sealed spool segment; returns the rows added (0: empty or already stored).

    The caller deletes the file afterwards (``keel.serving.spool.drain`` does).
    """
    path = Path(path)
    name = spool.segment_name(path)
    found = spool.read_segment(path)
    if found is None or found[2].num_rows == 0 or _stored(ctx, name):
        return 0
    model, version, table = found
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    sha, size = ctx.blobs.put_bytes(sink.getvalue().to_pybytes())  # before the row: a stray blob is harmless
    span = pc.min_max(table["received_ms"])
    row = {"id": uuid.uuid4().hex, "model": model, "version": version, "segment": name, "sha256": sha,
           "size": size, "rows": table.num_rows, "first_ms": span["min"].as_py(), "last_ms": span["max"].as_py(),
           "created_at": now_ms()}

    def write(tx: Tx) -> int:
        if tx.conn.execute(_SEGMENT_BY_NAME, {"segment": name}).first() is not None:
            return 0  # another process got there first
        tx.conn.execute(prediction_segments.insert().values(**row))
        tx.audit("predictions.ingest", "model_version", f"{model}/{version}",
                 {k: row[k] for k in ("segment", "rows", "sha256", "first_ms", "last_ms")})
        return table.num_rows

    return ctx.write(write, what="ingest served predictions")


def ingest_spool(ctx: Context, spool_dir: str | Path) -> int:
    """Ingest what a spool directory holds (sealing segments whose writer died); returns rows added.

    Segments that a live server is still writing are left to it.
    """
    spool_dir = Path(spool_dir)
    if not spool_dir.is_dir():
        raise NotFound(f"prediction spool directory {spool_dir} does not exist")
    spool.seal_abandoned(spool_dir)
    return sum(rows for _, rows in spool.drain(spool_dir, lambda p: ingest_segment(ctx, p)))


def iter_window(ctx: Context, model: str, version: int | None = None, start_ms: int | None = None,
                end_ms: int | None = None, *, with_labels: bool = False) -> Iterator[pa.Table]:
    """The predictions of ``model`` received in [start_ms, end_ms), one table per stored segment.

    For streaming over long windows: memory holds one segment at a time.
    Columns as in :func:`read_window`; tables of different versions may differ.
    """
    query = sa.select(prediction_segments.c.version, prediction_segments.c.sha256, prediction_segments.c.segment) \
        .where(prediction_segments.c.model == model)
    if version is not None:
        query = query.where(prediction_segments.c.version == version)
    if start_ms is not None:
        query = query.where(prediction_segments.c.last_ms >= start_ms)
    if end_ms is not None:
        query = query.where(prediction_segments.c.first_ms < end_ms)
    with ctx.store.read() as conn:
        segments = conn.execute(query.order_by(prediction_segments.c.first_ms, prediction_segments.c.segment)).all()
    for seg_version, sha, name in segments:
        data = ctx.blobs.get_bytes(sha, name=f"prediction segment {name} of {model}/{seg_version}")
        table = pq.read_table(pa.BufferReader(data)).replace_schema_metadata(None)
        received = table["received_ms"]
        if start_ms is not None:
            table = table.filter(pc.greater_equal(received, start_ms))
            received = table["received_ms"]
        if end_ms is not None:
            table = table.filter(pc.less(received, end_ms))
        table = table.add_column(1, "version", pa.array(np.full(table.num_rows, seg_version, np.int32)))
        yield _labeled(ctx, model, table) if with_labels else table


def read_window(ctx: Context, model: str, version: int | None = None, start_ms: int | None = None,
                end_ms: int | None = None, with_labels: bool = True) -> pa.Table:
    """Every logged prediction of ``model`` (one ``version`` or all) received in [start_ms, end_ms).

    Columns: ``request_id``, ``version``, ``row`` (index within its request),
    ``received_ms``, ``latency_ms``, the input columns, the ``output:``
    columns, and with ``with_labels`` a ``label`` column (null where none was
    attached). Rows are ordered by time received. Versions whose columns
    differ are combined, missing columns being null.
    """
    tables = list(iter_window(ctx, model, version, start_ms, end_ms))
    table = pa.concat_tables(tables, promote_options="permissive") if tables else _EMPTY.empty_table()
    table = table.sort_by([("received_ms", "ascending"), ("request_id", "ascending"), ("row", "ascending")])
    return _labeled(ctx, model, table) if with_labels else table


def attach_labels(ctx: Context, model: str, labels: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> int:
    """Attach ground truth to served predictions of ``model`` by request id; returns how many were stored.

    A label is any JSON value; for a request of n > 1 rows, a list of n values
    gives one value to each row. Labels may arrive before their predictions
    are ingested (they are stored all the same); attaching again to a request
    id replaces its label. One audit event per call.
    """
    if not isinstance(model, str) or not model or len(model) > 256:
        raise InvalidInput(f"model must be a non-empty name of at most 256 characters, got {model!r}")
    items = dict(labels.items() if isinstance(labels, Mapping) else labels)  # the last label of an id wins
    rows, now = [], now_ms()
    for request_id, label in items.items():
        if not isinstance(request_id, str) or not request_id or len(request_id) > 128:
            raise InvalidInput(f"request ids must be non-empty strings of at most 128 characters, got {request_id!r}")
        try:
            text = json.dumps(label, allow_nan=False, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"the label of request {request_id!r} must be JSON (no NaN or infinity): {exc}") from None
        rows.append((model, request_id, text, ctx.actor, now))
    if not rows:
        return 0
    digest = hashlib.sha256("\n".join(f"{r[1]}\t{r[2]}" for r in sorted(rows)).encode()).hexdigest()

    def write(tx: Tx) -> int:
        replaced = 0
        ids = [r[1] for r in rows]
        for start in range(0, len(ids), _IN_CHUNK):
            replaced += tx.conn.execute(prediction_labels.delete().where(
                prediction_labels.c.model == model,
                prediction_labels.c.request_id.in_(ids[start:start + _IN_CHUNK]))).rowcount
        tx.bulk_insert(prediction_labels, _LABEL_COLUMNS, rows)
        tx.audit("predictions.label", "model", model, {"count": len(rows), "replaced": replaced, "sha256": digest})
        return len(rows)

    return ctx.write(write, what="attach labels to served predictions")


_SEGMENT_BY_NAME = sa.select(prediction_segments.c.id).where(prediction_segments.c.segment == sa.bindparam("segment"))


def _stored(ctx: Context, name: str) -> bool:
    with ctx.store.read() as conn:
        return conn.execute(_SEGMENT_BY_NAME, {"segment": name}).first() is not None


def _labeled(ctx: Context, model: str, table: pa.Table) -> pa.Table:
    """``table`` with a ``label`` column joined by request id."""
    ids = pc.unique(table["request_id"]).to_pylist()
    found: dict[str, str] = {}
    with ctx.store.read() as conn:
        for start in range(0, len(ids), _IN_CHUNK):
            found.update(conn.execute(
                sa.select(prediction_labels.c.request_id, prediction_labels.c.label).where(
                    prediction_labels.c.model == model,
                    prediction_labels.c.request_id.in_(ids[start:start + _IN_CHUNK]))).all())
    if not found:
        return table.append_column("label", pa.nulls(table.num_rows))
    keys = list(found)
    values = [json.loads(found[k]) for k in keys]
    which = pc.fill_null(pc.index_in(table["request_id"], value_set=pa.array(keys, pa.string())), -1).to_numpy()
    labeled = which >= 0
    # A request of n rows whose label is a list of n values: value i goes to row i.
    n_rows = np.bincount(which[labeled], minlength=len(keys))
    spread = np.array([isinstance(v, list) and n > 1 and len(v) == n for v, n in zip(values, n_rows)])
    flat: list[Any] = []
    base = np.empty(len(keys), np.int64)
    for k, value in enumerate(values):
        base[k] = len(flat)
        flat.extend(value if spread[k] else [value])
    safe = np.where(labeled, which, 0)
    position = base[safe] + np.where(spread[safe], table["row"].to_numpy(), 0)
    column = _label_array(flat).take(pa.array(position, mask=~labeled))
    return table.append_column("label", column)


def _label_array(values: list[Any]) -> pa.Array:
    """Labels as one Arrow type when they share one; as their JSON text otherwise."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([json.dumps(v) for v in values], pa.string())
