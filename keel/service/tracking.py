"""Experiments, runs, params, tags and metrics: every write audited."""

from __future__ import annotations

import math
import time
import uuid
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import sqlalchemy as sa

from keel.entities import Experiment, Metric, Run, RunStatus, Source
from keel.errors import Conflict, InvalidInput, NotFound
from keel.service import validation as v
from keel.service.context import Context
from keel.store.schema import experiments, latest_metrics, metrics, params, runs, tags
from keel.store.sql import Tx

DEFAULT_EXPERIMENT = "Default"

# What the metric buffer hands over, already in the shape of a `metrics` row:
# (run_id, key, value, is_nan, step, timestamp_ms). NaN arrives as value None +
# is_nan True, because SQLite cannot store NaN in a REAL column.
MetricRow = tuple[str, str, "float | None", bool, int, int]
METRIC_COLUMNS = ("run_id", "key", "value", "is_nan", "step", "timestamp")


def metric_row(run_id: str, key: str, value: float, step: int, timestamp: int) -> MetricRow:
    if value != value:
        return (run_id, key, None, True, step, timestamp)
    return (run_id, key, value, False, step, timestamp)


def now_ms() -> int:
    return int(time.time() * 1000)


# -- experiments ---------------------------------------------------------------
def get_or_create_experiment(ctx: Context, name: str) -> Experiment:
    v.check_name("experiment", name)
    with ctx.store.read() as conn:
        row = conn.execute(sa.select(experiments).where(experiments.c.name == name)).first()
    if row:
        return Experiment(row.id, row.name, row.created_at)

    def create(tx: Tx) -> Experiment:
        row = tx.conn.execute(sa.select(experiments).where(experiments.c.name == name)).first()
        if row:  # created by someone else meanwhile
            return Experiment(row.id, row.name, row.created_at)
        exp = Experiment(uuid.uuid4().hex, name, now_ms())
        tx.conn.execute(experiments.insert().values(id=exp.id, name=name, created_at=exp.created_at))
        tx.audit("experiment.create", "experiment", exp.id, {"name": name})
        return exp

    return ctx.store.write(ctx.actor, create)


def get_experiment(ctx: Context, name_or_id: str) -> Experiment:
    with ctx.store.read() as conn:
        row = conn.execute(
            sa.select(experiments).where(sa.or_(experiments.c.name == name_or_id, experiments.c.id == name_or_id))
        ).first()
    if row is None:
        raise NotFound(f"experiment {name_or_id!r} does not exist (see `keel experiments list`)")
    return Experiment(row.id, row.name, row.created_at)


def list_experiments(ctx: Context) -> list[Experiment]:
    with ctx.store.read() as conn:
        rows = conn.execute(sa.select(experiments).order_by(experiments.c.created_at)).all()
    return [Experiment(r.id, r.name, r.created_at) for r in rows]


# -- runs ----------------------------------------------------------------------
def create_run(
    ctx: Context,
    experiment: str = DEFAULT_EXPERIMENT,
    *,
    name: str | None = None,
    parent_run_id: str | None = None,
    tags_: Mapping[str, Any] | None = None,
    source: Source | None = None,
) -> Run:
    """Start a run (status RUNNING) in ``experiment``, creating the experiment if needed."""
    exp = get_or_create_experiment(ctx, experiment)
    run_id = uuid.uuid4().hex
    run_name = v.check_name("run", name) if name is not None else f"run-{run_id[:8]}"
    source = source or Source()
    tag_rows = [{"run_id": run_id, "key": v.check_key("tag", k), "value": v.tag_value(k, val)}
                for k, val in (tags_ or {}).items()]
    record = {
        "id": run_id, "experiment_id": exp.id, "name": run_name, "status": RunStatus.RUNNING,
        "start_time": now_ms(), "end_time": None, "user": ctx.actor,
        "source_commit": source.commit, "source_dirty": source.dirty,
        "entry_point": (source.entry_point or "")[:1024] or None, "parent_run_id": parent_run_id,
    }

    def write(tx: Tx) -> None:
        if parent_run_id is not None:
            require_run(tx.conn, parent_run_id, field="parent_run_id")
        tx.conn.execute(runs.insert(), record)
        if tag_rows:
            tx.conn.execute(tags.insert(), tag_rows)
        tx.audit("run.create", "run", run_id, {
            "experiment": exp.name, "name": run_name, "parent_run_id": parent_run_id,
            "source_commit": source.commit, "source_dirty": source.dirty,
        })

    ctx.store.write(ctx.actor, write)
    return Run(
        run_id, exp.id, run_name, RunStatus.RUNNING, record["start_time"], None, ctx.actor, source,
        parent_run_id, tags={r["key"]: r["value"] for r in tag_rows},
    )


