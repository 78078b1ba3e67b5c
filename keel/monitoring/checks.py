"""One window of served traffic against a monitor's reference: every check, and the alerts they raise.

Pure: a reference summary, a window split by :func:`keel.monitoring.window.split_window`,
and the monitor's options in; the JSON result, a short summary for listings
and the alert lines out. The service layer stores them and sends the alerts.

Alert rules (each one line in ``alerts``):

- data drift: the dataset-drift verdict of the input columns (share of
  drifted columns at least ``drift_share``);
- a schema break: a reference column missing from the window, or of another kind;
- prediction drift: the model's answers drift against its answers on the reference;
- performance (with labels): a score lower than on the reference by more than ``max_drop``
  (absolute), or an error higher by more than ``max_error_increase`` (relative);
- fairness (with a sensitive column): a limit that fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keel.monitoring.columns import Summary
from keel.monitoring.drift import detect_drift
from keel.monitoring.window import PREDICTION, WindowData

__all__ = ["DRIFT_OPTIONS", "WindowCheck", "check_window"]

DRIFT_OPTIONS = ("preset", "fdr", "min_effect", "drift_share", "tests", "thresholds", "ignore")


@dataclass(frozen=True)
class WindowCheck:
    result: dict[str, Any]
    summary: dict[str, Any]
    alerts: list[str] = field(default_factory=list)


def check_window(reference: Summary, data: WindowData, options: dict[str, Any],
                 reference_performance: dict[str, Any] | None = None) -> WindowCheck:
    """Drift of inputs and prediction, data quality, and (when possible) performance and fairness."""
    drift_options = {k: options[k] for k in DRIFT_OPTIONS if options.get(k) is not None}
    ignore = set(drift_options.pop("ignore", ())) | {PREDICTION}
    features = detect_drift(reference, data.features.drop_columns(
        [n for n in data.features.column_names if n == PREDICTION]), ignore=sorted(ignore), **drift_options)
    result = features.to_dict()
    alerts: list[str] = []
    dataset = features.dataset_drift
    if dataset.detected:
        alerts.append(f"data drift: {dataset.drifted_columns} of {dataset.tested_columns} input columns drifted "
                      f"({', '.join(features.drifted)}); threshold share {dataset.threshold:g}")
    if not features.schema_ok:
        changes = features.schema_changes
        alerts.append(f"schema break: missing columns {changes['missing_columns']}, "
                      f"type changes {[c['column'] for c in changes['type_changes']]}")
    result["prediction_drift"] = _prediction_drift(reference, data, drift_options)
    if result["prediction_drift"] and result["prediction_drift"]["drift"]["status"] == "drift":
        d = result["prediction_drift"]["drift"]
        alerts.append(f"prediction drift: {d['test']} effect {d['effect_size']:.3g} ({d['effect_measure']})")
    perf = _performance(data, options, reference_performance)
    if perf is not None:
        result["performance"] = perf
        failing = [m for m in (perf.get("comparison") or {}).get("metrics", []) if m.get("status") == "fail"]
        if failing:
            alerts.append("performance: " + "; ".join(
                f"{m['metric']} {m['current']:.4g} vs {m['reference']:.4g} on the reference" for m in failing))
    fair = _fairness(data, options)
    if fair is not None:
        result["fairness"] = fair
        failed = [c for c in fair["checks"] if c["status"] == "fail"]
        if failed:
            alerts.append(f"fairness across {options['sensitive']}: " + "; ".join(
                f"{c['name']} {c['value']:.3g} (limit {c['limit']:g})" for c in failed))
    result["window"] = {"rows": data.rows, "versions": data.versions,
                        "labeled_rows": 0 if data.labels is None else len(data.labels) - data.labels.null_count}
    summary = {"drift_share": dataset.share, "drifted_columns": features.drifted,
               "dataset_drift": dataset.detected, "schema_ok": features.schema_ok,
               "prediction_drift": bool(result["prediction_drift"])
               and result["prediction_drift"]["drift"]["status"] == "drift"}
    if perf is not None:
        summary["performance"] = perf["metrics"]
    if fair is not None:
        summary["fairness"] = fair["status"]
    result["alerts"] = alerts
    return WindowCheck(result, summary, alerts)


def _prediction_drift(reference: Summary, data: WindowData, drift_options: dict[str, Any]) -> dict[str, Any] | None:
    if PREDICTION not in reference.columns or PREDICTION not in data.features.column_names:
        return None
    options = {k: v for k, v in drift_options.items() if k in ("preset", "fdr", "min_effect")}
    one = detect_drift(Summary(reference.rows, {PREDICTION: reference.columns[PREDICTION]}, reference.source),
                       data.features.select([PREDICTION]), **options)
    column = one.to_dict()["columns"][0]
    column["role"] = "prediction"
    return column


def _labels_and_answers(data: WindowData) -> tuple[Any, Any] | None:
    if data.labels is None or PREDICTION not in data.features.column_names:
        return None
    return data.labels.to_numpy(zero_copy_only=False), data.features[PREDICTION].to_numpy()


def _performance(data: WindowData, options: dict[str, Any], reference: dict[str, Any] | None) -> dict | None:
    """Metrics on the rows whose labels arrived, against the reference's; a note instead when they cannot be had."""
    from keel.errors import KeelError
    from keel.monitoring.performance import evaluate_performance

    pair = _labels_and_answers(data)
    if pair is None:
        return None
    labels, answers = pair
    try:
        return evaluate_performance(labels, answers, scores=data.scores,
                                    reference=(reference or {}).get("metrics"),
                                    max_drop=options.get("max_drop", 0.05),
                                    max_error_increase=options.get("max_error_increase", 0.10)).to_dict()
    except KeelError as exc:
        return {"metrics": {}, "error": str(exc)}


