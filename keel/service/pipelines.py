"""Pipeline runs, their steps and the step cache: every write audited.

The tracked runs themselves (the pipeline run and a child run per step) are
written by keel/service/tracking.py; this module records what belongs to
pipelines: the replay record, each step's cache key and outputs, and the
cache entries that let a later run skip a step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from keel.errors import InvalidInput, NotFound
from keel.governance.roles import VIEWER
from keel.service.context import Context
from keel.service.tracking import now_ms, require_run
from keel.store.schema import model_versions, pipeline_cache, pipeline_runs, pipeline_steps, runs
from keel.store.sql import Tx

RAN, CACHED, FAILED = "ran", "cached", "failed"


@dataclass(frozen=True)
class PipelineRunRecord:
    run_id: str
    pipeline: str
    file: str
    params: dict[str, Any]
    datasets: dict[str, Any]
    record_sha256: str
    lock_sha256: str
    executor: str
    status: str
    error: str | None
    outputs: Any
    replay_of: str | None
    created_at: int
    ended_at: int | None


@dataclass(frozen=True)
class StepRecord:
    step: str
    run_id: str
    cache_key: str
    status: str
    outputs: list[dict[str, Any]]
    error: str | None
    created_at: int


def start_pipeline_run(ctx: Context, *, run_id: str, pipeline: str, file: str, params: dict[str, Any],
                       datasets: dict[str, Any], record_sha256: str, lock_sha256: str, executor: str,
                       replay_of: str | None = None) -> None:
    """Record that run ``run_id`` (already created) is a run of ``pipeline``."""
    def write(tx: Tx) -> None:
        require_run(tx.conn, run_id)
        tx.conn.execute(pipeline_runs.insert().values(
            run_id=run_id, pipeline=pipeline, file=file, params=params, datasets=datasets,
            record_sha256=record_sha256, lock_sha256=lock_sha256, executor=executor, status="RUNNING",
            replay_of=replay_of, created_at=now_ms()))
        tx.audit("pipeline.run.start", "run", run_id, {
            "pipeline": pipeline, "file": file, "params": params, "datasets": datasets,
            "record_sha256": record_sha256, "lock_sha256": lock_sha256, "executor": executor,
            "replay_of": replay_of})

    ctx.write(write, what="run pipelines")


def finish_pipeline_run(ctx: Context, run_id: str, status: str, *, error: str | None = None,
                        outputs: Any = None) -> None:
    def write(tx: Tx) -> None:
        tx.conn.execute(pipeline_runs.update().where(pipeline_runs.c.run_id == run_id).values(
            status=status, error=error, outputs=outputs, ended_at=now_ms()))
        tx.audit("pipeline.run.end", "run", run_id, {"status": status, "error": error})

    ctx.write(write, what="run pipelines")


def record_step(ctx: Context, pipeline_run_id: str, step: str, *, run_id: str, cache_key: str, status: str,
                outputs: list[dict[str, Any]], error: str | None = None, cache: bool = True) -> None:
    """Record a step's outcome; a step that ran also fills the cache (same transaction)."""
    if status not in (RAN, CACHED, FAILED):
        raise InvalidInput(f"step status must be ran, cached or failed, got {status!r}")

    def write(tx: Tx) -> None:
        now = now_ms()
        tx.conn.execute(pipeline_steps.insert().values(
            pipeline_run_id=pipeline_run_id, step=step, run_id=run_id, cache_key=cache_key, status=status,
            outputs=outputs, error=error, created_at=now))
        if status == RAN and cache:
            exists = tx.conn.execute(sa.select(pipeline_cache.c.cache_key)
                                     .where(pipeline_cache.c.cache_key == cache_key)).first()
            if exists:  # another run computed the same key meanwhile: both results are valid
                tx.conn.execute(pipeline_cache.update().where(pipeline_cache.c.cache_key == cache_key)
                                .values(outputs=outputs, run_id=run_id, created_at=now))
            else:
                tx.conn.execute(pipeline_cache.insert().values(
                    cache_key=cache_key, step=step, outputs=outputs, run_id=run_id, created_at=now))
        tx.audit(f"pipeline.step.{status}", "run", run_id, {
            "pipeline_run_id": pipeline_run_id, "step": step, "cache_key": cache_key, "outputs": outputs,
            "error": error})

    ctx.write(write, what="run pipelines")


