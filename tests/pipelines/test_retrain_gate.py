"""keel retrain and the champion/challenger gate: a worse challenger is stopped with the numbers,
a better one gets a promotion request, and production moves only on another user's approval."""

from __future__ import annotations

import json

import pytest

from keel.errors import PermissionDenied
from keel.pipelines.gate import GateSpec
from keel.pipelines.runner import run_file
from keel.service import promotions
from keel.service.cards import update_card
from keel.service.context import Context
from keel.service.gate import decisions_for
from keel.service.registry import get_version
from keel.service.retrain import retrain
from keel.settings import Settings

pytestmark = pytest.mark.store


@pytest.fixture
def bob(settings: Settings, tmp_path):
    other = Settings.load({"home": settings.home, "store_uri": settings.store_uri,
                           "artifact_uri": settings.artifact_uri, "user": "bob"}, env={}, cwd=tmp_path)
    ctx = Context.from_settings(other)
    yield ctx
    ctx.close()


@pytest.fixture
def champion(churn_project, settings, client, bob):
    """Version 1, trained on 40 rows, in production (alice asked, bob approved)."""
    run_file(churn_project / "pipe.py", {"data": str(churn_project / "weak.csv")}, settings=settings)
    update_card(client.ctx, "churn", None, overview="Churn classifier for the retrain tests.")
    request = promotions.request_promotion(client.ctx, "churn", 1, "production")
    promotions.approve(bob, request.id, "first model")
    assert get_version(client.ctx, "churn", alias="production").version == 1
    return 1


def test_a_worse_challenger_is_not_promoted_and_the_reason_names_the_metric_and_both_values(
        churn_project, settings, client, champion):
    result = retrain("churn", str(churn_project / "noisy.csv"), eval_data=str(churn_project / "eval.csv"),
                     spec=GateSpec(tolerances={"accuracy": 0.01}), settings=settings)
    assert result.challenger == 2 and result.champion == 1
    new, old = result.scores["challenger"]["accuracy"], result.scores["champion"]["accuracy"]
    assert new < old - 0.01  # labels shuffled: the challenger learnt nothing
    assert not result.blessed and result.promotion_request_id is None
    assert result.reasons == [f"accuracy: challenger {new:.6g} is worse than champion {old:.6g} by "
                              f"{old - new:.6g} (tolerance 0.01)"]
    assert get_version(client.ctx, "churn", alias="production").version == 1
    assert promotions.list_requests(client.ctx, name="churn", status="pending") == []

    # recorded on the version, as a document attached to it, and in the audit log
    [decision] = decisions_for(client.ctx, "churn", 2)
    assert not decision.blessed and decision.champion_version == 1 and decision.reasons == result.reasons
    check = next(c for c in decision.checks if c["name"] == "vs_champion:accuracy")
    assert (check["challenger"], check["champion"], check["tolerance"]) == (new, old, 0.01)
    from keel.service.version_artifacts import list_attached, read_attached

    [attached] = list_attached(client.ctx, "churn", 2, kind="gate")
    document = json.loads(read_attached(client.ctx, attached))
    assert document["scores"]["challenger"]["accuracy"] == new and document["evaluation_data"]["rows"] == 600
    [event] = client.audit_log(object_id="churn/2", action="gate.decision")
    details = json.loads(event.details) if isinstance(event.details, str) else event.details
    assert details["blessed"] is False and details["reasons"] == result.reasons


def test_a_better_challenger_gets_a_request_and_production_moves_only_on_anothers_approval(
        churn_project, settings, client, champion, bob):
    result = retrain("churn", str(churn_project / "new.csv"), settings=settings)  # holdout of the new data
    assert result.blessed, result.reasons
    assert result.scores["challenger"]["accuracy"] >= result.scores["champion"]["accuracy"]
    assert result.promotion_status == "pending"  # production is protected: it waits for an approver
    assert get_version(client.ctx, "churn", alias="production").version == 1

    with pytest.raises(PermissionDenied, match="four eyes"):
        promotions.approve(client.ctx, result.promotion_request_id, "my own")
    assert get_version(client.ctx, "churn", alias="production").version == 1
    promotions.approve(bob, result.promotion_request_id, "gate passed, numbers look right")
    assert get_version(client.ctx, "churn", alias="production").version == result.challenger == 2
    [decision] = decisions_for(client.ctx, "churn", 2)
    assert decision.blessed and decision.promotion_request_id == result.promotion_request_id

    # Lineage: the challenger comes from a replay of the champion's pipeline run, through its gate decision.
    from keel.service.lineage import build_graph

    graph = build_graph(client.ctx, "models:/churn/2")
    [gate] = graph.of_kind("gate")
    assert gate.attrs["blessed"] and gate.attrs["champion_version"] == 1
    replays = [e for e in graph.edges if e.kind == "replayed_as"]
    assert [e.target for e in replays] == [f"runs:/{result.pipeline_run_id}"]
    # ... and its model card shows the decision with its numbers.
    from keel.service.cards import build_card

    [shown] = build_card(client.ctx, "models:/churn/2")["gate"]["decisions"]
    assert shown["blessed"] and shown["champion_version"] == 1
    assert any(c["name"].startswith("tolerance") or "accuracy" in c["name"] for c in shown["checks"])


