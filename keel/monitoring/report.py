"""A self-contained HTML drift report: one file, no script, no network, small.

The page is a pure function of a :class:`~keel.monitoring.result.DriftResult`:
the dataset verdict, a bar chart of each column's effect size, schema
changes, one row per column with its test, statistic, p-values, effect size,
threshold, verdict, data quality and an inline SVG of reference vs current
shares (about 2 KB per column, so 25 columns stay far below 1 MB); then,
when the result carries them, performance (reference vs current metrics) and
fairness (limit verdicts, selection rate per group as a chart, per-group
metrics). Plots are inline SVG, which an HTML5 page needs no namespace URL
for: the file names no address at all.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from keel.monitoring.harm import FairnessResult, GroupMetrics, PerformanceResult
from keel.monitoring.result import ColumnResult, DriftResult

__all__ = ["render_html"]

_W, _H = 220, 56  # plot size in px
_REF, _CUR = "#9aa5b1", "#1f6feb"
_BAD, _GOOD, _MUTED = "#cf222e", "#2da44e", "#656d76"
_MAX_GROUP_BARS = 30  # the selection-rate chart shows the largest groups; the table lists all

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1c2128}
h1{font-size:20px;margin:0 0 4px}.muted{color:#656d76}.drift{color:#cf222e;font-weight:600}
.ok{color:#1a7f37}.nt{color:#656d76;font-style:italic}table{border-collapse:collapse;margin-top:12px}
th,td{padding:4px 8px;border-bottom:1px solid #d0d7de;text-align:left;vertical-align:middle}
th{background:#f6f8fa;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.banner{padding:10px 14px;border-radius:6px;margin:12px 0;font-weight:600}
.bad{background:#ffebe9;border:1px solid #ff8182}.good{background:#dafbe1;border:1px solid #4ac26b}
.key{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}ul{margin:4px 0}
h2{font-size:17px;margin:28px 0 4px}.neutral{background:#f6f8fa;border:1px solid #d0d7de}
"""


def render_html(result: DriftResult, title: str = "keel drift report") -> str:
    """The report as one HTML document (UTF-8 text)."""
    ds = result.dataset_drift
    share = "-" if ds.share is None else f"{ds.share:.0%}"
    banner_class = "bad" if ds.detected or not result.schema_ok else "good"
    verdict = "Dataset drift detected" if ds.detected else "No dataset drift"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<div class='muted'>reference: {_side(result.reference)} &middot; current: {_side(result.current)}"
        f" &middot; preset: {escape(result.preset)}{_settings(result.settings)}</div>",
        f"<div class='banner {banner_class}'>{verdict}: {ds.drifted_columns} of {ds.tested_columns} tested "
        f"columns drift ({share}; threshold {ds.threshold:.0%})</div>",
        _overview(result.columns),
        _schema(result.schema_changes),
        f"<div class='muted'><span class='key' style='background:{_REF}'></span>reference"
        f"<span class='key' style='background:{_CUR}'></span>current (share of rows)</div>",
        "<table><thead><tr><th>column</th><th>kind</th><th>test</th><th>statistic</th><th>p-value</th>"
        "<th>p adjusted</th><th>effect size</th><th>threshold</th><th>verdict</th><th>data quality</th>"
        "<th>distribution</th></tr></thead><tbody>",
        *(_row(c) for c in result.columns),
        "</tbody></table>",
        "<p class='muted'>p adjusted: Benjamini-Hochberg across the columns' p-values. Effect size: "
        "KS distance (largest gap between the two cumulative shares), total variation (share of rows that "
        "would have to change category), or the distance itself.</p>",
        _performance(result.performance) if result.performance is not None else "",
        _fairness(result.fairness) if result.fairness is not None else "",
        "</body></html>"]
    return "\n".join(parts)


def _side(side: dict[str, Any]) -> str:
    source = f"{escape(str(side['source']))}, " if side.get("source") else ""
    return f"{source}{side['rows']:,} rows, {side['columns']} columns"