def cache_lookup(ctx: Context, cache_key: str) -> tuple[list[dict[str, Any]], str] | None:
    """(outputs, run id that computed them) for a cache key, or None."""
    with ctx.store.read() as conn:
        row = conn.execute(sa.select(pipeline_cache.c.outputs, pipeline_cache.c.run_id)
                           .where(pipeline_cache.c.cache_key == cache_key)).first()
    return (list(row.outputs), row.run_id) if row else None


def get_pipeline_run(ctx: Context, run_id: str) -> PipelineRunRecord:
    ctx.authorize(VIEWER, what="read pipeline runs")
    with ctx.store.read() as conn:
        row = conn.execute(sa.select(pipeline_runs).where(pipeline_runs.c.run_id.startswith(run_id))
                           .limit(2)).all()
    if len(row) != 1:
        raise NotFound(f"pipeline run {run_id!r} " + ("is ambiguous: give more characters" if row else
                       "does not exist (see `keel pipeline runs`)"))
    return _run_record(row[0])


def list_pipeline_runs(ctx: Context, pipeline: str | None = None, limit: int = 100) -> list[PipelineRunRecord]:
    ctx.authorize(VIEWER, what="list pipeline runs")
    query = sa.select(pipeline_runs).order_by(pipeline_runs.c.created_at.desc()).limit(limit)
    if pipeline is not None:
        query = query.where(pipeline_runs.c.pipeline == pipeline)
    with ctx.store.read() as conn:
        return [_run_record(r) for r in conn.execute(query)]


def steps_of(ctx: Context, pipeline_run_id: str) -> list[StepRecord]:
    with ctx.store.read() as conn:
        rows = conn.execute(sa.select(pipeline_steps).where(pipeline_steps.c.pipeline_run_id == pipeline_run_id)
                            .order_by(pipeline_steps.c.created_at, pipeline_steps.c.step)).all()
    return [StepRecord(r.step, r.run_id, r.cache_key, r.status, list(r.outputs), r.error, r.created_at)
            for r in rows]


def pipeline_run_of_version(ctx: Context, name: str, version: int) -> PipelineRunRecord:
    """The pipeline run that produced a model version: its run, or the closest ancestor run that is one."""
    with ctx.store.read() as conn:
        run_id = conn.execute(sa.select(model_versions.c.run_id).where(
            model_versions.c.name == name, model_versions.c.version == version)).scalar()
        if run_id is None:
            raise NotFound(f"models:/{name}/{version} does not exist (see `keel models versions {name}`)")
        current: str | None = run_id
        for _ in range(32):  # a parent chain deeper than this is not a pipeline's
            if current is None:
                break
            row = conn.execute(sa.select(pipeline_runs).where(pipeline_runs.c.run_id == current)).first()
            if row is not None:
                return _run_record(row)
            current = conn.execute(sa.select(runs.c.parent_run_id).where(runs.c.id == current)).scalar()
    raise NotFound(f"models:/{name}/{version} was not produced by a keel pipeline (its run {run_id} has no "
                   "pipeline run above it): retrain needs a model logged inside a @keel.step")


def _run_record(r: Any) -> PipelineRunRecord:
    return PipelineRunRecord(r.run_id, r.pipeline, r.file, dict(r.params), dict(r.datasets), r.record_sha256,
                             r.lock_sha256, r.executor, r.status, r.error, r.outputs, r.replay_of, r.created_at,
                             r.ended_at)
