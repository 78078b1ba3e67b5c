"""`keel monitor ...`: check data for drift and quality problems.

Exit codes of `keel monitor drift`, for CI: 0 no dataset drift, 1 an error,
3 the check failed (dataset drift, or a reference column missing from the
current data or changed type), unless --no-fail-on-drift.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from keel.cli.common import err, out, print_json
from keel.errors import InvalidInput

if TYPE_CHECKING:
    from keel.monitoring.result import DriftResult

EXIT_DRIFT = 3
# Text output skips quality shares under this (new extremes appear in any fresh sample); JSON has them all.
_SHOWN_SHARE = 0.001

app = typer.Typer(help="Monitor data and models: drift and data quality.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.callback()
def monitor() -> None:
    """Monitor data and models: drift and data quality."""


@app.command("drift")
def drift(
    reference: Path = typer.Argument(..., help="Reference data: a .csv, .csv.gz, .parquet or .pq file."),
    current: Path = typer.Argument(..., help="Current data to check, in the same formats."),
    preset: str = typer.Option("default", "--preset",
                               help="default (KS / chi-square, Benjamini-Hochberg across columns) or evidently "
                                    "(Evidently's own test and threshold per column)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (schema keel.drift/1)."),
    out_html: Optional[Path] = typer.Option(None, "--out", help="Write a self-contained HTML report to this file."),
    fail_on_drift: bool = typer.Option(True, "--fail-on-drift/--no-fail-on-drift",
                                       help="Exit with 3 on dataset drift or a schema break."),
    fdr: float = typer.Option(0.05, "--fdr", help="False-discovery rate across columns (default preset)."),
    min_effect: Optional[float] = typer.Option(
        None, "--min-effect", help="A column drifts only if its effect size also reaches this "
                                   "(e.g. 0.05: a KS distance or a share of rows of 5 %)."),
    drift_share: float = typer.Option(0.5, "--drift-share", help="Dataset drift when at least this share of "
                                                                 "tested columns drift."),
    tests: list[str] = typer.Option([], "--test", metavar="COLUMN=TEST",
                                    help="Test for one column (ks, chisquare, z, wasserstein, jensenshannon, psi, "
                                         "kl_div, hellinger, chisquare_gof); repeatable."),
    thresholds: list[str] = typer.Option([], "--threshold", metavar="COLUMN=VALUE",
                                         help="Threshold for one column's test; repeatable."),
    ignore: list[str] = typer.Option([], "--ignore", metavar="COLUMN", help="Leave a column out; repeatable."),
    prediction: Optional[str] = typer.Option(None, "--prediction", help="Column of the model's answers (in "
                                                                        "both files): prediction drift."),
    target: Optional[str] = typer.Option(None, "--target", help="Ground-truth column of CURRENT (and of "
                                                                "REFERENCE, if there): performance."),
    score: Optional[str] = typer.Option(None, "--score", help="Column of the positive class's score (ROC AUC)."),
    sensitive: Optional[str] = typer.Option(None, "--sensitive", help="Column to measure fairness across."),
    max_drop: float = typer.Option(0.05, "--max-drop", help="With --target: fail when a score metric is this "
                                                            "much below the reference's."),
) -> None:
    """Compare CURRENT with REFERENCE column by column: drift tests, effect sizes, data quality.

    With --prediction, --target and --sensitive it also checks prediction
    drift, performance and fairness, and fails (exit 3) on any alert.
    """
    if any(v is not None for v in (prediction, target, score, sensitive)):
        _harm(reference, current, preset, as_json, out_html, fail_on_drift,
              {"preset": preset, "fdr": fdr, "min_effect": min_effect, "drift_share": drift_share,
               "tests": _pairs(tests, "--test", str), "thresholds": _pairs(thresholds, "--threshold", float),
               "ignore": ignore, "sensitive": sensitive, "max_drop": max_drop},
              prediction=prediction, target=target, score=score)
        return
    # scipy.special takes half a second to import; let it load while Arrow
    # reads and sorts the files (which release the GIL for most of that time).
    threading.Thread(target=_import_scipy_special, daemon=True).start()
    from keel.monitoring.drift import detect_drift

    result = detect_drift(reference, current, preset=preset, fdr=fdr, min_effect=min_effect,
                          drift_share=drift_share, tests=_pairs(tests, "--test", str),
                          thresholds=_pairs(thresholds, "--threshold", float), ignore=ignore)
    if out_html is not None:
        from keel.monitoring.report import render_html

        out_html.write_text(render_html(result), encoding="utf-8")
    if as_json:
        print_json(result.to_dict())
    else:
        _print(result)
        if out_html is not None:
            out.print(f"report: {out_html}", markup=False)
    failed = result.dataset_drift.detected or not result.schema_ok
    if failed and fail_on_drift:
        raise typer.Exit(EXIT_DRIFT)


def _harm(reference: Path, current: Path, preset: str, as_json: bool, out_html: Optional[Path],
          fail_on_drift: bool, options: dict, **columns: Optional[str]) -> None:
    """`keel monitor drift` with the model's answers, labels or a sensitive column: every check of a monitor."""
    from keel.monitoring.checks import check_tables
    from keel.monitoring.window_report import render_result_html, result_from_dict

    check = check_tables(reference, current, options, **columns)
    doc = {**check.result, "alerts": check.alerts}
    if out_html is not None:
        out_html.write_text(render_result_html(doc, title="keel drift report"), encoding="utf-8")
    if as_json:
        print_json(doc)
    else:
        _print(result_from_dict(doc, with_prediction=True))
        for name in ("performance", "fairness"):
            if doc.get(name):
                line = doc[name].get("metrics") if name == "performance" else doc[name].get("status")
                out.print(f"{name}: {line}", markup=False)
        for alert in check.alerts:
            err.print(f"alert: {alert}", markup=False)
        if out_html is not None:
            out.print(f"report: {out_html}", markup=False)
    if check.alerts and fail_on_drift:
        raise typer.Exit(EXIT_DRIFT)


