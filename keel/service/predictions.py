"""Served predictions in the store: spool segments in, labels by request id.

Each sealed spool segment (keel.serving.spool) is stored as it is, as one
blob and one ``prediction_segments`` row keyed by the segment's unique name,
so ingesting a segment again (after a crash between commit and delete) adds
nothing. Ingestion writes one audit event per segment, never per prediction.

The inference server runs this module in its ingester thread, so it
imports no pyarrow; windows of traffic are read by
:mod:`keel.service.prediction_windows`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import sqlalchemy as sa

from keel.errors import InvalidInput, NotFound
from keel.serving import spool
from keel.service.context import Context
from keel.service.tracking import now_ms
from keel.store.schema import prediction_labels, prediction_segments
from keel.store.sql import Tx

_IN_CHUNK = 1000  # request ids per IN (...) query, well under every driver's parameter limit
_LABEL_COLUMNS = ("model", "request_id", "label", "created_by", "created_at")


def ingest_segment(ctx: Context, path: str | Path) -> int:
    """Store one sealed spool segment; returns the rows added (0: empty or already stored).

    The caller deletes the file afterwards (``keel.serving.spool.drain`` does).
    Raises :class:`keel.serving.spool.CorruptSegment` for a file that is not a segment.
    """
    path = Path(path)
    name = spool.segment_name(path)
    sealed = spool.sealed_summary(path) if path.suffix == spool.SEALED else None
    if sealed is not None:  # its writer sealed it: whole, synced and summed up, so stored without a read
        model, version, rows, first_ms, last_ms = (sealed[k] for k in ("model", "version", "rows", "first_ms",
                                                                      "last_ms"))
        if rows == 0 or _stored(ctx, name):
            return 0
        sha, size = ctx.blobs.put_file(path, link=True)  # before the row: a stray blob is harmless
    else:  # sealed after its writer died (a torn tail is not stored), or an older server's Arrow file
        found = _summary(path.read_bytes())
        if found is None or found[2] == 0 or _stored(ctx, name):
            return 0
        model, version, rows, first_ms, last_ms, blob = found
        sha, size = ctx.blobs.put_bytes(blob)
    row = {"id": uuid.uuid4().hex, "model": model, "version": version, "segment": name, "sha256": sha,
           "size": size, "rows": rows, "first_ms": first_ms, "last_ms": last_ms, "created_at": now_ms()}

    def write(tx: Tx) -> int:
        if tx.conn.execute(_SEGMENT_BY_NAME, {"segment": name}).first() is not None:
            return 0  # another process got there first
        tx.conn.execute(prediction_segments.insert().values(**row))
        tx.audit("predictions.ingest", "model_version", f"{model}/{version}",
                 {k: row[k] for k in ("segment", "rows", "sha256", "first_ms", "last_ms")})
        return rows

    return ctx.write(write, what="ingest served predictions")


def _summary(data: bytes) -> tuple[str, int, int, int, int, bytes] | None:
    """(model, version, rows, first and last received_ms, the bytes to store) of a segment file."""
    if data.startswith(b"\xff\xff\xff\xff"):  # an Arrow IPC segment left by an earlier keel server
        from keel.serving.log_table import legacy_segment_table

        legacy = legacy_segment_table(data)
        if legacy is None or legacy[2].num_rows == 0:
            return None
        received = legacy[2]["received_ms"].to_numpy()
        return legacy[0], legacy[1], legacy[2].num_rows, int(received.min()), int(received.max()), data
    segment = spool.parse_segment(data)
    if segment is None or segment.rows == 0:
        return None
    received = np.concatenate([chunk.received_ms() for chunk in segment.chunks])
    return (segment.model, segment.version, segment.rows, int(received.min()), int(received.max()),
            data[:segment.valid_bytes])  # a torn tail is not stored


def ingest_spool(ctx: Context, spool_dir: str | Path) -> int:
    """Ingest what a spool directory holds (sealing segments whose writer died); returns rows added.

    Segments that a live server is still writing are left to it.
    """
    spool_dir = Path(spool_dir)
    if not spool_dir.is_dir():
        raise NotFound(f"prediction spool directory {spool_dir} does not exist")
    spool.seal_abandoned(spool_dir)
    return sum(rows for _, rows in spool.drain(spool_dir, lambda p: ingest_segment(ctx, p)))


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