def _settings(settings: dict[str, Any]) -> str:
    shown = [f"{k}={escape(str(v))}" for k, v in settings.items() if v not in (None, {}, [])]
    return " &middot; " + ", ".join(shown) if shown else ""


def _schema(changes: dict[str, Any]) -> str:
    items = []
    if changes["missing_columns"]:
        items.append("missing from current: " + escape(", ".join(changes["missing_columns"])))
    if changes["extra_columns"]:
        items.append("extra in current (not checked): " + escape(", ".join(changes["extra_columns"])))
    for t in changes["type_changes"]:
        items.append(f"type change: {escape(t['column'])}: {escape(t['reference'])} &rarr; {escape(str(t['current']))}")
    return "<div><b>Schema</b><ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul></div>" if items else ""


def _num(value: float | None) -> str:
    return "-" if value is None else escape(f"{value:.3g}")


def _row(col: ColumnResult) -> str:
    d = col.drift
    if d.status == "drift":
        verdict = "<span class='drift'>drift</span>"
    elif d.status == "no_drift":
        verdict = "<span class='ok'>no drift</span>"
    else:
        verdict = f"<span class='nt'>not tested: {escape(d.reason or '')}</span>"
    if d.reason and d.status != "not_tested":
        verdict += f"<div class='muted'>{escape(d.reason)}</div>"
    effect = threshold = "-"
    if d.effect_size is not None:
        effect = f"{_num(d.effect_size)} <span class='muted'>{escape(d.effect_measure or '')}</span>"
    if d.threshold is not None:
        threshold = f"{_num(d.threshold)} <span class='muted'>on {escape(d.threshold_on or '')}</span>"
    if d.min_effect is not None:
        threshold += f"<div class='muted'>min effect {_num(d.min_effect)}</div>"
    numbers = {3, 4, 5, 6}  # right-aligned columns
    cells = [escape(col.name), escape(col.kind), escape(d.test or "-"), _num(d.statistic), _num(d.p_value),
             _num(d.p_adjusted), effect, threshold, verdict, _quality(col), _svg(col.histogram)]
    return "<tr>" + "".join(f"<td class='n'>{c}</td>" if i in numbers else f"<td>{c}</td>"
                            for i, c in enumerate(cells)) + "</tr>"


def _quality(col: ColumnResult) -> str:
    q = col.quality
    if q is None:
        return "<span class='drift'>missing from current</span>"
    lines = []
    if q.missing_share_reference or q.missing_share_current:
        lines.append(f"missing {q.missing_share_reference:.1%} &rarr; {q.missing_share_current:.1%}")
    if q.non_finite_current:
        lines.append(f"{q.non_finite_current} infinite values")
    if q.out_of_range_share:
        lines.append(f"{q.out_of_range_share:.2%} out of reference range")
    if q.unseen_categories:
        lines.append(f"{q.unseen_categories} unseen categories ({q.unseen_share:.2%} of rows): "
                     + escape(", ".join(q.unseen_examples)))
    if col.schema == "type_changed":
        lines.append(f"type {escape(col.type_reference)} &rarr; {escape(str(col.type_current))}")
    return "<br>".join(lines) if lines else "<span class='muted'>ok</span>"


