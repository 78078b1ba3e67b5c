"""`keel triggers create/list/show/delete/fire` and `keel scheduler`."""

from __future__ import annotations

from typing import Optional

import typer

from keel.cli.common import client_from, fmt_time, out, print_json

app = typer.Typer(help="Triggers: retrain or run a pipeline on new data, on a schedule, or by hand.",
                  no_args_is_help=True)
_KINDS = {"new-data": "new_data", "dataset": "dataset", "schedule": "schedule", "monitor-alert": "monitor_alert",
          "manual": "manual"}


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Trigger name."),
    on: str = typer.Option(..., "--on", help="new-data, dataset, schedule, monitor-alert or manual."),
    path: Optional[str] = typer.Option(None, "--path", help="new-data: a folder or glob (local or fsspec URL)."),
    cron: Optional[str] = typer.Option(None, "--cron", help="schedule: cron expression, e.g. '0 3 * * *'."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="dataset: the name new data is logged under "
                                                                  "(keel.log_dataset(..., save=True))."),
    monitor: Optional[str] = typer.Option(None, "--monitor", help="monitor-alert: the monitor whose alerting "
                                                                  "windows fire it."),
    retrain: Optional[str] = typer.Option(None, "--retrain", help="Action: retrain this registered model."),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", help="Action: run this pipeline file."),
    data: Optional[str] = typer.Option(None, "--data", help="Data for schedule/manual actions."),
    eval_data: Optional[str] = typer.Option(None, "--eval", help="Retrain: the gate's evaluation data."),
    target: Optional[str] = typer.Option(None, "--target", help="Retrain: the label column."),
    alias: str = typer.Option("production", "--alias", help="Retrain: the champion's alias."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Create a trigger. Files already matching a new-data path when it is created never fire."""
    from keel.errors import InvalidInput
    from keel.pipelines.triggers import file_key, list_files
    from keel.service.triggers import create_trigger

    kind = _KINDS.get(on)
    if kind is None:
        raise InvalidInput(f"--on must be one of {', '.join(_KINDS)}, got {on!r}")
    spec = {"new_data": {"path": path}, "dataset": {"dataset": dataset}, "schedule": {"cron": cron},
            "monitor_alert": {"monitor": monitor}}.get(kind, {})
    action = {k: v for k, v in {"retrain": retrain, "pipeline": pipeline, "data": data, "eval": eval_data,
                                "target": target}.items() if v is not None}
    if retrain:
        action["alias"] = alias
    if pipeline:
        from pathlib import Path

        action["pipeline"] = str(Path(pipeline).resolve())
    baseline = [file_key(p) for p in list_files(path)] if kind == "new_data" and path else []
    trigger = create_trigger(client_from(ctx).ctx, name, kind, spec, action, baseline=baseline)
    if as_json:
        return print_json(trigger)
    out.print(f"created trigger {trigger.name} ({on}); {len(baseline)} existing file(s) will not fire",
              markup=False)


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List triggers."""
    from rich.table import Table

    from keel.service.triggers import list_triggers

    found = list_triggers(client_from(ctx).ctx)
    if as_json:
        return print_json(found)
    table = Table("name", "kind", "on", "action", "created (UTC)")
    for t in found:
        table.add_row(t.name, t.kind, str(t.spec.get("path") or t.spec.get("cron") or t.spec.get("monitor") or t.spec.get("dataset") or "-"),
                      f"retrain {t.action['retrain']}" if "retrain" in t.action else f"pipeline {t.action['pipeline']}",
                      fmt_time(t.created_at))
    out.print(table)


@app.command("show")
def show(ctx: typer.Context, name: str = typer.Argument(..., help="Trigger name."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show a trigger and every firing with its outcome."""
    from keel.service.triggers import firings, get_trigger

    c = client_from(ctx).ctx
    trigger = get_trigger(c, name)
    fired = firings(c, trigger.id)
    if as_json:
        return print_json({**trigger.__dict__, "firings": fired})
    out.print(f"trigger {trigger.name} ({trigger.kind}) spec {trigger.spec} action {trigger.action}", markup=False)
    for f in fired:
        out.print(f"  {fmt_time(f.fired_at)}  {f.status:9} {f.dedupe_key.split(':', 1)[-1]}  {f.outcome}",
                  markup=False)


@app.command("delete")
def delete(ctx: typer.Context, name: str = typer.Argument(..., help="Trigger name.")) -> None:
    """Delete a trigger and its firing history (the deletion is audited)."""
    from keel.service.triggers import delete_trigger

    delete_trigger(client_from(ctx).ctx, name)
    out.print(f"deleted trigger {name}", markup=False)


@app.command("fire")
def fire(ctx: typer.Context, name: str = typer.Argument(..., help="Trigger name."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Fire a trigger by hand now."""
    from keel.pipelines.triggers import fire_manually

    client = client_from(ctx)
    firing_id, status, outcome = fire_manually(client.ctx, name, client.settings)
    if as_json:
        return print_json({"firing": firing_id, "status": status, "outcome": outcome})
    out.print(f"fired {name}: {status} {outcome}", markup=False)
    if status != "succeeded":
        raise typer.Exit(1)


def scheduler(ctx: typer.Context,
              interval: float = typer.Option(30.0, "--interval", help="Seconds between passes."),
              once: bool = typer.Option(False, "--once", help="One pass, then exit (for cron or CI).")) -> None:
    """Fire due triggers in a loop. Safe to stop and restart: no new file or tick fires twice."""
    client = client_from(ctx)
    from keel.pipelines.triggers import run_scheduler

    run_scheduler(client.ctx, client.settings, interval=interval, once=once,
                  report=lambda line: out.print(line, markup=False))
