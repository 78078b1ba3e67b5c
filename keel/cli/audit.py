"""`keel audit log` and `keel audit verify`."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from keel.cli.common import client_from, err, out, print_json

app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)


@app.command("log")
def log(
    ctx: typer.Context,
    limit: int = typer.Option(50, "--limit", "-n", help="Newest N events (0 = all)."),
    object_id: Optional[str] = typer.Option(None, "--object", help="Only events about this object id."),
    action: Optional[str] = typer.Option(None, "--action", help="Only this action, e.g. run.create."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List audit events in sequence order."""
    events = client_from(ctx).audit_log(object_id=object_id, action=action, limit=limit or None)
    if as_json:
        return print_json(events)
    table = Table("seq", "time (UTC)", "actor", "action", "object", "details")
    for e in events:
        details = e.details if len(e.details) <= 80 else e.details[:77] + "..."
        table.add_row(str(e.seq), e.time[:19].replace("T", " "), e.actor, e.action,
                      f"{e.object_type}:{e.object_id[:12]}", details)
    out.print(table)


@app.command("verify")
def verify(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Check the whole hash chain; exit 1 naming the first bad event if anything was changed."""
    report = client_from(ctx).verify_audit()
    if as_json:
        print_json(report)
    elif report.ok:
        out.print(f"audit chain OK: {report.events_checked} events, head {report.head_hash}")
    else:
        err.print(f"audit chain BROKEN at event {report.first_bad_seq}: {report.reason}", markup=False)
    if not report.ok:
        raise typer.Exit(1)