def _svg(hist: dict[str, Any] | None) -> str:
    if not hist:
        return ""
    ref, cur = hist["reference"], hist["current"]
    # A trailing "(N others)" bar would dwarf the named ones: scale to those and clip it.
    scaled = len(ref) - 1 if hist["kind"] == "categories" and hist["labels"][-1].startswith("(") else len(ref)
    top = max(max(ref[:scaled], default=0), max(cur[:scaled], default=0)) or 1.0
    n = len(ref)
    slot = _W / n
    bars = []
    for i, (r, c) in enumerate(zip(ref, cur)):
        x = i * slot
        label = hist["labels"][i] if hist["kind"] == "categories" else \
            f"{hist['edges'][i]:.4g} .. {hist['edges'][i + 1]:.4g}"
        rh, ch = min(r / top, 1) * (_H - 2), min(c / top, 1) * (_H - 2)
        bars.append(f"<g><title>{escape(label)}: reference {r:.2%}, current {c:.2%}</title>"
                    f"<rect x='{x + slot * 0.1:.1f}' y='{_H - rh:.1f}' width='{slot * 0.45:.1f}' height='{rh:.1f}' "
                    f"fill='{_REF}'/><rect x='{x + slot * 0.5:.1f}' y='{_H - ch:.1f}' width='{slot * 0.45:.1f}' "
                    f"height='{ch:.1f}' fill='{_CUR}'/></g>")
    axis = ""
    if hist["kind"] == "bins":
        axis = (f"<text x='0' y='{_H + 11}' font-size='9' fill='#656d76'>{hist['edges'][0]:.3g}</text>"
                f"<text x='{_W}' y='{_H + 11}' font-size='9' fill='#656d76' text-anchor='end'>"
                f"{hist['edges'][-1]:.3g}</text>")
    return (f"<svg width='{_W}' height='{_H + 13}' "
            f"viewBox='0 0 {_W} {_H + 13}' role='img'>{''.join(bars)}"
            f"<line x1='0' y1='{_H}' x2='{_W}' y2='{_H}' stroke='#d0d7de'/>{axis}</svg>")


# ---------------------------------------------------------------- drift score per column
def _overview(columns: list[ColumnResult]) -> str:
    """One horizontal bar per column: its effect size, red when it drifts."""
    if not columns:
        return ""
    # Wide enough for the longest name (about 7 px a character at 11 px), up to 28 characters.
    label_w = 12 + 7 * min(max(len(c.name) for c in columns), 28)
    bar_w, row_h = 340, 16
    sizes = [c.drift.effect_size for c in columns]
    top = max((e for e in sizes if e is not None and math.isfinite(e)), default=0.0) or 1.0
    rows = []
    for i, (col, effect) in enumerate(zip(columns, sizes)):
        y = i * row_h
        name = col.name if len(col.name) <= 28 else col.name[:27] + "\u2026"
        label = (f"<text x='{label_w - 6}' y='{y + 12}' font-size='11' text-anchor='end'>{escape(name)}</text>")
        if effect is None or not math.isfinite(effect):
            why = "not tested" if col.drift.status == "not_tested" else "no effect size"
            rows.append(f"<g><title>{escape(col.name)}: {why}</title>{label}<text x='{label_w}' y='{y + 12}' "
                        f"font-size='10' fill='{_MUTED}' font-style='italic'>{why}</text></g>")
            continue
        w = bar_w * min(effect / top, 1.0)
        colour = _BAD if col.drift.detected else _GOOD
        verdict = "drift" if col.drift.detected else "no drift"
        rows.append(f"<g><title>{escape(col.name)}: {verdict}, effect size {effect:.3g} "
                    f"({escape(col.drift.effect_measure or '')})</title>{label}"
                    f"<rect x='{label_w}' y='{y + 3}' width='{w:.1f}' height='{row_h - 6}' fill='{colour}'/>"
                    f"<text x='{label_w + w + 4:.1f}' y='{y + 12}' font-size='10' fill='{_MUTED}'>{effect:.3g}</text>"
                    "</g>")
    width, height = label_w + bar_w + 50, len(columns) * row_h + 4
    return ("<h2>Drift score per column</h2><div class='muted'>Effect size on each test's own scale (KS "
            "distance, total variation, difference of shares, or the distance); "
            f"<span style='color:{_BAD}'>red</span>: drift.</div>"
            f"<svg width='{width}' height='{height}' viewBox='0 0 {width} {height}' role='img'>"
            + "".join(rows) + "</svg>")


# ---------------------------------------------------------------- performance
_METRIC_NAMES = {"accuracy": "accuracy", "precision": "precision", "recall": "recall", "f1": "F1",
                 "roc_auc": "ROC AUC", "log_loss": "log loss", "mae": "MAE", "rmse": "RMSE", "r2": "R\u00b2",
                 "mape": "MAPE"}


