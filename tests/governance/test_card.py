"""Model cards: generated from the store, user fields, Markdown/HTML/JSON, diffs, the CLI."""

from __future__ import annotations

import copy
import json
import platform
import time
from html.parser import HTMLParser

import numpy as np
import pytest

import keel
from keel.errors import InvalidInput, NotFound, PermissionDenied
from keel.governance.card import diff_cards, render_diff, render_html, render_markdown, split_metrics
from keel.service import registry
from keel.service.cards import CARD_FIELDS, MAX_TEXT, build_card, update_card
from keel.service.context import Context
from keel.service.version_artifacts import attach
from keel.testing.cli import run_cli

pytestmark = pytest.mark.store

HOSTILE = '<script>alert("x")</script>'


@pytest.fixture
def data():
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=120, n_features=4, random_state=0)
    sex = np.where(np.arange(120) % 3 == 0, "female", "male")
    return X, y, sex


def _log(settings, data, *, C: float, accuracy: float, female: float) -> keel.Client:
    from sklearn.linear_model import LogisticRegression

    X, y, sex = data
    table = {"x0": [None, *X[1:, 0].tolist()], "x1": X[:, 1].tolist(), "sex": sex.tolist(), "label": y.tolist()}
    with keel.start_run("cards", settings=settings):
        keel.log_dataset(table, "customers")
        keel.log_params({"C": C, "solver": "lbfgs"})
        keel.log_metrics({"accuracy": accuracy, "accuracy/sex:female": female, "accuracy/sex:male": 0.9})
        info = keel.log_model(LogisticRegression(C=C).fit(X, y), "model", input_example=X[:3], register="churn")
    return info


@pytest.fixture
def ctx(settings, data) -> Context:
    """Two versions of "churn": C=1.0 (accuracy 0.9) and C=0.1 (accuracy 0.85)."""
    _log(settings, data, C=1.0, accuracy=0.9, female=0.8)
    _log(settings, data, C=0.1, accuracy=0.85, female=0.88)
    client = keel.Client(settings)
    yield client.ctx
    client.close()


def _explanation(model: str, created_at: int, importances: dict[str, float]) -> bytes:
    return json.dumps({
        "schema": "keel.explanation/1", "model": model, "created_at": created_at, "created_by": "alice",
        "data": {"rows": 120, "source": "holdout.parquet", "sha256": "ab" * 32}, "target": "label",
        "methods": ["permutation"],
        "global": [{"feature": f, "importance": v, "std": 0.01, "method": "permutation"}
                   for f, v in importances.items()],
        "score": {"name": "accuracy", "baseline": 0.9},
    }).encode()


def _tags(page: str) -> tuple[set[str], set[str]]:
    """The element names and attribute names of an HTML page."""
    tags: set[str] = set()
    attributes: set[str] = set()

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.add(tag)
            attributes.update(name for name, _ in attrs)

    Collect().feed(page)
    return tags, attributes


