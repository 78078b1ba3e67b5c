"""`keel monitor create/run/list/show/pause/resume`: monitors over served traffic.

`keel monitor run` is one pass (for cron); with `--every` it is the
long-running scheduler loop, which stops cleanly on SIGTERM or Ctrl-C
between passes. Exit code of a single pass: 0, or 3 with `--fail-on-alert`
when a window alerted.
"""

from __future__ import annotations

import signal
import threading
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

from keel.cli.common import client_from, err, fmt_time, out, print_json
from keel.errors import InvalidInput

EXIT_ALERT = 3


def create(
    ctx: typer.Context,
    model_uri: str = typer.Argument(..., help="models:/NAME@ALIAS (any version served under NAME), "
                                              "models:/NAME/N, or a bundle path with --served-name."),
    window: str = typer.Option(..., "--window", help="Window length: 15m, 1h, 1d ..."),
    reference: str = typer.Option(..., "--reference", help="A CSV/Parquet file, or datasets:/NAME[/DIGEST] "
                                                           "for a dataset logged at training."),
    name: Optional[str] = typer.Option(None, "--name", help="Monitor name (default: the served model name)."),
    served_name: Optional[str] = typer.Option(None, "--served-name", help="Name the model is served under."),
    target: Optional[str] = typer.Option(None, "--target", help="Ground-truth column of the reference file."),
    sensitive: Optional[str] = typer.Option(None, "--sensitive", help="Column to measure fairness across."),
    webhook: Optional[str] = typer.Option(None, "--webhook", help="POST alerts (JSON) to this http(s) URL."),
    since: Optional[str] = typer.Option(None, "--since", help="Start of the first window: ISO time or epoch ms "
                                                              "(default: now)."),
    preset: str = typer.Option("default", "--preset", help="Drift preset: default or evidently."),
    min_effect: Optional[float] = typer.Option(None, "--min-effect", help="Minimum effect size for drift."),
    drift_share: float = typer.Option(0.5, "--drift-share", help="Share of drifted columns that is dataset drift."),
    max_drop: float = typer.Option(0.05, "--max-drop", help="Alert when a score (accuracy, F1, AUC) falls this "
                                                            "much below the reference's (absolute)."),
    max_error_increase: float = typer.Option(0.10, "--max-error-increase",
                                             help="Alert when an error (log loss, RMSE) grows by this share."),
    performance_reference: Optional[str] = typer.Option(
        None, "--performance-reference", help="A labelled holdout file (with --target) to measure the reference "
                                              "performance on, instead of --reference (often the training data)."),
    as_json: bool = typer.Option(False, "--json", help="Print the monitor as JSON."),
) -> None:
    """Watch a served model's logged traffic window by window against a reference."""
    from keel.service.monitors import create_monitor

    client = client_from(ctx)
    monitor = create_monitor(client.ctx, model_uri, window=window, reference=reference, name=name,
                             served_name=served_name, target=target, sensitive=sensitive, webhook=webhook,
                             since_ms=_time_ms(since), preset=preset, min_effect=min_effect,
                             drift_share=drift_share, max_drop=max_drop, max_error_increase=max_error_increase,
                             performance_reference=performance_reference)
    if as_json:
        print_json(monitor.to_dict())
        return
    out.print(f"monitor {monitor.name}: {monitor.model} every {monitor.window_ms / 1000:g}s from "
              f"{fmt_time(monitor.next_ms)} UTC, reference {monitor.reference['uri']} "
              f"({monitor.reference['rows']} rows)", markup=False)


def run(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, metavar="[NAME]...", help="Monitors to run (default: every active one)."),
    every: Optional[float] = typer.Option(None, "--every", help="Keep running: a pass every this many seconds."),
    prom_file: Optional[Path] = typer.Option(None, "--prom-file", help="Write Prometheus gauges to this file "
                                                                       "(node_exporter textfile format)."),
    fail_on_alert: bool = typer.Option(False, "--fail-on-alert", help="Exit 3 when a window alerted (one pass)."),
    as_json: bool = typer.Option(False, "--json", help="Print the window results as JSON."),
) -> None:
    """Evaluate every complete window that is due: one pass, or a loop with --every."""
    from keel.service.monitors import run_monitors

    if every is not None and every <= 0:
        raise InvalidInput(f"--every must be a positive number of seconds, got {every}")
    client = client_from(ctx)
    stop = threading.Event()
    if every is not None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    alerted = False
    while True:
        results = run_monitors(client.ctx, names or None)
        alerted = alerted or any(r.status == "alert" for r in results)
        if prom_file is not None:
            from keel.monitoring.gauges import write_gauges
            from keel.service.monitors import list_monitors, list_results

            write_gauges(prom_file, {m.name: list_results(client.ctx, m.name, limit=1)
                                     for m in list_monitors(client.ctx)})
        if as_json:
            print_json([r.to_dict() for r in results])
        else:
            for r in results:
                _print_result(r)
        if every is None or stop.wait(every):
            break
    if fail_on_alert and alerted:
        raise typer.Exit(EXIT_ALERT)