def _performance(perf: PerformanceResult) -> str:
    how = {"binary": f"positive class {escape(str(perf.pos_label))}", "macro": "macro average over classes"}
    facts = [escape(perf.task), f"{perf.rows:,} rows with a label"]
    if perf.rows_missing_label:
        facts.append(f"{perf.rows_missing_label:,} awaiting their label")
    if perf.rows_missing_prediction:
        facts.append(f"{perf.rows_missing_prediction:,} without a prediction")
    if perf.average:
        facts.append(how[perf.average])
    parts = ["<h2>Performance</h2>", "<div class='muted'>" + " &middot; ".join(facts) + "</div>"]
    compared = {m.metric: m for m in perf.comparison.metrics} if perf.comparison else {}
    if perf.comparison is not None:
        c = perf.comparison
        parts.append(f"<div class='banner {'bad' if c.degraded else 'good'}'>"
                     f"{'Performance degraded' if c.degraded else 'Performance within limits'}: largest drop "
                     f"{c.max_drop:.3g} for scores, largest increase {c.max_error_increase:.0%} for errors</div>")
    head = ["metric", "current"] + (["reference", "difference", "limit", "verdict"] if compared else []) + ["note"]
    rows = []
    for name, value in perf.metrics.items():
        cells = [escape(_METRIC_NAMES.get(name, name)), _num(value)]
        if compared:
            m = compared.get(name)
            if m is None:
                cells += ["-", "-", "-", "-"]
            else:
                kind = "drop" if m.limit_kind == "absolute_drop" else "increase"
                limit = "-" if m.limit is None else (f"{kind} {m.limit:.3g}" if kind == "drop" else
                                                      f"{kind} {m.limit:.0%}")
                diff = "-" if m.difference is None else escape(f"{m.difference:+.3g}")
                cells += [_num(m.reference), diff, limit, _verdict(m.status, m.reason)]
        cells.append(f"<span class='muted'>{escape(perf.notes.get(name, ''))}</span>")
        rows.append(cells)
    parts.append(_table(head, rows, numeric={1, 2, 3} if compared else {1}))
    if perf.unseen_labels:
        shown = ", ".join(f"{escape(str(u['label']))} ({u['true_count']} true, {u['pred_count']} predicted)"
                          for u in perf.unseen_labels)
        parts.append(f"<div><b>Labels unseen in training:</b> {shown}</div>")
    if perf.per_class:
        parts.append(_table(["class", "support", "precision", "recall", "F1", "ROC AUC"],
                            [[escape(str(c["label"])), f"{c['support']:,}", _num(c["precision"]), _num(c["recall"]),
                              _num(c["f1"]), _num(c["roc_auc"])] for c in perf.per_class], numeric={1, 2, 3, 4, 5}))
    return "\n".join(parts)


# ---------------------------------------------------------------- fairness
def _fairness(fair: FairnessResult) -> str:
    title = f"Fairness across {escape(fair.sensitive)}" if fair.sensitive else "Fairness across groups"
    banner = {"fail": ("bad", "Fairness check failed"), "pass": ("good", "Fairness within limits"),
              "not_judged": ("neutral", "Fairness not judged")}[fair.status]
    parts = [f"<h2>{title}</h2>",
             f"<div class='muted'>{fair.rows:,} rows &middot; favourable outcome: {escape(str(fair.pos_label))} "
             f"&middot; {fair.groups_judged} of {len(fair.groups)} groups large enough to judge "
             f"(at least {fair.min_group_size:,} rows)</div>",
             f"<div class='banner {banner[0]}'>{banner[1]}</div>"]
    if fair.checks:
        parts.append(_table(["limit", "metric", "value", "bound", "verdict"],
                            [[escape(c.name), escape(c.metric), _num(c.value), _num(c.limit),
                              _verdict(c.status, c.reason)] for c in fair.checks], numeric={2, 3}))
    spread = [("demographic parity difference", fair.demographic_parity_difference),
              ("demographic parity ratio", fair.demographic_parity_ratio),
              ("true positive rate difference", fair.true_positive_rate_difference),
              ("false positive rate difference", fair.false_positive_rate_difference),
              ("equalized odds difference", fair.equalized_odds_difference)]
    parts.append("<div>" + " &middot; ".join(f"{name}: <b>{_num(v)}</b>" for name, v in spread) + "</div>")
    parts.append(_selection_chart(fair.groups, fair.overall))
    rows = [_group_row(g) for g in (*fair.groups, fair.overall)]
    parts.append(_table(["group", "rows", "share", "selection rate", "labelled", "accuracy", "TPR", "FPR",
                         "precision", "ROC AUC", "note"], rows, numeric=set(range(1, 10))))
    if fair.notes:
        parts.append("<ul class='muted'>" + "".join(f"<li>{escape(k)}: {escape(v)}</li>"
                                                   for k, v in fair.notes.items()) + "</ul>")
    return "\n".join(parts)