def end_run(ctx: Context, run_id: str, status: str = RunStatus.FINISHED) -> None:
    if status not in RunStatus.TERMINAL:
        raise InvalidInput(f"run status must be one of {sorted(RunStatus.TERMINAL)}, got {status!r}")

    def write(tx: Tx) -> None:
        require_run(tx.conn, run_id)
        tx.conn.execute(runs.update().where(runs.c.id == run_id).values(status=status, end_time=now_ms()))
        tx.audit("run.end", "run", run_id, {"status": status})

    ctx.store.write(ctx.actor, write)


def get_run(ctx: Context, run_id: str) -> Run:
    with ctx.store.read() as conn:
        row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            raise NotFound(f"run {run_id!r} does not exist (see `keel runs list`)")
        return hydrate_runs(conn, [row])[0]


def hydrate_runs(conn: sa.Connection, rows: Sequence[Any]) -> list[Run]:
    """Turn run rows into Run records with params, tags and latest metrics (3 queries)."""
    ids = [r.id for r in rows]
    p: dict[str, dict[str, str]] = defaultdict(dict)
    t: dict[str, dict[str, str]] = defaultdict(dict)
    m: dict[str, dict[str, float]] = defaultdict(dict)
    for chunk in _chunks(ids, 500):
        for r in conn.execute(sa.select(params).where(params.c.run_id.in_(chunk))):
            p[r.run_id][r.key] = r.value
        for r in conn.execute(sa.select(tags).where(tags.c.run_id.in_(chunk))):
            t[r.run_id][r.key] = r.value
        for r in conn.execute(sa.select(latest_metrics).where(latest_metrics.c.run_id.in_(chunk))):
            m[r.run_id][r.key] = math.nan if r.is_nan else r.value
    return [
        Run(r.id, r.experiment_id, r.name, r.status, r.start_time, r.end_time, r.user,
            Source(r.source_commit, r.source_dirty, r.entry_point), r.parent_run_id,
            params=dict(sorted(p[r.id].items())), tags=dict(sorted(t[r.id].items())),
            metrics=dict(sorted(m[r.id].items())))
        for r in rows
    ]


# -- params and tags -------------------------------------------------------------
def log_params(ctx: Context, run_id: str, values: Mapping[str, Any]) -> None:
    """Log params. Re-logging a key with the same value is a no-op; another value is a Conflict."""
    new = {v.check_key("param", k): v.param_value(k, val) for k, val in values.items()}
    if not new:
        return

    def write(tx: Tx) -> None:
        require_run(tx.conn, run_id)
        existing = dict(tx.conn.execute(
            sa.select(params.c.key, params.c.value).where(params.c.run_id == run_id, params.c.key.in_(list(new)))
        ).all())
        for key, old in existing.items():
            if old != new[key]:
                raise Conflict(
                    f"param {key!r} of run {run_id} is already {old!r}; cannot change it to {new[key]!r} "
                    "(params are immutable: log a new key or start a new run)"
                )
        rows = [{"run_id": run_id, "key": k, "value": val} for k, val in new.items() if k not in existing]
        if rows:
            tx.conn.execute(params.insert(), rows)
            tx.audit("params.log", "run", run_id, {"params": {r["key"]: r["value"] for r in rows}})

    ctx.store.write(ctx.actor, write)


def set_tags(ctx: Context, run_id: str, values: Mapping[str, Any]) -> None:
    """Set tags (mutable: a new value replaces the old one)."""
    new = {v.check_key("tag", k): v.tag_value(k, val) for k, val in values.items()}
    if not new:
        return

    def write(tx: Tx) -> None:
        require_run(tx.conn, run_id)
        existing = dict(tx.conn.execute(
            sa.select(tags.c.key, tags.c.value).where(tags.c.run_id == run_id, tags.c.key.in_(list(new)))
        ).all())
        inserts = [{"run_id": run_id, "key": k, "value": val} for k, val in new.items() if k not in existing]
        updates = [{"r": run_id, "k": k, "v": val} for k, val in new.items() if k in existing and existing[k] != val]
        if inserts:
            tx.conn.execute(tags.insert(), inserts)
        if updates:
            tx.conn.execute(
                tags.update().where(tags.c.run_id == sa.bindparam("r"), tags.c.key == sa.bindparam("k"))
                .values(value=sa.bindparam("v")), updates)
        if inserts or updates:
            tx.audit("tags.set", "run", run_id, {"tags": {**{r["key"]: r["value"] for r in inserts},
                                                         **{u["k"]: u["v"] for u in updates}}})

    ctx.store.write(ctx.actor, write)