def test_card_names_data_params_metrics_and_environment(ctx, settings):
    import sklearn

    card = build_card(ctx, "models:/churn/1")
    assert card["schema"] == "keel.card/1"
    details = card["model_details"]
    assert (details["name"], details["version"], details["uri"]) == ("churn", 1, "models:/churn/1")
    assert details["owners"] == ["alice"]  # nobody wrote owners: the registry's owner
    version = registry.get_version(ctx, "churn", 1)
    assert details["manifest_sha256"] == version.manifest_sha256
    [logged] = keel.Client(settings).run_datasets(version.run_id)
    [dataset] = card["model_parameters"]["data"]
    assert (dataset["name"], dataset["digest"], dataset["rows"], dataset["context"]) == \
        ("customers", logged.digest, 120, "training")
    assert [c["name"] for c in dataset["schema"]] == ["x0", "x1", "sex", "label"]
    assert dataset["profile"]["x0"]["missing"] == 1
    assert dataset["profile"]["x1"]["min"] < dataset["profile"]["x1"]["max"]
    assert dataset["profile"]["sex"]["top_values"] == {"male": 80, "female": 40}
    params = card["model_parameters"]
    assert params["params"] == {"C": "1.0", "solver": "lbfgs"}
    assert params["format"] == "sklearn" and params["architecture"].endswith("LogisticRegression")
    assert params["input_format"] == [{"name": "input", "dtype": "float64", "shape": [-1, 4]}]
    assert card["quantitative_analysis"]["metrics"] == {
        "overall": {"accuracy": 0.9},
        "by_slice": {"sex": {"female": {"accuracy": 0.8}, "male": {"accuracy": 0.9}}}}
    env = card["environment"]
    assert env["python"] == platform.python_version()
    assert env["packages"]["scikit-learn"] == sklearn.__version__
    assert env["entry_point"] and "source_commit" in env and "source_dirty" in env
    # Before any monitor or retrain: each section says what would fill it.
    assert card["fairness"]["status"] == "not yet available" and "--sensitive" in card["fairness"]["note"]
    assert card["monitoring"]["status"] == "not yet available" and "keel monitor create" in card["monitoring"]["note"]
    assert card["gate"]["status"] == "not yet available" and "keel retrain" in card["gate"]["note"]
    assert card["explanation"] is None and card["approvals"] == [] and card["aliases"] == []
    json.dumps(card, allow_nan=False)  # strict JSON

    md = render_markdown(card)
    for text in (logged.digest, "| C | 1.0 |", "| accuracy | 0.9 |", "| sex | female | accuracy | 0.8 |",
                 f"Python | {platform.python_version()}", "not yet available", "scikit-learn"):
        assert text in md, text
    page = render_html(card)
    assert logged.digest in page and "<td>female</td>" in page


def test_user_fields_model_level_and_version_override(ctx, settings):
    update_card(ctx, "churn", overview="Predicts churn of retail customers.",
                limitations=["Trained on 2023 data only.", "Not for B2B accounts."], owners=["team-growth"])
    update_card(ctx, "churn", 2, overview="Version 2: a stronger regularisation.", licenses="Apache-2.0")
    one, two = build_card(ctx, "models:/churn/1"), build_card(ctx, "models:/churn/2")
    assert one["model_details"]["overview"] == "Predicts churn of retail customers."
    assert one["model_details"]["licenses"] is None
    assert two["model_details"]["overview"] == "Version 2: a stronger regularisation."
    assert two["model_details"]["licenses"] == "Apache-2.0"
    assert two["model_details"]["owners"] == ["team-growth"]
    assert two["considerations"]["limitations"] == ["Trained on 2023 data only.", "Not for B2B accounts."]
    assert two["record"]["field_origin"] == {"licenses": "version", "limitations": "model", "overview": "version",
                                             "owners": "model"}
    assert two["record"]["version_fields"]["updated_by"] == "alice"
    assert "- Not for B2B accounts." in render_markdown(two)

    assert update_card(ctx, "churn", 2, overview=None) == {"licenses": "Apache-2.0"}  # None removes
    assert build_card(ctx, "models:/churn/2")["model_details"]["overview"] == "Predicts churn of retail customers."

    events = [e for e in keel.Client(settings).audit_log(action="model.card.update")]
    assert [(e.object_type, e.object_id) for e in events] == [
        ("model", "churn"), ("model_version", "churn/2"), ("model_version", "churn/2")]
    assert json.loads(events[1].details) == {
        "set": {"overview": "Version 2: a stronger regularisation.", "licenses": "Apache-2.0"}, "removed": []}
    assert json.loads(events[2].details) == {"set": {}, "removed": ["overview"]}
    assert keel.Client(settings).verify_audit().ok