def _group_row(g: GroupMetrics) -> list[str]:
    note = "<span class='nt'>too small to judge</span>" if g.too_small else ""
    return [escape(g.group), f"{g.count:,}", f"{g.share:.1%}", _num(g.selection_rate), f"{g.labelled:,}",
            _num(g.accuracy), _num(g.tpr), _num(g.fpr), _num(g.precision), _num(g.roc_auc), note]


def _selection_chart(groups: list[GroupMetrics], overall: GroupMetrics) -> str:
    """Selection rate per group on a fixed 0..1 scale, the overall rate dashed; small groups pale."""
    shown = groups[:_MAX_GROUP_BARS]
    slot, h, top = 56, 110, 14
    width = max(len(shown) * slot, 240)
    bars = []
    for i, g in enumerate(shown):
        x, bh = i * slot, g.selection_rate * h
        name = g.group if len(g.group) <= 9 else g.group[:8] + "\u2026"
        small = " (too small to judge)" if g.too_small else ""
        bars.append(f"<g><title>{escape(g.group)}: selection rate {g.selection_rate:.1%}, {g.count:,} rows{small}"
                    f"</title><rect x='{x + 8}' y='{top + h - bh:.1f}' width='{slot - 16}' height='{bh:.1f}' "
                    f"fill='{_CUR}' fill-opacity='{0.35 if g.too_small else 1}'/>"
                    f"<text x='{x + slot / 2}' y='{top + h - bh - 3:.1f}' font-size='10' text-anchor='middle'>"
                    f"{g.selection_rate:.0%}</text><text x='{x + slot / 2}' y='{top + h + 13}' font-size='10' "
                    f"text-anchor='middle' fill='{_MUTED}'>{escape(name)}</text></g>")
    y = top + h - overall.selection_rate * h
    more = f" ({len(groups) - len(shown)} smaller groups in the table)" if len(groups) > len(shown) else ""
    return (f"<div class='muted'>Selection rate per group (dashed: all rows, {overall.selection_rate:.1%}){more}"
            f"</div><svg width='{width}' height='{top + h + 18}' viewBox='0 0 {width} {top + h + 18}' role='img'>"
            + "".join(bars) + f"<line x1='0' y1='{top + h}' x2='{width}' y2='{top + h}' stroke='#d0d7de'/>"
            f"<line x1='0' y1='{y:.1f}' x2='{width}' y2='{y:.1f}' stroke='{_MUTED}' stroke-dasharray='4 3'/></svg>")


# ---------------------------------------------------------------- shared
def _verdict(status: str, reason: str | None) -> str:
    if status == "fail":
        return "<span class='drift'>fail</span>"
    if status == "pass":
        return "<span class='ok'>pass</span>"
    return f"<span class='nt'>not judged{': ' + escape(reason) if reason else ''}</span>"


def _table(head: list[str], rows: list[list[str]], numeric: set[int]) -> str:
    body = "".join("<tr>" + "".join(f"<td class='n'>{c}</td>" if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return ("<table><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + body + "</tbody></table>")
