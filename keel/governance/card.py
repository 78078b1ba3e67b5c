"""Model cards as pure functions: a card dict in, Markdown, HTML or a diff out.

The card dict (schema ``keel.card/1``) is assembled by
:func:`keel.service.cards.build_card`; its JSON form is the dict itself. Both
renderers walk one outline (sections of headings, texts, lists and tables),
so Markdown and HTML always show the same content. Everything a person wrote
is escaped: HTML-escaped in HTML, and ``<``/``>`` (plus ``|`` in tables) in
Markdown, so a card can be published through a Markdown renderer safely.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any, Iterable

SCHEMA = "keel.card/1"
_SLICE = re.compile(r"^(?P<metric>.+?)/(?P<column>[^/:]+):(?P<value>.+)$")
_DIFF_IGNORED = frozenset({"generated_at"})

# The outline: (heading, blocks). A block is one of
#   ("h", title)                 a sub-heading
#   ("text", value, missing)     user text: str -> paragraph, list -> bullets, None -> the note `missing`
#   ("table", headers, rows)     rows of plain values
#   ("note", text)               an italic remark
Block = tuple[Any, ...]

_USER_LABELS = {
    "overview": "Overview", "documentation": "Documentation", "references": "References",
    "citations": "Citations", "intended_use": "Intended use", "users": "Intended users",
    "out_of_scope": "Out-of-scope uses", "limitations": "Limitations", "tradeoffs": "Tradeoffs",
    "ethical_considerations": "Ethical considerations",
}


def split_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Split metric keys into overall values and values by slice.

    A key ``METRIC/COLUMN:VALUE`` (e.g. ``accuracy/sex:female``) is METRIC on the
    rows where COLUMN equals VALUE; any other key is an overall metric.

    Returns:
        ``{"overall": {metric: value}, "by_slice": {column: {value: {metric: value}}}}``
    """
    overall: dict[str, Any] = {}
    by_slice: dict[str, dict[str, dict[str, Any]]] = {}
    for key in sorted(metrics):
        match = _SLICE.match(key)
        if match:
            by_slice.setdefault(match["column"], {}).setdefault(match["value"], {})[match["metric"]] = metrics[key]
        else:
            overall[key] = metrics[key]
    return {"overall": overall, "by_slice": by_slice}


# -- the outline both renderers share -------------------------------------------------------
def _outline(card: dict[str, Any]) -> list[tuple[str, list[Block]]]:
    details, params = card["model_details"], card["model_parameters"]
    hint = "Not written yet."
    sections: list[tuple[str, list[Block]]] = []
    sections.append(("Model details", [
        ("table", ["", ""], [
            ["Name", details["name"]], ["Version", details["version"]], ["URI", details["uri"]],
            ["Aliases", ", ".join(card["aliases"]) or "none"], ["Owners", details["owners"]],
            ["Licenses", details["licenses"]], ["Contact", details["contact"]],
            ["Description", details["description"]], ["Version description", details["version_description"]],
            ["Registered", f"{details['registered_at']} by {details['registered_by']}"],
            ["Source", details["source"]], ["Manifest sha256", details["manifest_sha256"]],
            *[[f"Tag {k}", v] for k, v in details["tags"].items()]]),
        *_user(details, ("overview", "documentation", "references", "citations"), hint)]))
    sections.append(("Considerations", _user(card["considerations"], (
        "intended_use", "users", "out_of_scope", "limitations", "tradeoffs", "ethical_considerations"), hint)))
    blocks: list[Block] = [("table", ["", ""], [
        ["Format", f"{params['format']} (format version {params['format_version']})"],
        ["Architecture", params["architecture"]],
        ["Libraries", ", ".join(f"{k}=={v}" for k, v in params["libraries"].items())]])]
    for title, spec in (("Input format", params["input_format"]), ("Output format", params["output_format"])):
        blocks.append(("h", title))
        blocks.append(("table", ["name", "dtype", "shape"],
                       [[s.get("name"), s.get("dtype"), s.get("shape")] for s in spec])
                      if spec else ("note", "No signature recorded (log the model with an input example)."))
    blocks.append(("h", "Parameters"))
    blocks.append(("table", ["parameter", "value"], [[k, v] for k, v in params["params"].items()])
                  if params["params"] else ("note", "No parameters logged."))
    sections.append(("Model parameters", blocks))
    sections.append(("Data", _data(params["data"])))
    sections.append(("Quantitative analysis", _metrics(card["quantitative_analysis"]["metrics"])))
    sections.append(("Fairness", _fairness(card["fairness"])))
    sections.append(("Explanation", _explanation(card.get("explanation"))))
    env = card["environment"]
    sections.append(("Environment", [
        ("table", ["", ""], [
            ["Python", f"{env['python']} ({env['implementation']})"], ["Platform", env["platform"]],
            ["Source commit", env["source_commit"] or "unknown"],
            ["Uncommitted changes", {True: "yes", False: "no", None: "unknown"}[env["source_dirty"]]],
            ["Entry point", env["entry_point"]]]),
        ("h", "Pinned packages"),
        ("table", ["package", "version"], [[k, v] for k, v in env["packages"].items()])
        if env["packages"] else ("note", "No requirements.lock in the bundle.")]))
    sections.append(("Approvals", _approvals(card["approvals"])))
    if "gate" in card:  # cards written before the gate existed have no such key
        sections.append(("Champion/challenger gate", _gate(card["gate"])))
    sections.append(("Monitoring", _monitoring(card["monitoring"])))
    record = card["record"]
    sections.append(("Card record", [("table", ["level", "fields", "last written"], [
        [level, ", ".join(w["fields"]) or "none", f"{w['updated_at']} by {w['updated_by']}"]
        for level, w in (("model", record["model_fields"]), ("version", record["version_fields"])) if w]
        or [["-", "none written", "-"]]),
        ("note", f"Fields are written with: keel card {details['uri']} --set FIELD=TEXT [--model-level]."),
        ("note", f"Generated {card['generated_at']} by keel ({card['schema']}).")]))
    return sections


