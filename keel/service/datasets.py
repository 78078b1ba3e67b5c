"""Datasets: recorded once per (name, content digest), linked to the runs that use them."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from keel.entities import DatasetInfo
from keel.errors import InvalidInput, NotFound
from keel.service import validation as v
from keel.service.context import Context
from keel.service.tracking import now_ms, require_run
from keel.store.schema import datasets, run_inputs
from keel.store.sql import Tx


def log_dataset(
    ctx: Context, run_id: str, description: Any, *, name: str, context: str = "training",
    data_sha256: str | None = None,
) -> DatasetInfo:
    """Record a described dataset (see keel.tracking.datasets) as an input of ``run_id``."""
    v.check_name("dataset", name)
    if not isinstance(context, str) or not context or len(context) > 64:
        raise InvalidInput(f"dataset context must be a short non-empty string, got {context!r}")

    def write(tx: Tx) -> DatasetInfo:
        require_run(tx.conn, run_id)
        row = tx.conn.execute(
            sa.select(datasets).where(datasets.c.name == name, datasets.c.digest == description.digest)
        ).first()
        if row is None:
            ds_id = uuid.uuid4().hex
            tx.conn.execute(datasets.insert().values(
                id=ds_id, name=name, digest=description.digest, source=description.source,
                schema=description.schema, num_rows=description.num_rows, profile=description.profile,
                data_sha256=data_sha256, created_at=now_ms(),
            ))
            tx.audit("dataset.create", "dataset", ds_id, {
                "name": name, "digest": description.digest, "num_rows": description.num_rows,
                "source": description.source, "data_sha256": data_sha256,
            })
        else:
            ds_id = row.id
            if data_sha256 and not row.data_sha256:
                tx.conn.execute(datasets.update().where(datasets.c.id == ds_id).values(data_sha256=data_sha256))
        linked = tx.conn.execute(sa.select(run_inputs.c.run_id).where(
            run_inputs.c.run_id == run_id, run_inputs.c.dataset_id == ds_id, run_inputs.c.context == context)).first()
        if not linked:
            tx.conn.execute(run_inputs.insert().values(run_id=run_id, dataset_id=ds_id, context=context))
            tx.audit("dataset.use", "run", run_id, {"dataset_id": ds_id, "digest": description.digest,
                                                    "name": name, "context": context})
        return DatasetInfo(ds_id, name, description.digest, description.source, description.schema,
                           description.num_rows, description.profile, data_sha256 or (row.data_sha256 if row else None),
                           context)

    return ctx.write(write, what="log a dataset")


def run_datasets(ctx: Context, run_id: str) -> list[DatasetInfo]:
    with ctx.store.read() as conn:
        require_run(conn, run_id)
        rows = conn.execute(
            sa.select(datasets, run_inputs.c.context).join(run_inputs, run_inputs.c.dataset_id == datasets.c.id)
            .where(run_inputs.c.run_id == run_id).order_by(datasets.c.name)
        ).all()
    return [_info(r, r.context) for r in rows]


def get_dataset(ctx: Context, dataset_id: str) -> DatasetInfo:
    with ctx.store.read() as conn:
        row = conn.execute(sa.select(datasets).where(datasets.c.id == dataset_id)).first()
    if row is None:
        raise NotFound(f"dataset {dataset_id!r} does not exist")
    return _info(row, None)


def _info(row: Any, context: str | None) -> DatasetInfo:
    return DatasetInfo(row.id, row.name, row.digest, row.source, row.schema, row.num_rows, row.profile,
                       row.data_sha256, context)
