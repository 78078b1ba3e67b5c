"""Lineage of the operating side of the loop: gate decisions, deployments, monitor results, retrain runs.

Each edge kind is one :class:`~keel.service.lineage.Relation`, as in
``lineage.py``, whose node builders these reuse. Together they close the
loop of SPEC's lineage, both ways:

    version -> gate decision, deployment, monitor result
    monitor result -> the pipeline run a monitor-alert trigger started
    pipeline run -> its replay (keel retrain) -> the challenger version
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from keel.service import lineage as base
from keel.service.lineage import Link, Node, Relation, _Reader
from keel.store.schema import (
    deployments, gate_decisions, model_versions, monitor_results, monitors, pipeline_runs, trigger_firings,
)

__all__ = ["OPERATING_RELATIONS"]

_SHOWN = 50  # newest monitor results, deployments or firings per node in a graph
_MODELS_NAME = re.compile(r"^models:/(?P<name>[^/@]+)")
_RESULT_KEY = "monitor-result:"


# ---------------------------------------------------------------- nodes
def _gate_node(row: Any) -> Node:
    verdict = "blessed" if row.blessed else "not blessed"
    champion = f"champion v{row.champion_version}" if row.champion_version else "no champion"
    attrs = {"decision_id": row.id, "name": row.name, "version": row.version, "blessed": bool(row.blessed),
             "champion_version": row.champion_version, "reasons": list(row.reasons or []),
             "promotion_request_id": row.promotion_request_id, "created_by": row.created_by,
             "created_at": row.created_at}
    return Node(f"gate:{row.id}", "gate", f"{verdict} against {champion}", attrs)


def _deployment_node(row: Any) -> Node:
    attrs = {"deployment_id": row.id, "target": row.target, "stage": row.stage, "model_uri": row.model_uri,
             "name": row.model_name, "version": row.model_version, "status": row.status,
             "out_dir": row.out_dir, "created_by": row.created_by, "created_at": row.created_at}
    label = f"{row.target} ({row.stage}), {row.status}, by {row.created_by}"
    return Node(f"deployment:{row.id}", "deployment", label, attrs)


def _monitor_result_node(row: Any) -> Node:
    attrs = {"result_id": row.id, "monitor": row.monitor, "model_uri": row.model_uri, "start_ms": row.start_ms,
             "end_ms": row.end_ms, "rows": row.rows, "status": row.status, "alerts": list(row.alerts),
             "versions": list(row.versions)}
    return Node(f"monitor-result:{row.id}", "monitor_result",
                f"monitor {row.monitor}: {row.rows} rows, {row.status}", attrs)


def _version_exists(reader: _Reader, name: str, version: int) -> bool:
    return bool(reader.rows(sa.select(model_versions.c.version).where(
        model_versions.c.name == name, model_versions.c.version == version)))


# ---------------------------------------------------------------- version -> gate decision
def _gates_of(reader: _Reader, node: Node) -> list[Link]:
    rows = reader.rows(sa.select(gate_decisions).where(
        gate_decisions.c.name == node.attrs["name"], gate_decisions.c.version == node.attrs["version"])
        .order_by(gate_decisions.c.created_at, gate_decisions.c.id))
    return [(_gate_node(r), {}) for r in rows]


def _gated_version(reader: _Reader, node: Node) -> list[Link]:
    return [(base._version_node(reader, node.attrs["name"], node.attrs["version"]), {})]


# ---------------------------------------------------------------- version -> deployment
def _deployments_of(reader: _Reader, node: Node) -> list[Link]:
    rows = reader.rows(sa.select(deployments).where(
        deployments.c.model_name == node.attrs["name"], deployments.c.model_version == node.attrs["version"])
        .order_by(deployments.c.created_at.desc(), deployments.c.id).limit(_SHOWN))
    return [(_deployment_node(r), {}) for r in rows]


def _deployed_version(reader: _Reader, node: Node) -> list[Link]:
    name, version = node.attrs["name"], node.attrs["version"]
    return [(base._version_node(reader, name, version), {})] if name and version else []


# ---------------------------------------------------------------- version -> monitor result
def _monitor_results_of(reader: _Reader, node: Node) -> list[Link]:
    from keel.service.monitors import version_windows

    rows = version_windows(reader.conn, node.attrs["name"], node.attrs["version"])[:_SHOWN]
    return [(_monitor_result_node(r), {}) for r in rows]


def _monitored_versions(reader: _Reader, node: Node) -> list[Link]:
    found = _MODELS_NAME.match(node.attrs["model_uri"])
    if found is None:
        return []
    return [(base._version_node(reader, found["name"], v), {}) for v in node.attrs["versions"]
            if _version_exists(reader, found["name"], v)]


# ---------------------------------------------------------------- monitor result -> triggered pipeline run
def _runs_fired_by(reader: _Reader, node: Node) -> list[Link]:
    rows = reader.rows(sa.select(trigger_firings.c.outcome).where(
        trigger_firings.c.dedupe_key == _RESULT_KEY + node.attrs["result_id"]))
    ids = [r.outcome.get("pipeline_run_id") for r in rows if isinstance(r.outcome, dict)]
    return [(base._run_node(reader, run_id), {"via": "trigger"}) for run_id in ids if run_id]


def _alert_that_fired(reader: _Reader, node: Node) -> list[Link]:
    rows = reader.rows(sa.select(trigger_firings.c.dedupe_key, trigger_firings.c.outcome).where(
        trigger_firings.c.dedupe_key.like(f"{_RESULT_KEY}%")).order_by(trigger_firings.c.fired_at.desc())
        .limit(_SHOWN * 20))
    ids = [r.dedupe_key[len(_RESULT_KEY):] for r in rows
           if isinstance(r.outcome, dict) and r.outcome.get("pipeline_run_id") == node.attrs["run_id"]]
    if not ids:
        return []
    found = reader.rows(sa.select(monitor_results, monitors.c.name.label("monitor"), monitors.c.model_uri)
                        .join(monitors, monitors.c.id == monitor_results.c.monitor_id)
                        .where(monitor_results.c.id.in_(ids)))
    return [(_monitor_result_node(r), {"via": "trigger"}) for r in found]


# ---------------------------------------------------------------- pipeline run -> its replay
def _replays_of(reader: _Reader, node: Node) -> list[Link]:
    rows = reader.rows(sa.select(pipeline_runs.c.run_id).where(pipeline_runs.c.replay_of == node.attrs["run_id"])
                       .order_by(pipeline_runs.c.created_at))
    return [(base._run_node(reader, r.run_id), {}) for r in rows]


def _replayed(reader: _Reader, node: Node) -> list[Link]:
    rows = reader.rows(sa.select(pipeline_runs.c.replay_of).where(pipeline_runs.c.run_id == node.attrs["run_id"]))
    return [(base._run_node(reader, r.replay_of), {}) for r in rows if r.replay_of]


OPERATING_RELATIONS: tuple[Relation, ...] = (
    Relation("gated", "version", "gate", _gates_of, _gated_version),
    Relation("deployed_as", "version", "deployment", _deployments_of, _deployed_version),
    Relation("monitored_by", "version", "monitor_result", _monitor_results_of, _monitored_versions),
    Relation("triggered", "monitor_result", "run", _runs_fired_by, _alert_that_fired),
    Relation("replayed_as", "run", "run", _replays_of, _replayed),
)