def _user(fields: dict[str, Any], names: Iterable[str], hint: str) -> list[Block]:
    blocks: list[Block] = []
    for name in names:
        blocks += [("h", _USER_LABELS[name]), ("text", fields.get(name), hint)]
    return blocks


def _data(datasets: list[dict[str, Any]]) -> list[Block]:
    if not datasets:
        return [("note", "No dataset was logged with the training run.")]
    blocks: list[Block] = []
    for d in datasets:
        blocks.append(("h", f"{d['name']} ({d['context'] or 'input'})"))
        blocks.append(("table", ["", ""], [["Digest", d["digest"]], ["Rows", d["rows"]], ["Source", d["source"]],
                                           ["Data sha256", d["data_sha256"]]]))
        types = {c["name"]: c["type"] for c in d["schema"]}
        rows = []
        for column, p in d["profile"].items():
            spread = (f"{_fmt(p['min'])} .. {_fmt(p['max'])}" if "min" in p else
                      ", ".join(f"{k} ({v})" for k, v in p.get("top_values", {}).items()))
            rows.append([column, types.get(column), p.get("kind"), p.get("missing"), spread, p.get("mean")])
        blocks.append(("table", ["column", "type", "kind", "missing", "range / top values", "mean"], rows))
    return blocks


def _metrics(metrics: dict[str, Any]) -> list[Block]:
    overall = [[k, v] for k, v in metrics["overall"].items()]
    sliced = [[column, value, metric, result]
              for column, values in metrics["by_slice"].items()
              for value, results in values.items() for metric, result in results.items()]
    return [("h", "Overall"),
            ("table", ["metric", "value"], overall) if overall else ("note", "No metrics logged."),
            ("h", "By slice"),
            ("table", ["column", "value", "metric", "result"], sliced) if sliced else
            ("note", "No sliced metrics (log them as METRIC/COLUMN:VALUE, e.g. accuracy/sex:female).")]


def _explanation(ex: dict[str, Any] | None) -> list[Block]:
    if not ex:
        return [("note", "No explanation attached (see `keel explain`).")]
    data = ex.get("data") or {}
    score = ex.get("score") or {}
    return [("table", ["", ""], [
        ["Created", f"{ex['created_at']} by {ex['created_by']}"], ["Methods", ", ".join(ex["methods"])],
        ["Target", ex.get("target")], ["Data", f"{data.get('rows')} rows from {data.get('source')}"],
        ["Data sha256", data.get("sha256")],
        ["Score", f"{score.get('name')} (baseline {_fmt(score.get('baseline'))})" if score else None]]),
        ("h", "Top features"),
        ("table", ["feature", "importance", "std", "method"],
         [[f["feature"], f["importance"], f["std"], f["method"]] for f in ex["top_features"]])]


def _approvals(requests: list[dict[str, Any]]) -> list[Block]:
    if not requests:
        return [("note", "No promotion request for this version.")]
    blocks: list[Block] = []
    for r in requests:
        blocks.append(("h", f"{r['alias']}: {r['status']}"))
        decided = f"{r['decided_at']} by {r['decided_by']}" if r["decided_by"] else "not decided"
        blocks.append(("table", ["", ""], [
            ["Request", r["id"]], ["Requested", f"{r['requested_at']} by {r['requester']}"],
            ["Comment", r["comment"]], ["Decided", decided], ["Reason", r["reason"]],
            ["Previous version", r["previous_version"]],
            ["Checks passed when filed", "yes" if r["checks_passed"] else "no"]]))
        for title, checks in (("Checks when filed", r["checks"]), ("Checks at decision", r["decision_checks"])):
            if checks:
                blocks.append(("table", [title, "passed", "detail", "evidence"],
                               [[c.get("name"), "yes" if c.get("passed") else "no", c.get("detail"),
                                 c.get("evidence")] for c in checks]))
    return blocks


