"""Users, roles and API tokens.

Tokens are 256-bit random strings shown once at creation; the store keeps
their sha256 only (a token has too much entropy to need a slow hash). Every
use of a token looks it up afresh, so revoking one takes effect at once.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from keel.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from keel.governance.roles import ADMIN, VIEWER, check_role
from keel.service.context import Context
from keel.service.tracking import now_ms
from keel.store.schema import api_tokens, users
from keel.store.sql import SqlStore, Tx

TOKEN_PREFIX = "keel_"
_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,255}$")
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\- ]{0,127}$")
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class User:
    name: str
    role: str
    disabled: bool
    created_by: str
    created_at: int


@dataclass(frozen=True)
class TokenInfo:
    id: str
    user: str
    name: str
    created_by: str
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    revoked_by: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now_ms())


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_user_name(name: Any) -> str:
    if not isinstance(name, str) or not _USER_NAME.match(name):
        raise InvalidInput(f"user name must start with a letter or digit and use letters, digits, "
                           f"'_', '.', '@', '-' (at most 256), got {name!r}")
    return name


# -- users ---------------------------------------------------------------------
def add_user(ctx: Context, name: str, role: str) -> User:
    """Add a user. The first user of a store must be an admin: adding it closes the open store."""
    check_user_name(name)
    check_role(role)

    def write(tx: Tx) -> User:
        first = tx.conn.execute(sa.select(users.c.name).limit(1)).first() is None
        if first and role != ADMIN:
            raise InvalidInput(f"the first user must be an admin (adding {name!r} as {role} would lock "
                               "everyone out of user management); add an admin first")
        if tx.conn.execute(sa.select(users.c.name).where(users.c.name == name)).first():
            raise Conflict(f"user {name!r} already exists (change a role with `keel users set-role`)")
        user = User(name, role, False, ctx.actor, now_ms())
        tx.conn.execute(users.insert().values(**user.__dict__))
        tx.audit("user.create", "user", name, {"role": role, "first_user": first})
        return user

    return ctx.write(write, role=ADMIN, what="add users")


def set_role(ctx: Context, name: str, role: str) -> User:
    check_role(role)

    def write(tx: Tx) -> User:
        row = _require_user(tx.conn, name)
        if row.role == ADMIN and role != ADMIN:
            _keep_an_admin(tx.conn, name)
        if row.role != role:
            tx.conn.execute(users.update().where(users.c.name == name).values(role=role))
            tx.audit("user.role", "user", name, {"role": role, "previous": row.role})
        return User(name, role, row.disabled, row.created_by, row.created_at)

    return ctx.write(write, role=ADMIN, what="change roles")


def set_disabled(ctx: Context, name: str, disabled: bool) -> User:
    """Disable (or re-enable) a user: a disabled user and all their tokens are refused."""

    def write(tx: Tx) -> User:
        row = _require_user(tx.conn, name)
        if disabled and row.role == ADMIN:
            _keep_an_admin(tx.conn, name)
        if row.disabled != disabled:
            tx.conn.execute(users.update().where(users.c.name == name).values(disabled=disabled))
            tx.audit("user.disable" if disabled else "user.enable", "user", name, {})
        return User(name, row.role, disabled, row.created_by, row.created_at)

    return ctx.write(write, role=ADMIN, what="disable users")


def list_users(ctx: Context) -> list[User]:
    ctx.authorize(VIEWER, what="list users")
    with ctx.store.read() as conn:
        rows = conn.execute(sa.select(users).order_by(users.c.name)).all()
    return [User(**r._mapping) for r in rows]


def whoami(ctx: Context) -> dict[str, Any]:
    """The acting identity and its role (None in an open store)."""
    role = ctx.authorize(VIEWER, what="identify yourself")
    return {"user": ctx.actor, "role": role, "open_store": role is None, "token": ctx.token_hash is not None}


# -- tokens --------------------------------------------------------------------
def create_token(ctx: Context, *, user: str | None = None, name: str = "default",
                 expires_in_days: float | None = None) -> tuple[TokenInfo, str]:
    """A new token for ``user`` (default: the actor). Returns its record and the
    token itself, which is not stored and cannot be shown again."""
    owner = check_user_name(user or ctx.actor)
    if not isinstance(name, str) or not _TOKEN_NAME.match(name):
        raise InvalidInput(f"token name must be 1-128 letters, digits, '_', '.', '-' or spaces, got {name!r}")
    if expires_in_days is not None and not (0 < expires_in_days <= 3650):
        raise InvalidInput(f"expires_in_days must be between 0 and 3650, got {expires_in_days!r}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    created = now_ms()
    info = TokenInfo(uuid.uuid4().hex, owner, name, ctx.actor, created,
                     created + int(expires_in_days * _DAY_MS) if expires_in_days else None, None, None)

    def write(tx: Tx) -> TokenInfo:
        _require_user(tx.conn, owner)
        if owner != ctx.actor and tx.role != ADMIN and tx.role is not None:
            raise PermissionDenied(f"only an admin can create tokens for another user ({owner!r})")
        tx.conn.execute(api_tokens.insert().values(token_hash=hash_token(secret), **info.__dict__))
        tx.audit("token.create", "user", owner, {"token_id": info.id, "name": name, "expires_at": info.expires_at})
        return info

    return ctx.write(write, role=VIEWER, what="create tokens"), secret


def revoke_token(ctx: Context, token_id: str) -> TokenInfo:
    """Revoke a token (its owner or an admin); it stops working at once."""

    def write(tx: Tx) -> TokenInfo:
        row = tx.conn.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id)).first()
        if row is None:
            raise NotFound(f"token {token_id!r} does not exist (see `keel tokens list`)")
        if row.user != ctx.actor and tx.role not in (ADMIN, None):
            raise PermissionDenied(f"only {row.user!r} or an admin can revoke token {token_id!r}")
        revoked_at = row.revoked_at
        if revoked_at is None:
            revoked_at = now_ms()
            tx.conn.execute(api_tokens.update().where(api_tokens.c.id == token_id)
                            .values(revoked_at=revoked_at, revoked_by=ctx.actor))
            tx.audit("token.revoke", "user", row.user, {"token_id": token_id, "name": row.name})
        return _token(dict(row._mapping) | {"revoked_at": revoked_at, "revoked_by": row.revoked_by or ctx.actor})

    return ctx.write(write, role=VIEWER, what="revoke tokens")


def list_tokens(ctx: Context, *, user: str | None = None, all_users: bool = False) -> list[TokenInfo]:
    """Tokens (never the secrets) of ``user`` (default: the actor); every user's for an admin."""
    role = ctx.authorize(VIEWER, what="list tokens")
    owner = user or ctx.actor
    if (all_users or owner != ctx.actor) and role not in (ADMIN, None):
        raise PermissionDenied("only an admin can list other users' tokens")
    query = sa.select(api_tokens).order_by(api_tokens.c.created_at)
    if not all_users:
        query = query.where(api_tokens.c.user == owner)
    with ctx.store.read() as conn:
        return [_token(r._mapping) for r in conn.execute(query).all()]


