"""Users, roles and API tokens: enforced in the service layer, tokens kept hashed."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import sqlalchemy as sa

import keel
from keel.errors import Conflict, InvalidInput, PermissionDenied
from keel.service import users
from keel.testing.cli import run_cli

pytestmark = pytest.mark.store


def as_user(settings, name, **changes):
    return dataclasses.replace(settings, user=name, **changes)


def ctx_of(settings):
    return keel.Client(settings).ctx


def test_open_store_until_the_first_user_then_unknown_actors_are_refused(settings):
    anyone = as_user(settings, "carol")
    keel.Client(anyone).create_run("e")  # open store: no users yet
    with pytest.raises(InvalidInput, match="the first user must be an admin"):
        users.add_user(ctx_of(anyone), "carol", "editor")
    users.add_user(ctx_of(anyone), "root", "admin")
    with pytest.raises(PermissionDenied, match="'carol' is not a keel user"):
        keel.Client(anyone).create_run("e")
    root = as_user(settings, "root")
    users.add_user(ctx_of(root), "carol", "viewer")
    with pytest.raises(PermissionDenied, match="'carol' has the viewer role; editor or higher is needed"):
        keel.Client(anyone).create_run("e")
    users.set_role(ctx_of(root), "carol", "editor")
    assert keel.Client(anyone).create_run("e").user == "carol"
    with pytest.raises(PermissionDenied, match="admin or higher is needed to add users"):
        users.add_user(ctx_of(anyone), "dave", "admin")
    users.set_disabled(ctx_of(root), "carol", True)
    with pytest.raises(PermissionDenied, match="user 'carol' is disabled"):
        keel.Client(anyone).create_run("e")
    with pytest.raises(Conflict, match="last active admin"):
        users.set_role(ctx_of(root), "root", "editor")
    with pytest.raises(Conflict, match="already exists"):
        users.add_user(ctx_of(root), "carol", "viewer")
    denied = [e for e in keel.Client(root).audit_log() if e.action == "access.denied"]
    assert [e.actor for e in denied] == ["carol", "carol", "carol", "carol"]


def test_token_is_stored_hashed_and_revocation_takes_effect_at_once(settings, raw_engine):
    root = as_user(settings, "root")
    users.add_user(ctx_of(root), "root", "admin")
    users.add_user(ctx_of(root), "alice", "editor")
    info, secret = users.create_token(ctx_of(root), user="alice", name="ci")
    assert secret.startswith("keel_") and len(secret) > 40

    # Nowhere in the store, in any column of any table, is the token in clear.
    with raw_engine.connect() as conn:
        for table in sa.inspect(raw_engine).get_table_names():
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")):
                assert not any(secret in str(v) for v in row), table
        stored = conn.execute(sa.text("SELECT token_hash FROM api_tokens")).scalar()
    assert stored == hashlib.sha256(secret.encode()).hexdigest()

    # Acting with the token: the actor is its owner, whatever KEEL_USER says.
    with_token = dataclasses.replace(settings, user="mallory", token=secret)
    client = keel.Client(with_token)
    assert client.ctx.actor == "alice"
    run = client.create_run("tokens")
    assert run.user == "alice"

    users.revoke_token(ctx_of(root), info.id)
    with pytest.raises(PermissionDenied, match="token of 'alice' was revoked"):
        client.create_run("tokens")  # the same, already-open client: refused on its next write
    with pytest.raises(PermissionDenied, match="revoked"):
        keel.Client(with_token)
    with pytest.raises(PermissionDenied, match="not valid"):
        keel.Client(dataclasses.replace(settings, token="keel_" + "x" * 43))
    [listed] = users.list_tokens(ctx_of(root), user="alice")
    assert not listed.active and listed.revoked_by == "root"


def test_tokens_of_others_need_an_admin_and_expire(settings):
    root = as_user(settings, "root")
    users.add_user(ctx_of(root), "root", "admin")
    users.add_user(ctx_of(root), "alice", "editor")
    users.add_user(ctx_of(root), "bob", "approver")
    alice = as_user(settings, "alice")
    own, _ = users.create_token(ctx_of(alice), name="laptop")
    assert own.user == "alice"
    with pytest.raises(PermissionDenied, match="only an admin can create tokens for another user"):
        users.create_token(ctx_of(alice), user="bob")
    bob_token, _ = users.create_token(ctx_of(root), user="bob")
    with pytest.raises(PermissionDenied, match="only 'bob' or an admin can revoke"):
        users.revoke_token(ctx_of(alice), bob_token.id)
    with pytest.raises(PermissionDenied, match="only an admin can list other users' tokens"):
        users.list_tokens(ctx_of(alice), all_users=True)
    assert {t.user for t in users.list_tokens(ctx_of(root), all_users=True)} == {"alice", "bob"}
    with pytest.raises(InvalidInput, match="expires_in_days"):
        users.create_token(ctx_of(alice), expires_in_days=-1)


def test_cli_users_and_tokens(settings, keel_env):
    env = {**keel_env, "KEEL_USER": "root"}
    run_cli(env, "users", "add", "root", "--role", "admin")
    run_cli(env, "users", "add", "alice", "--role", "editor")
    created = run_cli(env, "tokens", "create", "--user-name", "alice", "--name", "ci")
    secret = created.stdout.strip()
    assert secret.startswith("keel_") and "cannot be shown again" in created.stderr
    listed = run_cli(env, "tokens", "list", "--all", "--json").stdout
    assert secret not in listed and json.loads(listed)[0]["active"] is True
    as_alice = {**env, "KEEL_USER": "nobody", "KEEL_TOKEN": secret}
    assert run_cli(as_alice, "users", "whoami").stdout.strip() == "alice (editor)"
    token_id = json.loads(listed)[0]["id"]
    run_cli(env, "tokens", "revoke", token_id)
    refused = run_cli(as_alice, "users", "whoami", check=False)
    assert refused.returncode == 1 and "revoked" in refused.stderr and "Traceback" not in refused.stderr
    table = run_cli(env, "users", "list").stdout
    assert "alice" in table and "editor" in table
