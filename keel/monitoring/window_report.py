"""A stored window result (JSON) back into a drift result, and its HTML report.

Monitors store each window's result as JSON (``keel.drift/1`` plus the
monitor's keys); the HTML report is rendered from it on demand, so nothing
but the JSON is kept per window. The JSON is turned back into the frozen
dataclasses generically, from their type hints: a field added to a result
class needs no change here, and keys the classes do not know are ignored.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from html import escape
from typing import Any

from keel.monitoring import harm, result
from keel.monitoring.report import render_html
from keel.monitoring.result import ColumnResult, DriftResult

__all__ = ["render_result_html", "result_from_dict"]

_NAMES = {**vars(result), **vars(harm)}


def result_from_dict(doc: dict[str, Any], *, with_prediction: bool = False) -> DriftResult:
    """The :class:`DriftResult` (with performance and fairness) that a stored JSON result holds.

    ``with_prediction`` appends the prediction-drift column (role ``prediction``) to the columns.
    """
    drift = _build(DriftResult, doc)
    if with_prediction and doc.get("prediction_drift"):
        drift = dataclasses.replace(drift, columns=[*drift.columns, _build(ColumnResult, doc["prediction_drift"])])
    return drift


def render_result_html(doc: dict[str, Any], title: str = "keel monitor window") -> str:
    """The drift report of a stored window, with its alerts and the prediction-drift row."""
    page = render_html(result_from_dict(doc, with_prediction=True), title)
    window = doc.get("monitor") or {}
    lines = [f"<div class='muted'>model {escape(str(window.get('model_uri', '')))}, window "
             f"{window.get('start_ms')} .. {window.get('end_ms')} (epoch ms), "
             f"{(doc.get('window') or {}).get('rows', 0)} rows</div>"]
    if doc.get("alerts"):
        lines.append("<div class='banner bad'>Alerts<ul>"
                     + "".join(f"<li>{escape(a)}</li>" for a in doc["alerts"]) + "</ul></div>")
    return page.replace("</h1>", "</h1>" + "".join(lines), 1)


def _build(cls: type, data: Any) -> Any:
    hints = typing.get_type_hints(cls, globalns=_NAMES)
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: _value(hints[k], v) for k, v in data.items() if k in known})


def _value(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _value(options[0], value) if len(options) == 1 else value
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(hint) or (Any,)
        return [_value(item, v) for v in value]
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return _build(hint, value)
    return value