def authenticate(store: SqlStore, token: str) -> User:
    """The user a token belongs to; PermissionDenied if it is unknown, revoked, expired or disabled."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
        raise PermissionDenied("KEEL_TOKEN is not a keel API token (they start with 'keel_')")
    with store.read() as conn:
        row = conn.execute(sa.select(users, api_tokens.c.revoked_at, api_tokens.c.expires_at)
                           .join(users, users.c.name == api_tokens.c.user)
                           .where(api_tokens.c.token_hash == hash_token(token))).first()
    if row is None:
        raise PermissionDenied("the API token is not valid (unknown or deleted)")
    if row.revoked_at is not None:
        raise PermissionDenied(f"the API token of {row.name!r} was revoked")
    if row.expires_at is not None and row.expires_at <= now_ms():
        raise PermissionDenied(f"the API token of {row.name!r} has expired")
    if row.disabled:
        raise PermissionDenied(f"user {row.name!r} is disabled")
    return User(row.name, row.role, row.disabled, row.created_by, row.created_at)


def _require_user(conn: sa.Connection, name: str) -> Any:
    row = conn.execute(sa.select(users).where(users.c.name == name)).first()
    if row is None:
        raise NotFound(f"user {name!r} does not exist (see `keel users list`)")
    return row


def _keep_an_admin(conn: sa.Connection, leaving: str) -> None:
    others = conn.execute(sa.select(sa.func.count()).select_from(users).where(
        users.c.role == ADMIN, users.c.disabled == sa.false(), users.c.name != leaving)).scalar()
    if not others:
        raise Conflict(f"{leaving!r} is the last active admin; make another user admin first")


def _token(row: Any) -> TokenInfo:
    return TokenInfo(row["id"], row["user"], row["name"], row["created_by"], row["created_at"], row["expires_at"],
                     row["revoked_at"], row["revoked_by"])
