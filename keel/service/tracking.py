"""Experiments, runs, params, tags and metrics: every write audited."""

from __future__ import annotations

import math
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

import sqlalchemy as sa

from keel.entities import Experiment, Metric, Run, RunStatus, Source
from keel.errors import Conflict, InvalidInput, NotFound
from keel.service import validation as v
from keel.service.context import Context
from keel.service import metric_chunks as chunks
from keel.store.schema import experiments, latest_metrics, metric_chunks, params, runs, tags
from keel.store.sql import Tx, fetch_all

DEFAULT_EXPERIMENT = "Default"

# What the metric buffer hands over: (run_id, key, value, is_nan, step,
# timestamp_ms). NaN arrives as value None + is_nan True, the form the
# latest_metrics table needs (SQLite cannot store NaN in a REAL column).
MetricRow = tuple[str, str, "float | None", bool, int, int]
_LATEST_COLUMNS = ("run_id", "key", "value", "is_nan", "step", "timestamp")
_RUN_COLUMNS = ("id", "experiment_id", "name", "status", "start_time", "user", "source_commit", "source_dirty",
                "entry_point", "parent_run_id")


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

    return ctx.write(create, what="create an experiment")


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
@dataclass(frozen=True)
class NewRun:
    """A validated run, ready to be inserted by :func:`write_batch`."""

    run: Run
    experiment_name: str

    def row(self) -> tuple[Any, ...]:
        r = self.run
        return (r.id, r.experiment_id, r.name, r.status, r.start_time, r.user, r.source.commit, r.source.dirty,
                (r.source.entry_point or "")[:1024] or None, r.parent_run_id)


def new_run(
    ctx: Context,
    experiment: Experiment,
    *,
    name: str | None = None,
    parent_run_id: str | None = None,
    tags_: Mapping[str, Any] | None = None,
    source: Source | None = None,
) -> NewRun:
    """Validate and stamp a run (id, start time, actor) without writing it."""
    run_id = uuid.uuid4().hex
    run_name = v.check_name("run", name) if name is not None else f"run-{run_id[:8]}"
    tag_rows = {v.check_key("tag", k): v.tag_value(k, val) for k, val in (tags_ or {}).items()}
    run = Run(run_id, experiment.id, run_name, RunStatus.RUNNING, now_ms(), None, ctx.actor, source or Source(),
              parent_run_id, tags=tag_rows)
    return NewRun(run, experiment.name)


def create_run(
    ctx: Context,
    experiment: str | Experiment = DEFAULT_EXPERIMENT,
    *,
    name: str | None = None,
    parent_run_id: str | None = None,
    tags_: Mapping[str, Any] | None = None,
    source: Source | None = None,
) -> Run:
    """Start a run (status RUNNING) in ``experiment`` (a name: created if needed, or a record)."""
    exp = experiment if isinstance(experiment, Experiment) else get_or_create_experiment(ctx, experiment)
    created = new_run(ctx, exp, name=name, parent_run_id=parent_run_id, tags_=tags_, source=source)
    write_batch(ctx, RunBatch(creates=[created]))
    return created.run


def end_run(ctx: Context, run_id: str, status: str = RunStatus.FINISHED) -> None:
    write_batch(ctx, RunBatch(ends=[(run_id, check_status(status), now_ms())]))


def check_status(status: str) -> str:
    if status not in RunStatus.TERMINAL:
        raise InvalidInput(f"run status must be one of {sorted(RunStatus.TERMINAL)}, got {status!r}")
    return status


def get_run(ctx: Context, run_id: str) -> Run:
    with ctx.store.read() as conn:
        row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            raise NotFound(f"run {run_id!r} does not exist (see `keel runs list`)")
        return hydrate_runs(conn, [row])[0]


_RUN_FIELDS = tuple(runs.c.keys())


