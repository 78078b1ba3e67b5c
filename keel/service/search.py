"""Run search: a small filter language compiled to one SQL query.

Filter: clauses joined by ``and``, each ``<kind>.<key> <op> <value>`` where
kind is ``metrics`` (latest value), ``params``, ``tags`` or ``attributes``
(status, name, user, start_time, end_time, run_id, experiment_id). Quote keys
with special characters in backticks or double quotes. Examples::

    metrics.auc > 0.9 and params.model = 'forest'
    attributes.status = 'FINISHED' and tags.team LIKE 'risk%'

Order: ``["metrics.auc DESC", "attributes.start_time"]``; runs without the
metric sort last.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import sqlalchemy as sa

from keel.entities import Run
from keel.errors import InvalidInput
from keel.service.context import Context
from keel.service.tracking import hydrate_runs
from keel.store.schema import experiments, latest_metrics, params, runs, tags
from keel.store.sql import fetch_all

_KINDS = {
    "metric": "metrics", "metrics": "metrics", "param": "params", "params": "params",
    "tag": "tags", "tags": "tags", "attribute": "attributes", "attributes": "attributes",
    "attr": "attributes", "run": "attributes",
}
_ATTRIBUTES = {
    "status": runs.c.status, "name": runs.c.name, "run_name": runs.c.name, "user": runs.c.user,
    "start_time": runs.c.start_time, "end_time": runs.c.end_time, "run_id": runs.c.id, "id": runs.c.id,
    "experiment_id": runs.c.experiment_id,
}
_NUMERIC_OPS = {"=", "!=", ">", ">=", "<", "<="}
_TEXT_OPS = {"=", "!=", "like", "ilike"}
_CLAUSE = re.compile(
    r"""\s*(?P<kind>[A-Za-z]+)\.(?P<key>`[^`]+`|"[^"]+"|[A-Za-z0-9_\-./:]+)\s*
        (?P<op>>=|<=|!=|=|>|<|(?i:ilike)|(?i:like))\s*
        (?P<value>'(?:[^']|'')*'|"[^"]*"|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*""",
    re.VERBOSE,
)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)


@dataclass(frozen=True)
class Clause:
    kind: str  # metrics | params | tags | attributes
    key: str
    op: str
    value: str | float


def parse_filter(text: str | None) -> list[Clause]:
    """Parse a filter string into clauses; a bad clause raises InvalidInput naming it."""
    if text is None or not text.strip():
        return []
    clauses = []
    for part in _split_and(text):
        m = _CLAUSE.fullmatch(part)
        if not m:
            raise InvalidInput(
                f"cannot parse filter clause {part.strip()!r}: expected <metrics|params|tags|attributes>.<key> "
                "<op> <value>, e.g. metrics.auc > 0.9 or params.model = 'forest'"
            )
        kind = _KINDS.get(m["kind"].lower())
        if kind is None:
            raise InvalidInput(f"unknown filter kind {m['kind']!r} in {part.strip()!r}: use metrics, params, tags or attributes")
        key = m["key"].strip('`"')
        op = m["op"].lower()
        raw = m["value"]
        if raw[0] in "'\"":
            value: str | float = raw[1:-1].replace("''", "'")
        else:
            value = float(raw)
        if kind == "metrics":
            if op not in _NUMERIC_OPS or not isinstance(value, float):
                raise InvalidInput(f"metric filter {part.strip()!r} must compare with a number using {sorted(_NUMERIC_OPS)}")
        elif kind in ("params", "tags"):
            if op not in _TEXT_OPS:
                raise InvalidInput(f"{kind} filter {part.strip()!r} must use one of {sorted(_TEXT_OPS)} with a quoted string")
            value = str(value) if isinstance(value, str) else _number_text(value)
        elif key not in _ATTRIBUTES:
            raise InvalidInput(f"unknown run attribute {key!r}: use one of {sorted(_ATTRIBUTES)}")
        clauses.append(Clause(kind, key, op, value))
    return clauses


def _split_and(text: str) -> list[str]:
    """Split on ``and`` outside quotes."""
    parts, buf, quote = [], [], None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            buf.append(ch)
            if ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
            buf.append(ch)
        else:
            m = _AND.match(text, i)
            if m:
                parts.append("".join(buf))
                buf = []
                i = m.end()
                continue
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


def _number_text(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _compare(column: Any, op: str, value: Any) -> Any:
    return {
        "=": lambda: column == value, "!=": lambda: column != value, ">": lambda: column > value,
        ">=": lambda: column >= value, "<": lambda: column < value, "<=": lambda: column <= value,
        "like": lambda: column.like(value), "ilike": lambda: column.ilike(value),
    }[op]()


def _condition(clause: Clause) -> Any:
    if clause.kind == "attributes":
        return _compare(_ATTRIBUTES[clause.key], clause.op, clause.value)
    if clause.kind == "metrics":
        sub = sa.select(latest_metrics.c.run_id).where(
            latest_metrics.c.key == clause.key, latest_metrics.c.is_nan.is_(False),
            _compare(latest_metrics.c.value, clause.op, clause.value))
    else:
        table = params if clause.kind == "params" else tags
        sub = sa.select(table.c.run_id).where(table.c.key == clause.key, _compare(table.c.value, clause.op, clause.value))
    return runs.c.id.in_(sub)


def search_runs(
    ctx: Context,
    experiments_: Sequence[str] | None = None,
    filter: str | None = None,
    order_by: Sequence[str] | None = None,
    max_results: int = 1000,
) -> list[Run]:
    """Runs matching ``filter`` in the named experiments (all if None), newest first by default."""
    if not isinstance(max_results, int) or max_results < 1:
        raise InvalidInput(f"max_results must be a positive integer, got {max_results!r}")
    query = sa.select(runs)
    if experiments_:
        query = query.join(experiments, experiments.c.id == runs.c.experiment_id).where(
            sa.or_(experiments.c.name.in_(list(experiments_)), experiments.c.id.in_(list(experiments_))))
    for clause in parse_filter(filter):
        query = query.where(_condition(clause))
    for i, spec in enumerate(order_by or []):
        query = _order(query, spec, i)
    query = query.order_by(runs.c.start_time.desc(), runs.c.id).limit(max_results)
    with ctx.store.read() as conn:
        return hydrate_runs(conn, fetch_all(conn, query))


def _order(query: Any, spec: str, index: int) -> Any:
    m = re.fullmatch(r"\s*([A-Za-z]+)\.(`[^`]+`|\"[^\"]+\"|[A-Za-z0-9_\-./:]+)(?:\s+(asc|desc))?\s*", spec, re.IGNORECASE)
    if not m or _KINDS.get(m[1].lower()) is None:
        raise InvalidInput(f"cannot parse order_by {spec!r}: expected e.g. 'metrics.auc DESC' or 'attributes.start_time'")
    kind, key = _KINDS[m[1].lower()], m[2].strip('`"')
    desc = (m[3] or "asc").lower() == "desc"
    if kind == "attributes":
        if key not in _ATTRIBUTES:
            raise InvalidInput(f"unknown run attribute {key!r} in order_by: use one of {sorted(_ATTRIBUTES)}")
        column = _ATTRIBUTES[key]
    else:
        table = {"metrics": latest_metrics, "params": params, "tags": tags}[kind]
        alias = table.alias(f"order_{index}")
        query = query.outerjoin(alias, sa.and_(alias.c.run_id == runs.c.id, alias.c.key == key))
        column = alias.c.value
    return query.order_by(sa.nulls_last(column.desc() if desc else column.asc()))