def test_bad_fields_are_refused_with_a_clear_error(ctx, settings):
    before = keel.Client(settings).audit_log(action="model.card.update")
    with pytest.raises(InvalidInput, match=r"unknown model card field\(s\) 'purpose'; the fields you can write "
                                           r"are: overview, documentation"):
        update_card(ctx, "churn", purpose="x")
    with pytest.raises(InvalidInput, match="card field 'limitations' must be text or a list of texts"):
        update_card(ctx, "churn", limitations=3)
    with pytest.raises(InvalidInput, match="list items must be text"):
        update_card(ctx, "churn", users=["analysts", 7])
    with pytest.raises(InvalidInput, match=f"at most {MAX_TEXT} allowed"):
        update_card(ctx, "churn", overview="x" * (MAX_TEXT + 1))
    with pytest.raises(InvalidInput, match="the card fields of churn/1 would take"):
        update_card(ctx, "churn", 1, **{f: "x" * (MAX_TEXT - 10) for f in CARD_FIELDS})
    with pytest.raises(InvalidInput, match="give at least one card field"):
        update_card(ctx, "churn")
    with pytest.raises(NotFound, match="model 'churn' has no version 9"):
        update_card(ctx, "churn", 9, overview="x")
    with pytest.raises(NotFound, match="registered model 'nope' does not exist"):
        update_card(ctx, "nope", overview="x")
    assert keel.Client(settings).audit_log(action="model.card.update") == before == []  # nothing was written


def test_a_viewer_cannot_write_a_card(ctx, settings):
    from keel.service.users import add_user

    add_user(ctx, "alice", "admin")
    add_user(ctx, "victor", "viewer")
    viewer = Context(settings, ctx.store, "victor")
    assert build_card(viewer, "models:/churn/1")["model_details"]["name"] == "churn"  # reading is allowed
    with pytest.raises(PermissionDenied):
        update_card(viewer, "churn", overview="mine now")
    assert build_card(ctx, "models:/churn/1")["model_details"]["overview"] is None


def test_newest_attached_explanation_is_on_the_card(ctx):
    attach(ctx, "churn", 1, "explanations/old.json", _explanation("models:/churn/1", 1, {"x9": 1.0}),
           kind="explanation")
    time.sleep(0.01)
    attach(ctx, "churn", 1, "explanations/new.json",
           _explanation("models:/churn/1", 1700000000000, {"x1": 0.05, "x0": 0.2, "x3": -0.01}), kind="explanation")
    ex = build_card(ctx, "models:/churn/1")["explanation"]
    assert ex["path"] == "explanations/new.json" and ex["created_at"] == "2023-11-14T22:13:20Z"
    assert [f["feature"] for f in ex["top_features"]] == ["x0", "x1", "x3"]
    assert ex["methods"] == ["permutation"] and ex["score"] == {"name": "accuracy", "baseline": 0.9}
    assert build_card(ctx, "models:/churn/2")["explanation"] is None
    md = render_markdown(build_card(ctx, "models:/churn/1"))
    assert "| x0 | 0.2 | 0.01 | permutation |" in md and "x9" not in md


def test_html_is_self_contained_and_escapes_hostile_text(ctx):
    update_card(ctx, "churn", 1, overview=HOSTILE, limitations=["<img src=x onerror=alert(1)>", "a | b"],
                contact='"><iframe src=//evil>')
    card = build_card(ctx, "models:/churn/1")
    page = render_html(card)
    assert "<script" not in page and "<img" not in page and "<iframe" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    tags, attributes = _tags(page)
    assert tags <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "section", "p", "ul", "li",
                    "table", "tr", "th", "td", "pre"}, tags
    assert attributes <= {"lang", "charset", "name", "content", "class"}, attributes  # no src, href, on*
    assert "url(" not in page and "@import" not in page  # nothing to fetch
    md = render_markdown(card)
    assert "<script" not in md and "&lt;script&gt;" in md
    assert '| Contact | "&gt;&lt;iframe src=//evil&gt; |' in md
    assert len(page) < 40_000


