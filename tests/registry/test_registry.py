"""Registered models: numbered versions, aliases, models:/ URIs, every change audited."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keel
from keel.errors import IntegrityError, InvalidInput, NotFound, PermissionDenied
from keel.service import registry

pytestmark = pytest.mark.store


@pytest.fixture
def model_and_data():
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=200, n_features=4, random_state=0)
    return LogisticRegression().fit(X, y), X


def _log(settings, model, X, register="churn"):
    with keel.start_run("registry", settings=settings):
        return keel.log_model(model, "model", input_example=X[:3], register=register)


def test_versions_are_numbered_and_resolve_by_number_and_alias(settings, model_and_data):
    model, X = model_and_data
    first = _log(settings, model, X)
    second = _log(settings, model, X)
    assert (first.registered, second.registered) == ("models:/churn/1", "models:/churn/2")
    ctx = keel.Client(settings).ctx
    registry.set_alias(ctx, "churn", "champion", 1)
    loaded = keel.load_model("models:/churn@champion", settings=settings)
    assert loaded.manifest.data["lineage"]["run_id"] == first.run_id
    np.testing.assert_array_equal(keel.load_model("models:/churn/2", settings=settings).predict(X), model.predict(X))
    registry.set_alias(ctx, "churn", "champion", 2)  # the alias moves
    assert registry.get_version(ctx, "churn", alias="champion").version == 2
    assert [v.aliases for v in registry.list_versions(ctx, "churn")] == [(), ("champion",)]
    [listed] = registry.list_models(ctx)
    assert (listed.name, listed.latest_version, listed.aliases) == ("churn", 2, {"champion": 2})
    actions = [e.action for e in keel.Client(settings).audit_log() if e.object_type in ("model", "model_version")]
    assert actions == ["model.create", "model.version.create", "model.version.create",
                       "model.alias.set", "model.alias.set"]


def test_protected_alias_cannot_be_set_directly(settings, model_and_data):
    model, X = model_and_data
    _log(settings, model, X)
    with pytest.raises(PermissionDenied, match="alias 'production' is protected"):
        registry.set_alias(keel.Client(settings).ctx, "churn", "production", 1)


def test_clear_errors(settings, model_and_data):
    model, X = model_and_data
    _log(settings, model, X)
    ctx = keel.Client(settings).ctx
    with pytest.raises(NotFound, match="model 'churn' has no version 7"):
        keel.load_model("models:/churn/7", settings=settings)
    with pytest.raises(NotFound, match="model 'churn' has no alias 'staging'"):
        keel.load_model("models:/churn@staging", settings=settings)
    with pytest.raises(NotFound, match="registered model 'nope' does not exist"):
        keel.load_model("models:/nope/1", settings=settings)
    with pytest.raises(InvalidInput, match="not a registry URI"):
        keel.load_model("models:/churn", settings=settings)
    with pytest.raises(InvalidInput, match="model name must start"):
        _log(settings, model, X, register="bad name!")
    with pytest.raises(InvalidInput, match="alias must start with a letter"):
        registry.set_alias(ctx, "churn", "1", 1)
    with pytest.raises(NotFound, match="is not a logged model"):
        registry.register_version(ctx, "churn", keel.Client(settings).create_run().id, "model", format="sklearn")


def test_a_registered_manifest_changed_in_the_store_is_refused(settings, model_and_data, raw_engine):
    import sqlalchemy as sa

    model, X = model_and_data
    _log(settings, model, X)
    with raw_engine.begin() as conn:
        conn.execute(sa.text("UPDATE model_versions SET manifest_sha256 = :s"), {"s": "0" * 64})
    with pytest.raises(IntegrityError, match="differs from the one registered as version 1"):
        keel.load_model("models:/churn/1", settings=settings)


WORKER = textwrap.dedent("""
    import sys
    from keel.tracking.client import Client
    from keel.service.registry import register_version
    client = Client()
    for _ in range(5):
        register_version(client.ctx, "shared", sys.argv[1], "model", format="sklearn")
""")


def test_concurrent_registrations_get_distinct_consecutive_versions(settings, model_and_data, keel_env):
    model, X = model_and_data
    info = _log(settings, model, X, register=None)
    keel.Client(settings).flush()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, info.run_id], env=keel_env, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    versions = [v.version for v in registry.list_versions(keel.Client(settings).ctx, "shared")]
    assert versions == list(range(1, 21))
    assert keel.Client(settings).verify_audit().ok


def test_cli_register_alias_versions(settings, model_and_data, keel_env):
    model, X = model_and_data
    info = _log(settings, model, X, register=None)

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "keel.cli.main", "models", *args], env=keel_env,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert cli("register", info.uri, "fraud").strip() == f"registered {info.uri} as models:/fraud/1"
    assert cli("register", info.uri, "fraud").strip().endswith("models:/fraud/2")
    cli("alias", "fraud", "staging", "1")
    listed = json.loads(cli("versions", "fraud", "--json"))
    assert [(v["version"], v["aliases"]) for v in listed] == [(1, ["staging"]), (2, [])]
    shown = json.loads(cli("show", "models:/fraud@staging", "--json"))
    assert shown["version"] == 1 and shown["source"] == info.uri
    assert json.loads(cli("list", "--json"))[0]["latest_version"] == 2


def test_model_description_and_tags(settings, model_and_data, keel_env):
    model, X = model_and_data
    _log(settings, model, X)
    ctx = keel.Client(settings).ctx
    updated = registry.update_model(ctx, "churn", description="Churn in 30 days", tags={"team": "growth",
                                                                                       "tier": "1"})
    assert (updated.description, updated.tags) == ("Churn in 30 days", {"team": "growth", "tier": "1"})
    proc = subprocess.run([sys.executable, "-m", "keel.cli.main", "models", "update", "churn", "--tag", "tier=2",
                           "--delete-tag", "team"], env=keel_env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    [listed] = registry.list_models(ctx)
    assert (listed.description, listed.tags) == ("Churn in 30 days", {"tier": "2"})
    with pytest.raises(NotFound, match="'nope' does not exist"):
        registry.update_model(ctx, "nope", description="x")
    assert [e.action for e in keel.Client(settings).audit_log() if e.action == "model.update"] == \
        ["model.update", "model.update"]
