"""The model card's sections about a version in operation: gate decisions, monitoring, fairness.

Read from what the store records (gate decisions, monitor window results);
nothing is written. Each section keeps ``status``: ``available`` with its
content, or ``not yet available`` with what would fill it.
"""

from __future__ import annotations

import json
from typing import Any

from keel.service.context import Context

__all__ = ["fairness_section", "gate_section", "monitoring_section"]

AVAILABLE, NOT_AVAILABLE = "available", "not yet available"
_RECENT = 20  # window results per monitor summarised in a card


def gate_section(ctx: Context, name: str, version: int) -> dict[str, Any]:
    """The champion/challenger decisions that judged this version (``keel retrain``)."""
    from keel.service.gate import decisions_for

    found = decisions_for(ctx, name, version)
    if not found:
        return {"status": NOT_AVAILABLE, "note": "no gate decision: this version was not produced by keel retrain"}
    return {"status": AVAILABLE, "decisions": [
        {"id": d.id, "blessed": d.blessed, "champion_version": d.champion_version, "reasons": d.reasons,
         "checks": d.checks, "promotion_request_id": d.promotion_request_id, "decided_by": d.created_by,
         "decided_at": d.created_at} for d in found]}


def monitoring_section(ctx: Context, name: str, version: int) -> dict[str, Any]:
    """Each monitor that saw this version answer: its newest window and how recent windows went."""
    watched = []
    for monitor, results in _windows(ctx, name, version).items():
        latest = results[0]
        watched.append({
            "monitor": monitor, "windows": len(results),
            "alerting_windows": sum(r.status == "alert" for r in results),
            "latest": {"result_id": latest.id, "start_ms": latest.start_ms, "end_ms": latest.end_ms,
                       "rows": latest.rows, "status": latest.status, "alerts": list(latest.alerts),
                       "drift_share": latest.summary.get("drift_share"),
                       "drifted_columns": latest.summary.get("drifted_columns", []),
                       "performance": latest.summary.get("performance")}})
    if not watched:
        return {"status": NOT_AVAILABLE, "note": "no monitor has evaluated traffic of this version "
                                                 "(keel monitor create, keel monitor run)"}
    return {"status": AVAILABLE, "monitors": watched}


def fairness_section(ctx: Context, name: str, version: int) -> dict[str, Any]:
    """Fairness on served traffic (the newest monitor window with a sensitive column), else the newest
    evaluation attached with ``keel fairness``."""
    for monitor, results in _windows(ctx, name, version).items():
        for r in results:
            if r.result_sha256 and r.summary.get("fairness"):
                doc = json.loads(ctx.blobs.get_bytes(r.result_sha256, name=f"monitor result {r.id}"))
                fair = doc.get("fairness") or {}
                return {"status": AVAILABLE, "monitor": monitor, "result_id": r.id, "window_end_ms": r.end_ms,
                        **_fair_fields(fair)}
    from keel.service.fairness_eval import newest

    evaluation = newest(ctx, name, version)
    if evaluation is not None:
        fair = evaluation["result"]
        return {"status": AVAILABLE, "monitor": None, "evaluation": evaluation["data"],
                "evaluated_at": evaluation["created_at"], **_fair_fields(fair)}
    return {"status": NOT_AVAILABLE, "note": "no fairness evaluation (keel fairness URI DATA --sensitive COLUMN) "
                                             "and no monitor measuring it (keel monitor create ... --sensitive)"}


def _fair_fields(fair: dict[str, Any]) -> dict[str, Any]:
    return {"sensitive": fair.get("sensitive"), "verdict": fair.get("status"),
            "demographic_parity_difference": fair.get("demographic_parity_difference"),
            "demographic_parity_ratio": fair.get("demographic_parity_ratio"),
            "equalized_odds_difference": fair.get("equalized_odds_difference"),
            "checks": fair.get("checks", []),
            "groups": [{k: g.get(k) for k in ("group", "count", "selection_rate", "accuracy",
                                              "true_positive_rate", "false_positive_rate")}
                       for g in fair.get("groups", [])]}


def _windows(ctx: Context, name: str, version: int) -> dict[str, list[Any]]:
    """Newest window results per monitor of ``name`` in which ``version`` answered."""
    from keel.service.monitors import result_from_row, version_windows

    with ctx.store.read() as conn:
        rows = version_windows(conn, name, version)
    found: dict[str, list[Any]] = {}
    for row in sorted(rows, key=lambda r: r.monitor):  # stable: newest first within each monitor
        if len(found.setdefault(row.monitor, [])) < _RECENT:
            found[row.monitor].append(result_from_row(row, row.monitor))
    return found