def test_an_unprotected_alias_whose_policy_allows_it_moves_at_once(churn_project, settings, client):
    run_file(churn_project / "pipe.py", {"data": str(churn_project / "weak.csv")}, settings=settings)
    result = retrain("churn", str(churn_project / "new.csv"), alias="staging",
                     spec=GateSpec(floors={"accuracy": 0.6}), settings=settings)
    assert result.champion is None and result.blessed
    assert [c["name"] for c in result.checks] == ["load_and_query", "floor:accuracy"]
    assert result.promotion_status == "approved"
    assert get_version(client.ctx, "churn", alias="staging").version == 2


def test_a_floor_the_challenger_misses_is_named_with_its_value(churn_project, settings, client):
    run_file(churn_project / "pipe.py", {"data": str(churn_project / "weak.csv")}, settings=settings)
    result = retrain("churn", str(churn_project / "noisy.csv"), eval_data=str(churn_project / "eval.csv"),
                     alias="staging", spec=GateSpec(floors={"accuracy": 0.9}), settings=settings)
    value = result.scores["challenger"]["accuracy"]
    assert result.reasons == [f"accuracy: challenger {value:.6g} is below the floor 0.9"]
    assert result.promotion_request_id is None


def test_keel_retrain_exits_3_with_the_reason_when_the_gate_stops_the_challenger(
        churn_project, keel_env, champion):
    from keel.testing.cli import run_cli as keel

    proc = keel(keel_env, "retrain", "churn", "--data", str(churn_project / "noisy.csv"), "--eval",
                str(churn_project / "eval.csv"), "--tolerance", "accuracy=0.01", check=False)
    assert proc.returncode == 3, proc.stderr
    assert "challenger models:/churn/2" in proc.stdout
    assert "not promoted: accuracy: challenger" in proc.stdout and "(tolerance 0.01)" in proc.stdout

    proc = keel(keel_env, "retrain", "churn", "--data", str(churn_project / "new.csv"), "--json")
    result = json.loads(proc.stdout)
    assert result["blessed"] and result["challenger"] == 3 and result["promotion_status"] == "pending"


def test_a_challenger_that_treats_groups_unequally_is_stopped_by_the_fairness_limits(
        churn_project, settings, client, champion):
    import pandas as pd

    # The evaluation data carries a sensitive column the model does not take: region 1 is where f0 is
    # high, and the model leans on f0, so it selects region 1 far more often.
    evaluation = pd.read_csv(churn_project / "eval.csv")
    evaluation["region"] = (evaluation["f0"] > 0).astype(int)
    evaluation.to_csv(churn_project / "eval-regions.csv", index=False)
    spec = GateSpec(sensitive="region", fairness={"max_parity_difference": 0.1})
    result = retrain("churn", str(churn_project / "new.csv"), eval_data=str(churn_project / "eval-regions.csv"),
                     spec=spec, settings=settings)
    assert not result.blessed and result.promotion_request_id is None
    [check] = [c for c in result.checks if c["name"] == "fairness:max_parity_difference"]
    assert not check["passed"] and check["value"] > 0.1
    assert any(r.startswith("demographic_parity_difference across region: challenger") for r in result.reasons)
    # Accuracy against the champion was still judged (the default tolerance applies).
    assert any(c["name"] == "vs_champion:accuracy" for c in result.checks)
    [decision] = decisions_for(client.ctx, "churn", result.challenger)
    assert not decision.blessed and decision.reasons == result.reasons


def test_a_champion_that_cannot_be_scored_is_not_beaten_by_default_and_the_decision_is_kept(
        churn_project, settings, client, champion):
    from pathlib import Path

    # The champion's stored manifest is damaged: it no longer loads (its hash no longer matches).
    blob = Path(client.ctx.blobs.path_of(get_version(client.ctx, "churn", 1).manifest_sha256))
    blob.write_bytes(blob.read_bytes() + b"# tampered\n")
    result = retrain("churn", str(churn_project / "new.csv"), settings=settings)
    assert not result.blessed and result.promotion_request_id is None
    [check] = [c for c in result.checks if c["name"] == "champion_scored"]
    assert not check["passed"] and "champion models:/churn/1 could not be scored" in check["detail"]
    [decision] = decisions_for(client.ctx, "churn", result.challenger)
    assert not decision.blessed and any("could not be scored" in r for r in decision.reasons)