def _placeholder(section: dict[str, Any]) -> list[Block]:
    note = f" ({section['note']})" if section.get("note") else ""
    return [("note", f"Status: {section.get('status')}{note}.")]


def _fairness(fair: dict[str, Any]) -> list[Block]:
    if fair.get("status") != "available":
        return _placeholder(fair)
    where = (f"monitor {fair['monitor']} (window ending {fair['window_end_ms']} ms)" if fair.get("monitor")
             else f"an evaluation on {(fair.get('evaluation') or {}).get('rows')} rows of "
                  f"{(fair.get('evaluation') or {}).get('source')}")
    return [("note", f"Across {fair['sensitive']}, from {where}: {fair['verdict']}."),
            ("table", ["measure", "value"], [
                ["Demographic parity difference", fair["demographic_parity_difference"]],
                ["Demographic parity ratio", fair["demographic_parity_ratio"]],
                ["Equalized odds difference", fair["equalized_odds_difference"]]]),
            ("table", ["limit", "value", "bound", "verdict"],
             [[c.get("name"), c.get("value"), c.get("limit"), c.get("status")] for c in fair["checks"]]),
            ("table", ["group", "rows", "selection rate", "accuracy", "TPR", "FPR"],
             [[g["group"], g["count"], g["selection_rate"], g["accuracy"], g["true_positive_rate"],
               g["false_positive_rate"]] for g in fair["groups"]])]


def _gate(gate: dict[str, Any]) -> list[Block]:
    if gate.get("status") != "available":
        return _placeholder(gate)
    blocks: list[Block] = []
    for d in gate["decisions"]:
        blocks.append(("h", f"{'blessed' if d['blessed'] else 'not blessed'} against champion "
                            f"version {d['champion_version'] or '-'}"))
        blocks.append(("table", ["check", "passed", "detail"],
                       [[c.get("name"), c.get("passed"), c.get("detail")] for c in d["checks"]]))
        if d["reasons"]:
            blocks.append(("note", "Why not: " + "; ".join(d["reasons"])))
    return blocks


def _monitoring(mon: dict[str, Any]) -> list[Block]:
    if mon.get("status") != "available":
        return _placeholder(mon)
    return [("table", ["monitor", "windows", "alerting", "latest status", "latest rows", "latest alerts"],
             [[m["monitor"], m["windows"], m["alerting_windows"], m["latest"]["status"], m["latest"]["rows"],
               "; ".join(m["latest"]["alerts"]) or "none"] for m in mon["monitors"]])]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return ", ".join(value) or "-"
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


# -- Markdown ------------------------------------------------------------------------------
def render_markdown(card: dict[str, Any]) -> str:
    """The card as a Markdown document."""
    d = card["model_details"]
    lines = [f"# Model card: {_md(d['name'])} version {d['version']}", ""]
    for title, blocks in _outline(card):
        lines += [f"## {title}", ""]
        for block in blocks:
            lines += _md_block(block) + [""]
    return "\n".join(lines).rstrip() + "\n"


def _md(text: Any) -> str:
    return _fmt(text).replace("<", "&lt;").replace(">", "&gt;")


def _md_cell(value: Any) -> str:
    return " ".join(_md(value).replace("|", "\\|").split()) or "-"


def _md_block(block: Block) -> list[str]:
    kind = block[0]
    if kind == "h":
        return [f"### {_md(block[1])}"]
    if kind == "note":
        return [f"_{_md(block[1])}_"]
    if kind == "text":
        value = block[1]
        if value is None:
            return [f"_{_md(block[2])}_"]
        if isinstance(value, list):
            return ["- " + _md(item).replace("\n", "\n  ") for item in value]
        return [_md(value)]
    headers, rows = block[1], block[2]
    head = [f"| {' | '.join(_md_cell(h) if h else ' ' for h in headers)} |", "|" + "---|" * len(headers)]
    return head + [f"| {' | '.join(_md_cell(c) for c in row)} |" for row in rows]


# -- HTML ---------------------------------------------------------------------------------------
_CSS = ("body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
        "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem;"
        "text-align:left;vertical-align:top}p{white-space:pre-wrap}.note{color:#666;font-style:italic}"
        "h2{border-bottom:1px solid #ddd;margin-top:2rem}code,pre{font-family:ui-monospace,monospace}")