def hydrate_runs(conn: sa.Connection, rows: Sequence[Any]) -> list[Run]:
    """Turn run rows into Run records with params, tags and latest metrics (3 queries per 500 runs)."""
    p: dict[str, dict[str, str]] = defaultdict(dict)
    t: dict[str, dict[str, str]] = defaultdict(dict)
    m: dict[str, dict[str, float]] = defaultdict(dict)
    records = [dict(zip(_RUN_FIELDS, r)) for r in rows]
    for chunk in _chunks([r["id"] for r in records], 500):
        # Ordered by key, so each run's dicts come out sorted without sorting them here.
        for run_id, key, value in fetch_all(conn, sa.select(params.c.run_id, params.c.key, params.c.value)
                                            .where(params.c.run_id.in_(chunk)).order_by(params.c.key)):
            p[run_id][key] = value
        for run_id, key, value in fetch_all(conn, sa.select(tags.c.run_id, tags.c.key, tags.c.value)
                                            .where(tags.c.run_id.in_(chunk)).order_by(tags.c.key)):
            t[run_id][key] = value
        for run_id, key, value, is_nan in fetch_all(conn, sa.select(
                latest_metrics.c.run_id, latest_metrics.c.key, latest_metrics.c.value, latest_metrics.c.is_nan)
                .where(latest_metrics.c.run_id.in_(chunk)).order_by(latest_metrics.c.key)):
            m[run_id][key] = math.nan if is_nan else value  # is_nan: 0/1 from SQLite, bool from PostgreSQL
    return [
        Run(r["id"], r["experiment_id"], r["name"], r["status"], r["start_time"], r["end_time"], r["user"],
            Source(r["source_commit"], None if r["source_dirty"] is None else bool(r["source_dirty"]),
                   r["entry_point"]),
            r["parent_run_id"], params=p[r["id"]], tags=t[r["id"]], metrics=m[r["id"]])
        for r in records
    ]


# -- params, tags, metrics, run ends: one batched write ---------------------------------
def log_params(ctx: Context, run_id: str, values: Mapping[str, Any]) -> None:
    """Log params. Re-logging a key with the same value is a no-op; another value is a Conflict."""
    write_batch(ctx, RunBatch(params=[(run_id, v.check_key("param", k), v.param_value(k, val))
                                      for k, val in values.items()]))


def set_tags(ctx: Context, run_id: str, values: Mapping[str, Any]) -> None:
    """Set tags (mutable: a new value replaces the old one)."""
    write_batch(ctx, RunBatch(tags=[(run_id, v.check_key("tag", k), v.tag_value(k, val))
                                    for k, val in values.items()]))


@dataclass
class RunBatch:
    """Validated changes to existing runs, written together in one transaction.

    The client buffers what the fluent API logs into one of these; each list
    keeps call order. Ends apply last, so a run's last values land before it
    is marked ended.
    """

    params: list[tuple[str, str, str]] = field(default_factory=list)  # run_id, key, value
    tags: list[tuple[str, str, str]] = field(default_factory=list)  # run_id, key, value
    metrics: list[MetricRow] = field(default_factory=list)
    ends: list[tuple[str, str, int]] = field(default_factory=list)  # run_id, status, end_time
    creates: list[NewRun] = field(default_factory=list)  # applied first

    def __bool__(self) -> bool:
        return bool(self.creates or self.params or self.tags or self.metrics or self.ends)

    def run_ids(self) -> list[str]:
        seen: dict[str, None] = {c.run.id: None for c in self.creates}
        for group in (self.params, self.tags, self.metrics, self.ends):
            for row in group:
                seen.setdefault(row[0], None)
        return list(seen)

    def only(self, run_id: str) -> "RunBatch":
        """The part of this batch about one run."""
        return RunBatch(*([r for r in group if r[0] == run_id]
                          for group in (self.params, self.tags, self.metrics, self.ends)),
                        creates=[c for c in self.creates if c.run.id == run_id])


# Hot-path statements, compiled once and run on the driver (see Tx.fetch). A
# batch usually touches one or a few runs, so they are per run, not IN lists.
_RUN_EXISTS = sa.select(runs.c.id).where(runs.c.id == sa.bindparam("r"))
_PARAMS_OF = sa.select(params.c.key, params.c.value).where(params.c.run_id == sa.bindparam("r"))
_TAGS_OF = sa.select(tags.c.key, tags.c.value).where(tags.c.run_id == sa.bindparam("r"))
_LATEST_OF = sa.select(latest_metrics.c.key, latest_metrics.c.step, latest_metrics.c.timestamp).where(
    latest_metrics.c.run_id == sa.bindparam("r"))
