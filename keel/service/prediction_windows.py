"""Windows of served traffic: the stored prediction segments of a model, as Arrow tables, with labels.

Segments are read back one at a time (keel's segment format, or the Parquet
that earlier versions stored); labels are joined by request id.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from keel.service.context import Context
from keel.serving.log_table import segment_table
from keel.store.schema import prediction_labels, prediction_segments

_EMPTY = pa.schema([("request_id", pa.string()), ("version", pa.int32()), ("row", pa.int32()),
                    ("received_ms", pa.int64()), ("latency_ms", pa.float64())])
_PARQUET = b"PAR1"
_IN_CHUNK = 1000  # request ids per IN (...) query, well under every driver's parameter limit


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
        table = _segment(data, f"prediction segment {name} of {model}/{seg_version}")
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


def _segment(data: bytes, what: str) -> pa.Table:
    if data.startswith(_PARQUET):  # stored by keel before segments were kept as the server wrote them
        return pq.read_table(pa.BufferReader(data)).replace_schema_metadata(None)
    found = segment_table(data)
    if found is None:
        raise ValueError(f"{what} is empty: it holds no header")
    return found[2]


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
