"""Promotion requests: policy checks, four eyes, roles; every step and refusal audited."""

from __future__ import annotations

import dataclasses
import json

import pytest
import sqlalchemy as sa

import keel
from keel.errors import ConfigError, Conflict, InvalidInput, NotFound, PermissionDenied, PolicyViolation
from keel.service import registry, users
from keel.testing.cli import run_cli

pytestmark = pytest.mark.store

# The default policy for `production` also asks for a model card; these tests
# are about approvals, so they only keep the dataset requirement.
NO_CARD = {"aliases": {"production": {"require_card": False}}}


@pytest.fixture
def trained():
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=200, n_features=4, random_state=0)
    return LogisticRegression().fit(X, y), X, y


def as_user(settings, name, **changes):
    return dataclasses.replace(settings, user=name, **changes)


def ctx_of(settings):
    return keel.Client(settings).ctx


def log_version(settings, trained, *, accuracy=0.93, dataset=True):
    model, X, y = trained
    with keel.start_run("promo", settings=settings):
        if dataset:
            keel.log_dataset(X, name="train")
        keel.log_metric("accuracy", accuracy)
        return keel.log_model(model, "model", input_example=X[:3], register="churn")


def audit(settings, action):
    return [e for e in keel.Client(settings).audit_log() if e.action == action]


def test_requester_cannot_approve_own_request_and_another_user_can(settings, trained):
    s = as_user(settings, "alice", policy=NO_CARD)
    mv = log_version(s, trained)
    req = keel.registry.request_promotion("churn", mv.version, alias="production", comment="beats v0",
                                          settings=s)
    assert (req.status, req.checks_passed, req.requester) == ("pending", True, "alice")
    assert {c["name"] for c in req.checks} == {"bundle_integrity", "reference_dataset"}
    with pytest.raises(NotFound):  # the request alone moves nothing
        registry.get_version(ctx_of(s), "churn", alias="production")

    with pytest.raises(PermissionDenied, match="'alice' requested .* cannot approve it: four eyes"):
        keel.registry.approve(req.id, comment="self-approval", settings=s)
    [denied] = audit(s, "access.denied")
    assert (denied.actor, denied.object_type, denied.object_id) == ("alice", "promotion", req.id)
    assert "four eyes" in json.loads(denied.details)["reason"]
    assert keel.registry.get_request(req.id, settings=s).status == "pending"

    bob = as_user(settings, "bob", policy=NO_CARD)
    done = keel.registry.approve(req.id[:8], comment="holdout AUC holds", settings=bob)
    assert (done.status, done.decided_by, done.reason, done.previous_version) == \
        ("approved", "bob", "holdout AUC holds", None)
    assert registry.get_version(ctx_of(s), "churn", alias="production").version == mv.version
    assert [e.object_id for e in audit(s, "promotion.approve")] == [req.id]
    [moved] = audit(s, "model.alias.set")
    assert (moved.actor, json.loads(moved.details)["request"]) == ("bob", req.id)
    with pytest.raises(Conflict, match="already approved"):
        keel.registry.reject(req.id, reason="too late", settings=bob)


def test_roles_viewer_and_editor_cannot_approve_rejection_keeps_the_alias(settings, trained):
    admin = as_user(settings, "root", policy=NO_CARD)
    for name, role in [("root", "admin"), ("alice", "editor"), ("ed", "editor"), ("vic", "viewer"),
                       ("paula", "approver")]:
        users.add_user(ctx_of(admin), name, role)
    alice, paula = as_user(settings, "alice", policy=NO_CARD), as_user(settings, "paula", policy=NO_CARD)
    first = log_version(alice, trained)
    second = log_version(alice, trained)
    req1 = keel.registry.request_promotion("churn", first.version, "production", settings=alice)
    keel.registry.approve(req1.id, reason="first release", settings=paula)

    req2 = keel.registry.request_promotion("churn", second.version, "production", settings=alice)
    for who, role in [("vic", "viewer"), ("ed", "editor")]:
        with pytest.raises(PermissionDenied, match=f"'{who}' has the {role} role; approver or higher is needed"):
            keel.registry.approve(req2.id, reason="lgtm", settings=as_user(settings, who, policy=NO_CARD))
    with pytest.raises(PermissionDenied, match="'mallory' is not a keel user"):
        keel.registry.approve(req2.id, reason="lgtm", settings=as_user(settings, "mallory", policy=NO_CARD))
    assert [e.actor for e in audit(admin, "access.denied")] == ["vic", "ed", "mallory"]

    with pytest.raises(InvalidInput, match="a reason is required"):
        keel.registry.reject(req2.id, reason="  ", settings=paula)
    rejected = keel.registry.reject(req2.id, reason="fairness review pending", settings=paula)
    assert (rejected.status, rejected.decided_by) == ("rejected", "paula")
    assert registry.get_version(ctx_of(alice), "churn", alias="production").version == first.version
    [event] = audit(admin, "promotion.reject")
    assert json.loads(event.details)["reason"] == "fairness review pending"
    with pytest.raises(Conflict, match="already rejected"):
        keel.registry.approve(req2.id, reason="changed my mind", settings=paula)
    with pytest.raises(PermissionDenied, match="protected"):  # no way around the request
        registry.set_alias(ctx_of(paula), "churn", "production", second.version)