def _fairness(data: WindowData, options: dict[str, Any]) -> dict | None:
    from keel.errors import KeelError
    from keel.monitoring.fairness import evaluate_fairness

    column = options.get("sensitive")
    if not column or column not in data.features.column_names or PREDICTION not in data.features.column_names:
        return None
    pair = _labels_and_answers(data)
    try:
        return evaluate_fairness(data.features[column].to_numpy(zero_copy_only=False),
                                 data.features[PREDICTION].to_numpy(zero_copy_only=False),
                                 pair[0] if pair else None, scores=data.scores if pair else None,
                                 limits=options.get("fairness_limits") or None, sensitive=column).to_dict()
    except KeelError as exc:
        return {"status": "error", "checks": [], "error": str(exc)}


def check_tables(reference: Any, current: Any, options: dict[str, Any], *, target: str | None = None,
                 prediction: str | None = None, score: str | None = None) -> WindowCheck:
    """:func:`check_window` for two tables or files that hold the model's answers (and labels) as columns.

    ``prediction`` names the column of the model's answers (drift of it is
    prediction drift), ``target`` the ground truth (performance on the
    current data, against the reference's when it has both), ``score`` the
    positive class's score (ROC AUC, log loss).
    """
    import pyarrow as pa

    from keel.errors import InvalidInput
    from keel.monitoring.columns import load_table, summarize
    from keel.monitoring.performance import evaluate_performance

    sides = {"reference": load_table(reference, what="reference"), "current": load_table(current, what="current")}
    needed = {"--prediction": (prediction, ("reference", "current")), "--target": (target, ("current",)),
              "--score": (score, ("current",)), "--sensitive": (options.get("sensitive"), ("current",))}
    for option, (column, where) in needed.items():
        for side in where:
            if column is not None and column not in sides[side].column_names:
                raise InvalidInput(f"{option} column {column!r} is not in the {side} data; "
                                   f"its columns: {sides[side].column_names}")
    if target is not None and prediction is None:
        raise InvalidInput("--target needs --prediction: performance compares the two")

    def split(table: pa.Table) -> tuple[pa.Table, Any, Any]:
        labels = table[target].combine_chunks() if target and target in table.column_names else None
        scores = table[score].to_numpy() if score and score in table.column_names else None
        features = table.drop_columns([c for c in (target, score) if c and c in table.column_names])
        if prediction:
            features = features.rename_columns([PREDICTION if n == prediction else n for n in features.column_names])
        return features, labels, scores

    ref_features, ref_labels, ref_scores = split(sides["reference"])
    cur_features, cur_labels, cur_scores = split(sides["current"])
    reference_performance = None
    if ref_labels is not None and prediction:
        reference_performance = evaluate_performance(
            ref_labels.to_numpy(zero_copy_only=False), ref_features[PREDICTION].to_numpy(zero_copy_only=False),
            scores=ref_scores).to_dict()
    data = WindowData(cur_features, cur_labels, cur_scores, [])
    return check_window(summarize(ref_features, source=str(reference) if not isinstance(reference, pa.Table)
                                  else None), data, options, reference_performance)