# -- metrics -------------------------------------------------------------------
def log_metric_rows(ctx: Context, rows: Sequence[MetricRow]) -> None:
    """Write a batch of already-validated metric values in one transaction.

    Used by the client-side buffer; one audit event per run summarises the batch.
    """
    if not rows:
        return
    by_run: dict[str, list[MetricRow]] = defaultdict(list)
    for row in rows:
        by_run[row[0]].append(row)
    latest = _latest_per_key(rows)

    def write(tx: Tx) -> None:
        found = set(tx.conn.execute(sa.select(runs.c.id).where(runs.c.id.in_(list(by_run)))).scalars())
        missing = sorted(set(by_run) - found)
        if missing:
            raise NotFound(f"run {missing[0]!r} does not exist; {len(by_run[missing[0]])} metric values not logged")
        tx.bulk_insert(metrics, METRIC_COLUMNS, rows)
        _update_latest(tx.conn, latest)
        for run_id, run_rows in by_run.items():
            keys = sorted({r[1] for r in run_rows})
            steps = [r[4] for r in run_rows]
            tx.audit("metrics.log", "run", run_id, {
                "count": len(run_rows), "keys": keys[:50], "steps": [min(steps), max(steps)],
            })

    ctx.store.write(ctx.actor, write)


def _latest_per_key(rows: Iterable[MetricRow]) -> dict[tuple[str, str], MetricRow]:
    best: dict[tuple[str, str], MetricRow] = {}
    get = best.get
    for row in rows:
        k = (row[0], row[1])
        cur = get(k)
        if cur is None or row[4] > cur[4] or (row[4] == cur[4] and row[5] >= cur[5]):
            best[k] = row
    return best


def _update_latest(conn: sa.Connection, latest: dict[tuple[str, str], MetricRow]) -> None:
    run_ids = sorted({k[0] for k in latest})
    keys = sorted({k[1] for k in latest})
    current = {
        (r.run_id, r.key): (r.step, r.timestamp)
        for r in conn.execute(
            sa.select(latest_metrics.c.run_id, latest_metrics.c.key, latest_metrics.c.step, latest_metrics.c.timestamp)
            .where(latest_metrics.c.run_id.in_(run_ids), latest_metrics.c.key.in_(keys))
        )
    }
    inserts, updates = [], []
    for (run_id, key), (_, _, val, nan, step, ts) in sorted(latest.items()):  # sorted: one lock order
        if (run_id, key) not in current:
            inserts.append({"run_id": run_id, "key": key, "value": val, "is_nan": nan, "step": step, "timestamp": ts})
        elif (step, ts) >= current[(run_id, key)]:
            updates.append({"r": run_id, "k": key, "v": val, "n": nan, "s": step, "t": ts})
    if inserts:
        conn.execute(latest_metrics.insert(), inserts)
    if updates:
        conn.execute(
            latest_metrics.update()
            .where(latest_metrics.c.run_id == sa.bindparam("r"), latest_metrics.c.key == sa.bindparam("k"))
            .values(value=sa.bindparam("v"), is_nan=sa.bindparam("n"), step=sa.bindparam("s"),
                    timestamp=sa.bindparam("t")),
            updates,
        )


def metric_history(ctx: Context, run_id: str, key: str) -> list[Metric]:
    """Every logged value of ``key`` in ``run_id``, ordered by step then time."""
    with ctx.store.read() as conn:
        require_run(conn, run_id)
        rows = conn.execute(
            sa.select(metrics.c.value, metrics.c.is_nan, metrics.c.step, metrics.c.timestamp)
            .where(metrics.c.run_id == run_id, metrics.c.key == key)
            .order_by(metrics.c.step, metrics.c.timestamp, metrics.c.id)
        ).all()
    return [Metric(key, math.nan if r.is_nan else r.value, r.step, r.timestamp) for r in rows]


def metric_keys(ctx: Context, run_id: str) -> list[str]:
    with ctx.store.read() as conn:
        return list(conn.execute(
            sa.select(latest_metrics.c.key).where(latest_metrics.c.run_id == run_id).order_by(latest_metrics.c.key)
        ).scalars())


# -- helpers -------------------------------------------------------------------
def require_run(conn: sa.Connection, run_id: str, *, field: str = "run_id") -> str:
    if not isinstance(run_id, str) or not run_id:
        raise InvalidInput(f"{field} must be a non-empty string, got {run_id!r}")
    status = conn.execute(sa.select(runs.c.status).where(runs.c.id == run_id)).scalar()
    if status is None:
        raise NotFound(f"{field} {run_id!r} does not exist (see `keel runs list`)")
    return status




def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