def test_metric_floors_and_missing_evidence_block_approval(settings, trained):
    policy = {"aliases": {"production": {"min_metrics": {"accuracy": 0.9}, "max_metrics": {"log_loss": 0.4}}}}
    alice = as_user(settings, "alice", policy=policy)
    mv = log_version(alice, trained, accuracy=0.81, dataset=False)
    req = keel.registry.request_promotion("churn", mv.version, "production", settings=alice)
    by_name = {c["name"]: c for c in req.checks}
    assert not req.checks_passed
    assert by_name["metric:accuracy>=0.9"]["evidence"] == {"metric": "accuracy", "value": 0.81, "bound": 0.9}
    assert "no metric 'log_loss'" in by_name["metric:log_loss<=0.4"]["detail"]
    assert not by_name["model_card"]["passed"] and not by_name["reference_dataset"]["passed"]
    assert by_name["bundle_integrity"]["passed"]
    with pytest.raises(PolicyViolation, match="fails 4 check"):
        keel.registry.approve(req.id, reason="ship it", settings=as_user(settings, "bob", policy=policy))
    [refused] = audit(alice, "policy.refused")
    assert (refused.actor, refused.object_id) == ("bob", req.id)
    with pytest.raises(NotFound):
        registry.get_version(ctx_of(alice), "churn", alias="production")


def test_unprotected_alias_is_approved_by_policy_when_checks_pass(settings, trained):
    alice = as_user(settings, "alice", policy={"aliases": {"staging": {"min_metrics": {"accuracy": 0.9}}}})
    good = log_version(alice, trained, accuracy=0.95)
    bad = log_version(alice, trained, accuracy=0.5)
    ok = keel.registry.request_promotion("churn", good.version, "staging", settings=alice)
    assert (ok.status, ok.decided_by) == ("approved", "policy")
    held = keel.registry.request_promotion("churn", bad.version, "staging", settings=alice)
    assert held.status == "pending" and not held.checks_passed
    assert registry.get_version(ctx_of(alice), "churn", alias="staging").version == good.version
    with pytest.raises(Conflict, match="already has a pending request"):
        keel.registry.request_promotion("churn", bad.version, "staging", settings=alice)
    keel.registry.cancel(held.id, "retraining instead", settings=alice)
    assert [r.status for r in keel.registry.list_requests("churn", settings=alice)] == ["approved", "cancelled"]


def test_policy_configuration_errors_name_the_key(settings, trained):
    alice = as_user(settings, "alice", policy={"aliases": {"production": {"min_metric": {"auc": 0.8}}}})
    mv = log_version(as_user(settings, "alice"), trained)
    with pytest.raises(ConfigError, match=r"\[policy.aliases.production\]: unknown key\(s\) min_metric"):
        keel.registry.request_promotion("churn", mv.version, "production", settings=alice)
    auto = as_user(settings, "alice", policy={"aliases": {"production": {"auto_approve": True}}})
    with pytest.raises(ConfigError, match="not allowed for a protected alias"):
        keel.registry.request_promotion("churn", mv.version, "production", settings=auto)


