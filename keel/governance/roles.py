"""Roles and who may do what: pure rules, no I/O.

Roles are ordered: each one may do everything the ones below it may.

- viewer: read runs, models, cards, lineage, the audit trail;
- editor: log runs and models, register versions, move unprotected aliases,
  file promotion requests, write cards and explanations;
- approver: approve or reject promotion requests (never their own);
- admin: manage users and everyone's tokens.

A store with no users is *open*: every actor acts as an admin, except that
four eyes still hold (nobody approves their own request). Adding the first
user (who must be an admin) closes it: from then on an actor who is not a
user, or whose token is revoked or expired, is refused.
"""

from __future__ import annotations

from typing import Any

from keel.errors import InvalidInput

VIEWER, EDITOR, APPROVER, ADMIN = "viewer", "editor", "approver", "admin"
ROLES = (VIEWER, EDITOR, APPROVER, ADMIN)
_RANK = {role: i for i, role in enumerate(ROLES)}


def check_role(role: Any) -> str:
    if role not in _RANK:
        raise InvalidInput(f"unknown role {role!r}; roles are {', '.join(ROLES)} (each includes the ones before it)")
    return role


def allows(held: str | None, required: str) -> bool:
    """Whether ``held`` (None: an open store) includes ``required``."""
    return held is None or _RANK[held] >= _RANK[required]