def list_(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Monitors, with the state of their latest window."""
    from rich.table import Table

    from keel.service.monitors import list_monitors, list_results

    client = client_from(ctx)
    rows = [(m, next(iter(list_results(client.ctx, m.name, limit=1)), None)) for m in list_monitors(client.ctx)]
    if as_json:
        print_json([{**m.to_dict(), "latest": r.to_dict() if r else None} for m, r in rows])
        return
    table = Table(show_edge=False, pad_edge=False)
    for title in ("name", "model", "window", "status", "next window", "latest", "alerts"):
        table.add_column(title)
    for m, r in rows:
        table.add_row(m.name, m.model + (f"/{m.version}" if m.version else ""), f"{m.window_ms / 1000:g}s", m.status,
                      fmt_time(m.next_ms), r.status if r else "-", "; ".join(r.alerts) if r else "")
    out.print(table)


def show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Monitor name."),
    limit: int = typer.Option(10, "--limit", help="Windows to show."),
    result: Optional[str] = typer.Option(None, "--result", help="Print this window result's full JSON."),
    out_html: Optional[Path] = typer.Option(None, "--out", help="Write the newest (or --result) window's HTML "
                                                                "report here."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """A monitor, its newest window results, or one result in full."""
    from keel.service.monitors import get_monitor, get_result, list_results

    client = client_from(ctx)
    monitor = get_monitor(client.ctx, name)
    results = list_results(client.ctx, name, limit=limit)
    chosen = result or next((r.id for r in results if r.result_sha256), None)
    if out_html is not None:
        if chosen is None:
            raise InvalidInput(f"monitor {name} has no evaluated window with data yet")
        from keel.monitoring.window_report import render_result_html

        out_html.write_text(render_result_html(get_result(client.ctx, chosen), title=f"keel monitor {name}"),
                            encoding="utf-8")
    if result is not None:
        print_json(get_result(client.ctx, result))
        return
    if as_json:
        print_json({**monitor.to_dict(), "results": [r.to_dict() for r in results]})
        return
    out.print(f"monitor {monitor.name} ({monitor.status}): {monitor.model_uri}, served as {monitor.model}, "
              f"window {monitor.window_ms / 1000:g}s, next from {fmt_time(monitor.next_ms)} UTC", markup=False)
    out.print(f"reference: {monitor.reference['uri']} ({monitor.reference['rows']} rows)"
              + (f"; webhook {monitor.webhook}" if monitor.webhook else ""), markup=False)
    for r in results:
        _print_result(r)
    if out_html is not None:
        out.print(f"report: {out_html}", markup=False)


def pause(ctx: typer.Context, name: str = typer.Argument(..., help="Monitor name.")) -> None:
    """Stop evaluating a monitor's windows until it is resumed."""
    from keel.service.monitors import set_status

    set_status(client_from(ctx).ctx, name, "paused")
    out.print(f"monitor {name} paused", markup=False)


def resume(ctx: typer.Context, name: str = typer.Argument(..., help="Monitor name.")) -> None:
    """Evaluate a paused monitor's windows again (from where it stopped)."""
    from keel.service.monitors import set_status

    set_status(client_from(ctx).ctx, name, "active")
    out.print(f"monitor {name} resumed", markup=False)


def _print_result(r) -> None:
    line = (f"{r.monitor} {fmt_time(r.start_ms)} .. {fmt_time(r.end_ms)}: {r.rows} rows, {r.status.upper()}"
            f" [{r.id}]")
    (err if r.status == "alert" else out).print(line, markup=False)
    for alert in r.alerts:
        err.print(f"  {alert}", markup=False)
    if r.webhook_status:
        out.print(f"  webhook: {r.webhook_status}", markup=False)


def _time_ms(text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        raise InvalidInput(f"--since must be an ISO time (2026-11-27T10:00:00+00:00) or epoch ms, "
                           f"got {text!r}") from None