_UPDATE_TAG = tags.update().where(tags.c.run_id == sa.bindparam("r"), tags.c.key == sa.bindparam("k")).values(
    value=sa.bindparam("v"))
_UPDATE_LATEST = latest_metrics.update().where(
    latest_metrics.c.run_id == sa.bindparam("r"), latest_metrics.c.key == sa.bindparam("k")).values(
    value=sa.bindparam("v"), is_nan=sa.bindparam("n"), step=sa.bindparam("s"), timestamp=sa.bindparam("t"))
_END_RUN = runs.update().where(runs.c.id == sa.bindparam("r")).values(
    status=sa.bindparam("st"), end_time=sa.bindparam("et"))


def write_batch(ctx: Context, batch: RunBatch) -> None:
    """Apply a batch in one audited transaction (one audit event per run and kind)."""
    if not batch:
        return
    run_ids = batch.run_ids()
    latest = _latest_per_key(batch.metrics)
    packed, metric_summary = chunks.pack(batch.metrics) if batch.metrics else ([], {})

    created = {c.run.id for c in batch.creates}
    ends = [e for e in batch.ends if e[0] not in created]
    ended_at_once = {e[0]: e for e in batch.ends if e[0] in created}

    def write(tx: Tx) -> None:
        if batch.creates:
            _write_creates(tx, batch.creates, ended_at_once)
        for run_id in run_ids:
            if run_id not in created and not tx.fetch(_RUN_EXISTS, {"r": run_id}):
                raise NotFound(f"run_id {run_id!r} does not exist (see `keel runs list`)")
        if batch.params:
            _write_params(tx, batch.params, created)
        if batch.tags:
            _write_tags(tx, batch.tags, created)
        if batch.metrics:
            tx.bulk_insert(metric_chunks, chunks.COLUMNS, packed)
            _update_latest(tx, latest, created)
            for run_id, summary in metric_summary.items():
                tx.audit("metrics.log", "run", run_id, summary)
        tx.execute_many(_END_RUN, [{"r": r, "st": st, "et": et} for r, st, et in ends])
        for run_id, status, _ in batch.ends:
            tx.audit("run.end", "run", run_id, {"status": status})

    ctx.write(write, what="log to runs")


def _write_creates(tx: Tx, creates: list[NewRun], ended: dict[str, tuple[str, str, int]]) -> None:
    parents = {c.run.parent_run_id for c in creates} - {None} - {c.run.id for c in creates}
    for parent in sorted(parents):
        if not tx.fetch(_RUN_EXISTS, {"r": parent}):
            raise NotFound(f"parent_run_id {parent!r} does not exist (see `keel runs list`)")
    rows = []
    for c in creates:
        row = c.row()
        if c.run.id in ended:  # created and ended in one batch: insert it ended, skip the update
            _, status, end_time = ended[c.run.id]
            row = row[:3] + (status,) + row[4:]
            rows.append(row + (end_time,))
        else:
            rows.append(row + (None,))
    tx.bulk_insert(runs, _RUN_COLUMNS + ("end_time",), rows)
    tx.bulk_insert(tags, ("run_id", "key", "value"),
                   [(c.run.id, k, val) for c in creates for k, val in c.run.tags.items()])
    for c in creates:
        tx.audit("run.create", "run", c.run.id, {
            "experiment": c.experiment_name, "name": c.run.name, "parent_run_id": c.run.parent_run_id,
            "source_commit": c.run.source.commit, "source_dirty": c.run.source.dirty,
        })


def _stored(tx: Tx, stmt: Any, run_ids: Iterable[str], created: set[str]) -> Iterator[tuple[str, tuple]]:
    """Rows of ``stmt`` for each run, skipping runs created in this batch (they have none yet)."""
    for run_id in sorted(set(run_ids) - created):
        for row in tx.fetch(stmt, {"r": run_id}):
            yield run_id, row