def test_audit_chain_verifies_after_the_cycle_and_catches_an_edited_approval(settings, trained, raw_engine):
    alice = as_user(settings, "alice", policy=NO_CARD)
    mv = log_version(alice, trained)
    req = keel.registry.request_promotion("churn", mv.version, "production", settings=alice)
    keel.registry.approve(req.id, reason="ok", settings=as_user(settings, "bob", policy=NO_CARD))
    client = keel.Client(alice)
    assert client.verify_audit().ok
    # (the background ONNX copy may add its tag event anywhere in between)
    actions = [e.action for e in client.audit_log() if e.object_type in ("promotion", "model")]
    assert actions[-3:] == ["promotion.request", "model.alias.set", "promotion.approve"]
    for action, column, value in [("promotion.approve", "actor", "alice"),
                                  ("promotion.request", "details", '{"alias":"staging"}'),
                                  ("model.alias.set", "object_id", "other")]:
        with raw_engine.begin() as conn:
            original = conn.execute(sa.text(f"SELECT seq, {column} FROM audit_events WHERE action = :a"),
                                    {"a": action}).one()
            conn.execute(sa.text(f"UPDATE audit_events SET {column} = :v WHERE seq = :s"),
                         {"v": value, "s": original[0]})
        report = client.verify_audit()
        assert not report.ok and report.first_bad_seq == original[0], report
        with raw_engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE audit_events SET {column} = :v WHERE seq = :s"),
                         {"v": original[1], "s": original[0]})
        assert client.verify_audit().ok


def test_cli_promote_approve_reject(settings, trained, keel_env, tmp_path):
    (tmp_path / "keel.toml").write_text('[policy.aliases.production]\nrequire_card = false\n')
    alice = as_user(settings, "alice", policy=NO_CARD)
    first = log_version(alice, trained)
    second = log_version(alice, trained)
    env = {**keel_env, "KEEL_USER": "alice"}

    def cli(user, *args, check=True):
        proc = run_cli({**env, "KEEL_USER": user}, "models", *args, check=check, cwd=tmp_path)
        return proc

    filed = json.loads(cli("alice", "promote", "churn", str(first.version), "--to", "production", "--json").stdout)
    assert filed["status"] == "pending" and filed["checks_passed"]
    own = cli("alice", "approve", filed["id"][:10], "--reason", "mine", check=False)
    assert own.returncode == 1 and own.stderr.count("\n") == 1 and "four eyes" in own.stderr
    assert "approved: models:/churn@production -> version 1 (was unset)" in \
        cli("bob", "approve", filed["id"][:10], "--reason", "reviewed").stdout
    second_req = json.loads(cli("alice", "promote", "churn", str(second.version), "--to", "production",
                                "--json").stdout)
    cli("bob", "reject", second_req["id"], "--reason", "needs a fairness review")
    shown = json.loads(cli("alice", "show", "models:/churn@production", "--json").stdout)
    assert shown["version"] == first.version
    listed = cli("alice", "requests", "churn").stdout
    assert "approved" in listed and "rejected" in listed
    one = cli("alice", "requests", "--id", second_req["id"]).stdout
    assert "rejected by bob" in one and "needs a fairness review" in one


def test_default_production_policy_needs_a_card_and_the_card_names_the_approver(settings, trained):
    alice, bob = as_user(settings, "alice"), as_user(settings, "bob")
    mv = log_version(alice, trained)
    req = keel.registry.request_promotion("churn", mv.version, "production", settings=alice)
    assert [c["name"] for c in req.checks if not c["passed"]] == ["model_card"]
    with pytest.raises(PolicyViolation, match="model_card: no model card text"):
        keel.registry.approve(req.id, reason="ok", settings=bob)
    keel.registry.update_card("churn", overview="Predicts churn within 30 days.",
                              limitations="Trained on 2025 customers only.", settings=alice)
    keel.registry.approve(req.id, reason="card reviewed", settings=bob)
    card = keel.registry.get_card("models:/churn@production", settings=alice)
    [approval] = card["approvals"]
    assert (approval["decided_by"], approval["reason"], approval["status"]) == ("bob", "card reviewed", "approved")
    evidence = {c["name"]: c for c in approval["decision_checks"]}
    assert evidence["model_card"]["evidence"]["fields"] == ["limitations", "overview"]
    assert evidence["reference_dataset"]["evidence"]["datasets"][0]["name"] == "train"