def test_diff_between_versions_names_changed_params_metrics_and_fields(ctx):
    update_card(ctx, "churn", 2, limitations=["Weaker on small accounts."])
    one, two = build_card(ctx, "models:/churn/1"), build_card(ctx, "models:/churn/2")
    changes = {c["path"]: c for c in diff_cards(one, two)}
    assert changes["model_parameters.params.C"] == {
        "path": "model_parameters.params.C", "change": "changed", "before": "1.0", "after": "0.1"}
    assert (changes["quantitative_analysis.metrics.overall.accuracy"]["before"],
            changes["quantitative_analysis.metrics.overall.accuracy"]["after"]) == (0.9, 0.85)
    assert changes["quantitative_analysis.metrics.by_slice.sex.female.accuracy"]["after"] == 0.88
    assert changes["considerations.limitations"] == {
        "path": "considerations.limitations", "change": "added", "before": None,
        "after": ["Weaker on small accounts."]}
    assert changes["model_details.version"]["after"] == 2
    assert "model_parameters.params.solver" not in changes
    assert "quantitative_analysis.metrics.by_slice.sex.male.accuracy" not in changes
    assert not any(p.startswith("model_parameters.data") for p in changes)  # same data, same digest
    assert diff_cards(one, build_card(ctx, "models:/churn/1")) == []  # the generation time is not a change
    text = render_diff(diff_cards(one, two), "models:/churn/1", "models:/churn/2")
    assert '~ model_parameters.params.C: "1.0" -> "0.1"' in text
    assert '+ considerations.limitations: ["Weaker on small accounts."]' in text


def test_diff_keys_named_records():
    a = {"model_parameters": {"data": [{"name": "train", "digest": "sha256:1"}, {"name": "eval", "digest": "e"}]},
         "approvals": [], "generated_at": "then"}
    b = {"model_parameters": {"data": [{"name": "eval", "digest": "e"}, {"name": "train", "digest": "sha256:2"}]},
         "approvals": [{"id": "r1", "status": "pending"}], "generated_at": "now"}
    assert diff_cards(a, b) == [
        {"path": "model_parameters.data[train].digest", "change": "changed", "before": "sha256:1",
         "after": "sha256:2"},
        {"path": "approvals", "change": "changed", "before": [], "after": [{"id": "r1", "status": "pending"}]}]


def test_split_metrics_slice_convention():
    assert split_metrics({"loss": 0.3, "val/loss": 0.4, "accuracy/sex:female": 0.8, "train/acc/sex:male": 0.7,
                          "recall/region:north/east": 0.5, "odd/col:": 1.0}) == {
        "overall": {"loss": 0.3, "odd/col:": 1.0, "val/loss": 0.4},
        "by_slice": {"sex": {"female": {"accuracy": 0.8}, "male": {"train/acc": 0.7}},
                     "region": {"north/east": {"recall": 0.5}}}}


def test_approvals_history_renders_who_approved_what_on_which_evidence(ctx):
    # The promotion service is written separately; this renders a card dict with a request in it.
    card = copy.deepcopy(build_card(ctx, "models:/churn/1"))
    card["approvals"] = [{
        "id": "0f" * 16, "alias": "production", "status": "approved", "requester": "alice",
        "requested_at": "2026-01-02T10:00:00Z", "comment": "Q1 refresh", "checks_passed": True,
        "checks": [{"name": "metric_floor:accuracy", "passed": True, "detail": "0.9 >= 0.8",
                    "evidence": {"metric": "accuracy", "value": 0.9, "floor": 0.8}}],
        "decided_by": "bob", "decided_at": "2026-01-03T09:30:00Z", "reason": f"Looks good {HOSTILE}",
        "decision_checks": [{"name": "model_card", "passed": True, "detail": "overview written", "evidence": {}}],
        "previous_version": None}]
    md = render_markdown(card)
    for text in ("### production: approved", "2026-01-02T10:00:00Z by alice", "2026-01-03T09:30:00Z by bob",
                 "| metric_floor:accuracy | yes | 0.9 &gt;= 0.8 |", '"floor": 0.8', "| model_card | yes |",
                 "Q1 refresh"):
        assert text in md, text
    page = render_html(card)
    assert "Looks good &lt;script&gt;" in page and "<script" not in page


