"""A self-contained HTML drift report: one file, no script, no network, small.

The page is a pure function of a :class:`~keel.monitoring.result.DriftResult`:
the dataset verdict, schema changes, and one row per column with its test,
statistic, p-values, effect size, threshold, verdict, data quality and an
inline SVG of reference vs current shares (about 2 KB per column, so 25
columns stay far below 1 MB).
"""

from __future__ import annotations

from html import escape
from typing import Any

from keel.monitoring.result import ColumnResult, DriftResult

__all__ = ["render_html"]

_W, _H = 220, 56  # plot size in px
_REF, _CUR = "#9aa5b1", "#1f6feb"

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1c2128}
h1{font-size:20px;margin:0 0 4px}.muted{color:#656d76}.drift{color:#cf222e;font-weight:600}
.ok{color:#1a7f37}.nt{color:#656d76;font-style:italic}table{border-collapse:collapse;margin-top:12px}
th,td{padding:4px 8px;border-bottom:1px solid #d0d7de;text-align:left;vertical-align:middle}
th{background:#f6f8fa;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.banner{padding:10px 14px;border-radius:6px;margin:12px 0;font-weight:600}
.bad{background:#ffebe9;border:1px solid #ff8182}.good{background:#dafbe1;border:1px solid #4ac26b}
.key{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}ul{margin:4px 0}
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
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{_W}' height='{_H + 13}' "
            f"viewBox='0 0 {_W} {_H + 13}' role='img'>{''.join(bars)}"
            f"<line x1='0' y1='{_H}' x2='{_W}' y2='{_H}' stroke='#d0d7de'/>{axis}</svg>")
