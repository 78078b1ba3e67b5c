"""`keel users ...` and `keel tokens ...`: roles and API tokens."""

from __future__ import annotations

from typing import Optional

import typer

from keel.cli.common import client_from, err, fmt_time, out, print_json

users_app = typer.Typer(help="Users and roles (viewer < editor < approver < admin).", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens: shown once, stored hashed, revocable.", no_args_is_help=True)


@users_app.command("add")
def add(ctx: typer.Context, name: str = typer.Argument(..., help="User name (the actor name, KEEL_USER)."),
        role: str = typer.Option(..., "--role", help="viewer, editor, approver or admin."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Add a user. The first user must be an admin; from then on unknown actors are refused."""
    from keel.service.users import add_user

    client = client_from(ctx)
    user = add_user(client.ctx, name, role)
    if as_json:
        return print_json(user)
    out.print(f"added {user.name} ({user.role})", markup=False)
    if user.name != client.ctx.actor and len(_users(client)) == 1:
        err.print(f"note: the store now has users; act as {user.name!r} (KEEL_USER or a token) to manage it",
                  markup=False)


@users_app.command("list")
def list_(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List users and their roles."""
    from rich.table import Table

    found = _users(client_from(ctx))
    if as_json:
        return print_json(found)
    table = Table("user", "role", "disabled", "created by", "created (UTC)")
    for u in found:
        table.add_row(u.name, u.role, "yes" if u.disabled else "no", u.created_by, fmt_time(u.created_at))
    out.print(table)


@users_app.command("set-role")
def set_role(ctx: typer.Context, name: str = typer.Argument(..., help="User name."),
             role: str = typer.Argument(..., help="viewer, editor, approver or admin.")) -> None:
    """Change a user's role (admin only; the last admin cannot step down)."""
    from keel.service.users import set_role as change

    user = change(client_from(ctx).ctx, name, role)
    out.print(f"{user.name} is now {user.role}", markup=False)


@users_app.command("disable")
def disable(ctx: typer.Context, name: str = typer.Argument(..., help="User name."),
            enable: bool = typer.Option(False, "--enable", help="Re-enable instead.")) -> None:
    """Disable a user (their tokens stop working too), or --enable them again."""
    from keel.service.users import set_disabled

    user = set_disabled(client_from(ctx).ctx, name, not enable)
    out.print(f"{user.name} is {'disabled' if user.disabled else 'enabled'}", markup=False)


@users_app.command("whoami")
def whoami(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Who keel takes you for, and with which role."""
    from keel.service.users import whoami as identify

    me = identify(client_from(ctx).ctx)
    if as_json:
        return print_json(me)
    role = "open store: no users yet, every actor may act" if me["open_store"] else me["role"]
    out.print(f"{me['user']} ({role})", markup=False)


def _users(client):
    from keel.service.users import list_users

    return list_users(client.ctx)


@tokens_app.command("create")
def create(ctx: typer.Context,
           name: str = typer.Option("default", "--name", help="A label to recognise the token by."),
           user: Optional[str] = typer.Option(None, "--user-name", help="Owner (admins only; default: you)."),
           expires_in_days: Optional[float] = typer.Option(None, "--expires-in-days", help="Lifetime in days."),
           as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Create an API token. It is printed once and cannot be shown again."""
    from keel.service.users import create_token

    info, secret = create_token(client_from(ctx).ctx, user=user, name=name, expires_in_days=expires_in_days)
    if as_json:
        return print_json({**info.__dict__, "token": secret})
    out.print(secret, markup=False)
    err.print(f"token {info.id} for {info.user}: store it now, it is not kept and cannot be shown again",
              markup=False)


@tokens_app.command("list")
def list_tokens(ctx: typer.Context,
                user: Optional[str] = typer.Option(None, "--user-name", help="Whose tokens (admins only)."),
                all_users: bool = typer.Option(False, "--all", help="Every user's tokens (admins only)."),
                as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List tokens (never the secrets)."""
    from rich.table import Table

    from keel.service.users import list_tokens as listing

    found = listing(client_from(ctx).ctx, user=user, all_users=all_users)
    if as_json:
        return print_json([{**t.__dict__, "active": t.active} for t in found])
    table = Table("id", "user", "name", "created (UTC)", "expires (UTC)", "state")
    for t in found:
        state = "active" if t.active else ("revoked" if t.revoked_at else "expired")
        table.add_row(t.id, t.user, t.name, fmt_time(t.created_at), fmt_time(t.expires_at), state)
    out.print(table)


@tokens_app.command("revoke")
def revoke(ctx: typer.Context, token_id: str = typer.Argument(..., help="Token id (see `keel tokens list`).")) -> None:
    """Revoke a token: it stops working at once."""
    from keel.service.users import revoke_token

    info = revoke_token(client_from(ctx).ctx, token_id)
    out.print(f"revoked token {info.id} of {info.user}", markup=False)