def _write_params(tx: Tx, rows: list[tuple[str, str, str]], created: set[str]) -> None:
    new: dict[tuple[str, str], str] = {}
    for run_id, key, value in rows:
        if new.setdefault((run_id, key), value) != value:
            raise _param_conflict(run_id, key, new[(run_id, key)], value)
    existing = {(r, k): val for r, (k, val) in _stored(tx, _PARAMS_OF, (r for r, _ in new), created)}
    for k, value in new.items():
        if k in existing and existing[k] != value:
            raise _param_conflict(k[0], k[1], existing[k], value)
    inserts = [(r, k, val) for (r, k), val in new.items() if (r, k) not in existing]
    tx.bulk_insert(params, ("run_id", "key", "value"), inserts)
    by_run: dict[str, dict[str, str]] = defaultdict(dict)
    for r, k, val in inserts:
        by_run[r][k] = val
    for run_id, logged in by_run.items():
        tx.audit("params.log", "run", run_id, {"params": logged})


def _param_conflict(run_id: str, key: str, old: str, new: str) -> Conflict:
    return Conflict(f"param {key!r} of run {run_id} is already {old!r}; cannot change it to {new!r} "
                    "(params are immutable: log a new key or start a new run)")


def _write_tags(tx: Tx, rows: list[tuple[str, str, str]], created: set[str]) -> None:
    final: dict[tuple[str, str], str] = {}
    for run_id, key, value in rows:  # the last value set in the batch wins
        final[(run_id, key)] = value
    existing = {(r, k): val for r, (k, val) in _stored(tx, _TAGS_OF, (r for r, _ in final), created)}
    inserts = [(r, k, val) for (r, k), val in final.items() if (r, k) not in existing]
    updates = [{"r": r, "k": k, "v": val} for (r, k), val in final.items()
               if (r, k) in existing and existing[(r, k)] != val]
    tx.bulk_insert(tags, ("run_id", "key", "value"), inserts)
    tx.execute_many(_UPDATE_TAG, updates)
    by_run: dict[str, dict[str, str]] = defaultdict(dict)
    for r, k, val in inserts:
        by_run[r][k] = val
    for u in updates:
        by_run[u["r"]][u["k"]] = u["v"]
    for run_id, changed in by_run.items():
        tx.audit("tags.set", "run", run_id, {"tags": changed})


def _latest_per_key(rows: Iterable[MetricRow]) -> dict[tuple[str, str], MetricRow]:
    best: dict[tuple[str, str], MetricRow] = {}
    get = best.get
    for row in rows:
        k = (row[0], row[1])
        cur = get(k)
        if cur is None or row[4] > cur[4] or (row[4] == cur[4] and row[5] >= cur[5]):
            best[k] = row
    return best


def _update_latest(tx: Tx, latest: dict[tuple[str, str], MetricRow], created: set[str]) -> None:
    current = {(r, k): (st, ts) for r, (k, st, ts) in _stored(tx, _LATEST_OF, (k[0] for k in latest), created)}
    inserts, updates = [], []
    for (run_id, key), (_, _, val, nan, step, ts) in sorted(latest.items()):  # sorted: one lock order
        if (run_id, key) not in current:
            inserts.append((run_id, key, val, nan, step, ts))
        elif (step, ts) >= current[(run_id, key)]:
            updates.append({"r": run_id, "k": key, "v": val, "n": nan, "s": step, "t": ts})
    tx.bulk_insert(latest_metrics, _LATEST_COLUMNS, inserts)
    tx.execute_many(_UPDATE_LATEST, updates)


def metric_history(ctx: Context, run_id: str, key: str) -> list[Metric]:
    """Every logged value of ``key`` in ``run_id``, ordered by step then time."""
    with ctx.store.read() as conn:
        require_run(conn, run_id)
        stored = fetch_all(conn, sa.select(metric_chunks.c.steps, metric_chunks.c.vals, metric_chunks.c.timestamps)
                           .where(metric_chunks.c.run_id == run_id, metric_chunks.c.key == key)
                           .order_by(metric_chunks.c.id))
    return [Metric(key, value, step, ts) for step, value, ts in chunks.unpack(stored)]


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