def test_cli_shows_writes_and_diffs_cards(ctx, keel_env, tmp_path):
    registry.set_alias(ctx, "churn", "champion", 2)
    shown = run_cli(keel_env, "card", "models:/churn@champion")
    assert shown.stdout.startswith("# Model card: churn version 2") and "| C | 0.1 |" in shown.stdout

    run_cli(keel_env, "card", "models:/churn/2", "--set", "limitations=Slow on cold start.",
            "--set", "limitations=Needs 4 features.", "--set", f"overview={HOSTILE}", "--model-level")
    written = run_cli(keel_env, "card", "models:/churn/1", "--set", "licenses=MIT", "--format", "json")
    card = json.loads(written.stdout)
    assert card["considerations"]["limitations"] == ["Slow on cold start.", "Needs 4 features."]  # model level
    assert card["model_details"]["overview"] == HOSTILE and card["model_details"]["licenses"] == "MIT"
    assert build_card(ctx, "models:/churn/2")["model_details"]["licenses"] is None  # version 1 only

    target = tmp_path / "card.html"
    run_cli(keel_env, "card", "models:/churn/1", "--format", "html", "--out", str(target))
    page = target.read_text()
    assert page.startswith("<!DOCTYPE html>") and "&lt;script&gt;" in page and "<script" not in page

    diff = run_cli(keel_env, "card", "models:/churn/1", "--diff", "models:/churn@champion")
    assert '~ model_parameters.params.C: "1.0" -> "0.1"' in diff.stdout
    assert "- model_details.licenses" in diff.stdout
    as_json = json.loads(run_cli(keel_env, "card", "models:/churn/1", "--diff", "models:/churn/2",
                                 "--format", "json").stdout)
    assert as_json["to"] == "models:/churn/2"
    assert "quantitative_analysis.metrics.overall.accuracy" in {c["path"] for c in as_json["changes"]}

    bad = run_cli(keel_env, "card", "models:/churn/1", "--set", "purpose=x", check=False)
    assert bad.returncode == 1 and "unknown model card field(s) 'purpose'" in bad.stderr
    assert all(f in bad.stderr for f in CARD_FIELDS)
    bad = run_cli(keel_env, "card", "models:/churn/1", "--set", "overview", check=False)
    assert bad.returncode == 1 and "--set takes FIELD=TEXT" in bad.stderr
    bad = run_cli(keel_env, "card", "models:/churn/1", "--format", "pdf", check=False)
    assert bad.returncode == 1 and "--format must be one of md, html, json" in bad.stderr


def test_card_lists_its_aliases(ctx):
    registry.set_alias(ctx, "churn", "staging", 1)
    card = build_card(ctx, "models:/churn@staging")
    assert card["aliases"] == ["staging"] and card["model_details"]["version"] == 1


def test_approvals_history_comes_from_promotion_requests(ctx, settings):
    from keel.service import promotions

    update_card(ctx, "churn", overview="Predicts churn.")
    promotions.request_promotion(ctx, "churn", 1, "staging", comment="try it")  # policy approves it on its own
    request = promotions.request_promotion(ctx, "churn", 1, "production", comment="Q1 refresh")
    promotions.approve(Context(settings, ctx.store, "bob"), request.id, reason="AUC holds on the holdout")
    card = build_card(ctx, "models:/churn/1")
    assert [(a["alias"], a["status"], a["requester"], a["decided_by"]) for a in card["approvals"]] == [
        ("staging", "approved", "alice", "policy"), ("production", "approved", "alice", "bob")]
    production = card["approvals"][1]
    assert (production["id"], production["comment"], production["reason"]) == (
        request.id, "Q1 refresh", "AUC holds on the holdout")
    assert production["decided_at"] >= production["requested_at"]
    checks = {c["name"]: c for c in production["decision_checks"]}
    assert {"bundle_integrity", "model_card", "reference_dataset"} <= set(checks)
    digest = card["model_parameters"]["data"][0]["digest"]
    assert checks["reference_dataset"]["passed"] and checks["reference_dataset"]["evidence"]["datasets"][0][
        "digest"] == digest
    assert card["aliases"] == ["production", "staging"]
    md = render_markdown(card)
    assert "### production: approved" in md and "by bob" in md and "AUC holds on the holdout" in md
    assert digest[:19] in md  # the evidence of the reference_dataset check
    assert build_card(ctx, "models:/churn/2")["approvals"] == []
