"""`keel models promote/approve/reject/cancel/requests`: promotion requests and four eyes."""

from __future__ import annotations

from typing import Optional

import typer

from keel.cli.common import client_from, fmt_time, out, print_json


def promote(ctx: typer.Context, name: str = typer.Argument(..., help="Registered model name."),
            version: int = typer.Argument(..., help="Version to promote."),
            to: str = typer.Option(..., "--to", help="Alias to take, e.g. production."),
            comment: Optional[str] = typer.Option(None, "--comment", help="Why (recorded with the request)."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Request that VERSION take an alias: the policy checks run now and are recorded."""
    from keel.service.promotions import request_promotion

    req = request_promotion(client_from(ctx).ctx, name, version, to, comment=comment)
    if as_json:
        return print_json(req)
    _show(req)
    if req.status == "pending":
        hint = ("another user with the approver role can now run `keel models approve "
                f"{req.id[:12]} --reason ...`") if req.checks_passed else "fix the failing checks before approval"
        out.print(hint, markup=False)


def approve(ctx: typer.Context, request_id: str = typer.Argument(..., metavar="REQUEST", help="Request id or prefix."),
            reason: str = typer.Option(..., "--reason", help="Why it may go ahead (audit trail, model card)."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Approve a pending request (approver role, not its requester): checks re-run, then the alias moves."""
    from keel.service.promotions import approve as decide

    req = decide(client_from(ctx).ctx, request_id, reason)
    if as_json:
        return print_json(req)
    out.print(f"approved: models:/{req.name}@{req.alias} -> version {req.version} "
              f"(was {req.previous_version if req.previous_version is not None else 'unset'})", markup=False)


def reject(ctx: typer.Context, request_id: str = typer.Argument(..., metavar="REQUEST", help="Request id or prefix."),
           reason: str = typer.Option(..., "--reason", help="Why not (audit trail, model card)."),
           as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Reject a pending request; the alias stays where it was."""
    from keel.service.promotions import reject as decide

    req = decide(client_from(ctx).ctx, request_id, reason)
    if as_json:
        return print_json(req)
    out.print(f"rejected request {req.id} ({req.uri} -> {req.alias})", markup=False)


def cancel(ctx: typer.Context, request_id: str = typer.Argument(..., metavar="REQUEST", help="Request id or prefix."),
           reason: Optional[str] = typer.Option(None, "--reason", help="Why it is withdrawn.")) -> None:
    """Withdraw a pending request (its requester, or an approver)."""
    from keel.service.promotions import cancel as withdraw

    req = withdraw(client_from(ctx).ctx, request_id, reason)
    out.print(f"cancelled request {req.id}", markup=False)


def requests(ctx: typer.Context, name: Optional[str] = typer.Argument(None, help="Only this model's requests."),
             status: Optional[str] = typer.Option(None, "--status", help="pending, approved, rejected, cancelled."),
             request_id: Optional[str] = typer.Option(None, "--id", help="Show one request with its checks."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List promotion requests (or show one with --id)."""
    from rich.table import Table

    from keel.service.promotions import get_request, list_requests

    client = client_from(ctx)
    if request_id:
        req = get_request(client.ctx, request_id)
        return print_json(req) if as_json else _show(req)
    found = list_requests(client.ctx, name=name, status=status)
    if as_json:
        return print_json(found)
    table = Table("request", "model", "alias", "status", "checks", "requester", "requested (UTC)", "decided by")
    for r in found:
        table.add_row(r.id[:12], r.uri, r.alias, r.status, "pass" if r.checks_passed else "FAIL", r.requester,
                      fmt_time(r.requested_at), r.decided_by or "-")
    out.print(table)


def _show(req) -> None:
    out.print(f"request {req.id}: {req.uri} -> {req.alias} [{req.status}]", markup=False)
    out.print(f"  requested by {req.requester} at {fmt_time(req.requested_at)} UTC"
              + (f": {req.comment}" if req.comment else ""), markup=False)
    for check in req.decision_checks or req.checks:
        out.print(f"  {'pass' if check['passed'] else 'FAIL'}  {check['name']}: {check['detail']}", markup=False)
    if req.decided_by:
        out.print(f"  {req.status} by {req.decided_by} at {fmt_time(req.decided_at)} UTC"
                  + (f": {req.reason}" if req.reason else ""), markup=False)