def _import_scipy_special() -> None:
    try:
        import scipy.special  # noqa: F401
    except Exception:  # the real import, where a test needs it, reports any problem
        pass


def _pairs(items: list[str], option: str, convert: type) -> dict:
    pairs = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep or not name:
            raise InvalidInput(f"{option} expects COLUMN=VALUE, got {item!r}")
        try:
            pairs[name] = convert(value)
        except ValueError:
            raise InvalidInput(f"{option} {item!r}: {value!r} is not a number") from None
    return pairs


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3g}"


def _print(result: DriftResult) -> None:
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for title in ("column", "kind", "test", "statistic", "p-value", "p adj.", "effect", "threshold", "verdict"):
        table.add_column(title, justify="right" if title in ("statistic", "p-value", "p adj.", "effect") else "left")
    for col in result.columns:
        d = col.drift
        verdict = {"drift": "[red]DRIFT[/]", "no_drift": "ok"}.get(d.status, f"[dim]not tested: {d.reason}[/]")
        threshold = "-" if d.threshold is None else f"{d.threshold:g} ({d.threshold_on})"
        table.add_row(col.name.replace("[", r"\["), col.kind, d.test or "-", _fmt(d.statistic), _fmt(d.p_value),
                      _fmt(d.p_adjusted), _fmt(d.effect_size), threshold, verdict)
    out.print(table)
    for line in _quality_lines(result):
        out.print(line, markup=False)
    ds = result.dataset_drift
    share = "-" if ds.share is None else f"{ds.share:.0%}"
    verdict = "DATASET DRIFT" if ds.detected else "no dataset drift"
    out.print(f"{ds.drifted_columns} of {ds.tested_columns} tested columns drift ({share}; dataset drift at "
              f"{ds.threshold:.0%}): {verdict}", markup=False)
    if not result.schema_ok:
        err.print("schema break: the current data lacks or changed reference columns (see above)", markup=False)


def _quality_lines(result: DriftResult) -> list[str]:
    changes = result.schema_changes
    lines = []
    if changes["missing_columns"]:
        lines.append(f"missing columns: {', '.join(changes['missing_columns'])}")
    if changes["extra_columns"]:
        lines.append(f"extra columns (not checked): {', '.join(changes['extra_columns'])}")
    for change in changes["type_changes"]:
        lines.append(f"type change: {change['column']}: {change['reference']} -> {change['current']}")
    for col in result.columns:
        q = col.quality
        if q is None:
            continue
        if (q.missing_share_current or 0) >= (q.missing_share_reference or 0) + _SHOWN_SHARE:
            lines.append(f"{col.name}: missing {q.missing_share_reference:.2%} -> {q.missing_share_current:.2%}")
        if (q.out_of_range_share or 0) >= _SHOWN_SHARE:
            lines.append(f"{col.name}: {q.out_of_range_share:.2%} of values outside the reference range")
        if q.unseen_categories:
            lines.append(f"{col.name}: {q.unseen_categories} unseen categories ({q.unseen_share:.2%} of rows), "
                         f"e.g. {', '.join(q.unseen_examples)}")
    return lines


# Monitors over served traffic live in their own module.
from keel.cli import monitors as _monitors  # noqa: E402

app.command("create")(_monitors.create)
app.command("run")(_monitors.run)
app.command("list")(_monitors.list_)
app.command("show")(_monitors.show)
app.command("pause")(_monitors.pause)
app.command("resume")(_monitors.resume)
