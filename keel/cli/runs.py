"""`keel experiments ...` and `keel runs ...`."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Column, Table

from keel.cli.common import client_from, fmt_duration, fmt_time, fmt_value, out, print_json

experiments_app = typer.Typer(help="Experiments: named groups of runs.", no_args_is_help=True)
runs_app = typer.Typer(help="Runs: params, metrics, artifacts and datasets of one training.", no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


@experiments_app.command("list")
def experiments_list(ctx: typer.Context, as_json: bool = JSON) -> None:
    """List experiments."""
    client = client_from(ctx)
    exps = client.list_experiments()
    if as_json:
        return print_json(exps)
    table = Table("id", "name", "created (UTC)")
    for e in exps:
        table.add_row(e.id, e.name, fmt_time(e.created_at))
    out.print(table)


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    experiment: Optional[List[str]] = typer.Option(None, "--experiment", "-e", help="Experiment name or id (repeatable)."),
    filter: Optional[str] = typer.Option(None, "--filter", "-f", help="e.g. \"metrics.auc > 0.9 and params.C = '1.0'\""),
    order_by: Optional[List[str]] = typer.Option(None, "--order-by", help="e.g. 'metrics.auc DESC' (repeatable)."),
    max_results: int = typer.Option(100, "--max", help="At most this many runs."),
    as_json: bool = JSON,
) -> None:
    """List runs, newest first, optionally filtered and ordered."""
    client = client_from(ctx)
    found = client.search_runs(experiment or None, filter, order_by, max_results)
    if as_json:
        return print_json(found)
    names = {e.id: e.name for e in client.list_experiments()}
    table = Table("experiment", "name", "status", "started (UTC)", "duration", "metrics")
    table.columns.insert(0, Column("run id", no_wrap=True, min_width=32))  # ids are copied: never cut
    for r in found:
        shown = ", ".join(f"{k}={fmt_value(v)}" for k, v in list(r.metrics.items())[:3])
        more = f" (+{len(r.metrics) - 3})" if len(r.metrics) > 3 else ""
        table.add_row(r.id, names.get(r.experiment_id, r.experiment_id), r.name, r.status,
                      fmt_time(r.start_time), fmt_duration(r.start_time, r.end_time), shown + more)
    out.print(table)


@runs_app.command("show")
def runs_show(ctx: typer.Context, run_id: str = typer.Argument(..., help="Run id."), as_json: bool = JSON) -> None:
    """Show one run: source, params, metrics, tags, datasets, artifacts."""
    client = client_from(ctx)
    run = client.get_run(run_id)
    datasets = client.run_datasets(run_id)
    artifacts = client.list_artifacts(run_id)
    steps = {k: len(client.metric_history(run_id, k)) for k in run.metrics}
    if as_json:
        data = run.to_dict()
        data["experiment"] = client.get_experiment(run.experiment_id).name
        data["metric_values_logged"] = steps
        data["datasets"] = [{k: v for k, v in d.to_dict().items() if k != "profile"} for d in datasets]
        data["artifacts"] = artifacts
        return print_json(data)
    exp = client.get_experiment(run.experiment_id).name
    out.print(f"[bold]run {run.id}[/bold]  {escape(run.name)}")
    out.print(f"  experiment  {escape(exp)}\n  status      {run.status}\n  user        {escape(run.user)}")
    out.print(f"  started     {fmt_time(run.start_time)} UTC   duration {fmt_duration(run.start_time, run.end_time)}")
    dirty = {True: " (dirty)", False: "", None: ""}[run.source.dirty]
    out.print(f"  source      {escape(run.source.entry_point or '-')}  commit {run.source.commit or '-'}{dirty}")
    if run.parent_run_id:
        out.print(f"  parent      {run.parent_run_id}")
    _kv_table("params", run.params)
    if run.metrics:
        table = Table("metric", "latest", "values logged", title="metrics", title_justify="left")
        for k, v in run.metrics.items():
            table.add_row(k, fmt_value(v), str(steps[k]))
        out.print(table)
    _kv_table("tags", run.tags)
    if datasets:
        table = Table("dataset", "context", "rows", "columns", "digest", title="datasets", title_justify="left")
        for d in datasets:
            table.add_row(d.name, d.context or "-", str(d.num_rows), str(len(d.schema)), d.digest[:23] + "...")
        out.print(table)
    if artifacts:
        table = Table("artifact", "size", "sha256", title="artifacts", title_justify="left")
        for a in artifacts:
            table.add_row(a.path, f"{a.size:,}", a.sha256[:16] + "...")
        out.print(table)


def _kv_table(title: str, items: dict[str, str]) -> None:
    if not items:
        return
    table = Table("key", "value", title=title, title_justify="left")
    for k, v in items.items():
        table.add_row(k, v)
    out.print(table)