def render_html(card: dict[str, Any]) -> str:
    """The card as one self-contained HTML page: inline style, no script, no link to fetch."""
    d = card["model_details"]
    body = []
    for title, blocks in _outline(card):
        body.append(f"<section><h2>{_h(title)}</h2>")
        body += [_html_block(block) for block in blocks]
        body.append("</section>")
    return _page(f"Model card: {d['name']} version {d['version']}", "\n".join(body))


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{_h(title)}</title><style>{_CSS}</style></head>\n<body><h1>{_h(title)}</h1>\n{body}\n"
            "</body></html>\n")


def _h(value: Any) -> str:
    return html.escape(_fmt(value), quote=True)


def _html_block(block: Block) -> str:
    kind = block[0]
    if kind == "h":
        return f"<h3>{_h(block[1])}</h3>"
    if kind == "note":
        return f'<p class="note">{_h(block[1])}</p>'
    if kind == "text":
        value = block[1]
        if value is None:
            return f'<p class="note">{_h(block[2])}</p>'
        if isinstance(value, list):
            return "<ul>" + "".join(f"<li>{_h(item)}</li>" for item in value) + "</ul>"
        return f"<p>{_h(value)}</p>"
    headers, rows = block[1], block[2]
    head = "" if not any(headers) else "<tr>" + "".join(f"<th>{_h(h)}</th>" for h in headers) + "</tr>"
    cells = "".join("<tr>" + "".join(f"<td>{_h(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{cells}</table>"


# -- diff ----------------------------------------------------------------------------------------
def diff_cards(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """What changed from card ``a`` to card ``b``, leaf by leaf.

    Returns:
        One ``{"path", "change", "before", "after"}`` per difference, ``change``
        being ``added``, ``removed`` or ``changed``; ``path`` is dotted
        (``model_parameters.params.C``), with ``[KEY]`` for an item of a list
        of named records (``model_parameters.data[train].digest``). The
        generation time is ignored.
    """
    changes: list[dict[str, Any]] = []
    _walk("", {k: v for k, v in a.items() if k not in _DIFF_IGNORED},
          {k: v for k, v in b.items() if k not in _DIFF_IGNORED}, changes)
    return changes


_ABSENT = object()


def _walk(path: str, x: Any, y: Any, out: list[dict[str, Any]]) -> None:
    keyed_x, keyed_y = _keyed(x), _keyed(y)
    if keyed_x is not None and keyed_y is not None:
        x, y = keyed_x, keyed_y
    if isinstance(x, dict) and isinstance(y, dict):
        for key in [*x, *(k for k in y if k not in x)]:
            label = key if keyed_x is None else f"[{key}]"
            sub = f"{path}{label}" if not path or label.startswith("[") else f"{path}.{label}"
            _walk(sub, x.get(key, _ABSENT), y.get(key, _ABSENT), out)
        return
    x, y = (None if x is _ABSENT else x), (None if y is _ABSENT else y)
    if x == y:
        return
    if x is None:
        out.append({"path": path, "change": "added", "before": None, "after": y})
    elif y is None:
        out.append({"path": path, "change": "removed", "before": x, "after": None})
    else:
        out.append({"path": path, "change": "changed", "before": x, "after": y})


def _keyed(value: Any) -> dict[str, Any] | None:
    """A list of records named by a unique "id" or "name", as a dict by that name; else None."""
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        return None
    for key in ("id", "name"):
        names = [v.get(key) for v in value]
        if all(isinstance(n, str) for n in names) and len(set(names)) == len(names):
            return {n: v for n, v in zip(names, value)}
    return None


def render_diff(changes: list[dict[str, Any]], before: str, after: str) -> str:
    """Changes as text lines: ``~ path: old -> new``, ``+ path: new``, ``- path: old``."""
    lines = [f"Card changes from {before} to {after}: {len(changes) or 'none'}"]
    for c in changes:
        if c["change"] == "added":
            lines.append(f"+ {c['path']}: {_short(c['after'])}")
        elif c["change"] == "removed":
            lines.append(f"- {c['path']}: {_short(c['before'])}")
        else:
            lines.append(f"~ {c['path']}: {_short(c['before'])} -> {_short(c['after'])}")
    return "\n".join(lines) + "\n"


def render_diff_html(changes: list[dict[str, Any]], before: str, after: str) -> str:
    """The diff as a self-contained HTML page."""
    text = html.escape(render_diff(changes, before, after))
    return _page(f"Model card changes: {before} to {after}", f"<pre>{text}</pre>")


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit - 3] + "..."
