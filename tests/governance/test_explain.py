"""Explanations: permutation importance, tree SHAP, substitution; stored with the version; `keel explain`."""

from __future__ import annotations

import hashlib
import json

import catboost
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

import keel
from keel.errors import InvalidInput
from keel.governance import explain as core
from keel.service.explanations import explain_rows, explain_version, explanation_path, latest_explanation
from keel.service.registry import set_alias
from keel.service.version_artifacts import list_attached
from keel.testing.cli import run_cli

store = pytest.mark.store
SIGNAL, NOISE = ["a", "b"], ["noise1", "noise2", "noise3"]


def _frame(n: int = 600, seed: int = 0, *, classes: int = 2) -> pd.DataFrame:
    """Two features carry the signal (``a`` twice as much as ``b``); three are noise."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({name: rng.normal(size=n) for name in SIGNAL + NOISE})
    score = 2 * df["a"] - df["b"] + 0.1 * rng.normal(size=n)
    df["y"] = (score > 0).astype(int) if classes == 2 else np.digitize(score, [-1.0, 1.0])
    return df


def _columns(df: pd.DataFrame) -> core.Columns:
    return {c: df[c].to_numpy() for c in SIGNAL + NOISE}


def _linear(c: core.Columns) -> np.ndarray:
    return 3.0 * c["a"] - 2.0 * c["b"]


def _by_method(doc: dict, method: str) -> list[dict]:
    return [g for g in doc["global"] if g["method"] == method]


# --- the pure core ------------------------------------------------------------

def test_permutation_with_labels_ranks_signal_first_and_noise_at_zero():
    df = _frame()
    fns = core.ModelFunctions(_linear)
    result = core.permutation_importance(fns, _columns(df), _linear(_columns(df)), n_repeats=4, seed=1)
    assert (result.measure, result.baseline) == ("r2", 1.0)
    by = {i.feature: i for i in result.importances}
    assert by["a"].importance > by["b"].importance > 0.5
    assert all(by[f].importance == 0.0 and by[f].std == 0.0 for f in NOISE)  # the model never reads them
    assert {i.method for i in result.importances} == {"permutation"}
    again = core.permutation_importance(fns, _columns(df), _linear(_columns(df)), n_repeats=4, seed=1)
    assert again == result  # seeded: reproducible
    mse = core.permutation_importance(fns, _columns(df), _linear(_columns(df)), scoring="neg_mean_squared_error")
    assert mse.measure == "neg_mean_squared_error" and mse.baseline == 0.0


def test_permutation_without_labels_measures_output_change():
    df = _frame()
    cols = _columns(df)
    model = LogisticRegression().fit(df[SIGNAL + NOISE].to_numpy(), df["y"])

    def stack(c: core.Columns) -> np.ndarray:
        return np.column_stack(list(c.values()))

    proba = core.permutation_importance(core.ModelFunctions(lambda c: model.predict(stack(c)),
                                                            lambda c: model.predict_proba(stack(c))), cols)
    labels = core.permutation_importance(core.ModelFunctions(lambda c: np.where(_linear(c) > 0, "yes", "no")), cols)
    values = core.permutation_importance(core.ModelFunctions(_linear), cols)
    assert [r.measure for r in (proba, labels, values)] == ["probability_change", "label_change_rate",
                                                             "prediction_change"]
    for result in (proba, labels, values):
        ranked = [i.feature for i in sorted(result.importances, key=lambda i: -i.importance)]
        assert ranked[:2] == ["a", "b"] and result.baseline is None
    assert all(0 <= i.importance <= 1 for i in labels.importances)
    assert max(i.importance for i in proba.importances if i.feature in NOISE) < 0.02
    # prediction_change is E|3(a - a')| for a shuffled copy a' of a: 3 * E|a - a'| = 3 * 2/sqrt(pi) for N(0, 1)
    assert next(i.importance for i in values.importances if i.feature == "a") == pytest.approx(3.39, rel=0.1)


def test_core_refuses_bad_input():
    cols = _columns(_frame(20))
    fns = core.ModelFunctions(_linear)
    with pytest.raises(InvalidInput, match="unknown scoring 'f1'; choose one of accuracy"):
        core.permutation_importance(fns, cols, _linear(cols), scoring="f1")
    with pytest.raises(InvalidInput, match="scoring='r2' needs labels"):
        core.permutation_importance(fns, cols, scoring="r2")
    with pytest.raises(InvalidInput, match="at least one row"):
        core.permutation_importance(fns, {c: v[:0] for c, v in cols.items()})
    with pytest.raises(InvalidInput, match="n_repeats must be at least 1"):
        core.permutation_importance(fns, cols, n_repeats=0)
    with pytest.raises(InvalidInput, match="max_rows must be at least 1"):
        core.sample_rows(10, 0, 0)
    rows = core.sample_rows(100, 7, 3)
    assert len(set(rows)) == 7 and list(rows) == sorted(rows) and list(rows) == list(core.sample_rows(100, 7, 3))


def test_substitution_is_output_minus_output_at_the_typical_value():
    df = _frame(50)
    cols = _columns(df)
    result = core.substitution(core.ModelFunctions(_linear), cols, cols).rows()
    values = np.array(result["values"])
    assert result["method"] == "substitution" and result["output"] == "prediction"
    np.testing.assert_allclose(values[:, 0], 3.0 * (df["a"] - df["a"].mean()))
    np.testing.assert_allclose(values[:, 1], -2.0 * (df["b"] - df["b"].mean()))
    np.testing.assert_allclose(values[:, 2:], 0.0)
    np.testing.assert_allclose(result["outputs"], _linear(cols))
    labels = core.substitution(core.ModelFunctions(lambda c: np.where(c["a"] > 0, "yes", "no")), cols, cols).rows()
    assert labels["output"] == "label_changed"
    changed = np.array(labels["values"])[:, 0]
    np.testing.assert_array_equal(changed, (np.sign(df["a"]) != np.sign(df["a"].mean())).astype(float))


@pytest.mark.parametrize("classes", [2, 3])
def test_tree_shap_of_boosters_adds_up_to_the_raw_margin(classes):
    df = _frame(classes=classes)
    X, y = df[SIGNAL + NOISE], df["y"]
    features = list(X.columns)
    boosted = xgb.XGBClassifier(n_estimators=20).fit(X, y)
    margin_xgb = boosted.get_booster().predict(xgb.DMatrix(X), output_margin=True)
    light = lgb.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, y)
    margin_lgb = light.booster_.predict(X, raw_score=True)
    cat = catboost.CatBoostClassifier(iterations=20, verbose=0).fit(X, y)
    margin_cat = cat.predict(X, prediction_type="RawFormulaVal")
    for model, margin in ((boosted, margin_xgb), (light.booster_, margin_lgb), (cat, margin_cat)):
        shap = core.tree_shap(model, X, features)
        assert shap.method == "tree_shap" and shap.values.shape == (len(X), 1 if classes == 2 else 3, 5)
        margin = np.asarray(margin, dtype=float).reshape(len(X), -1)
        np.testing.assert_allclose(shap.base + shap.values.sum(axis=2), margin, atol=1e-4)
        ranked = sorted(shap.global_importance(), key=lambda i: -i.importance)
        assert [i.feature for i in ranked[:2]] == ["a", "b"], type(model)
        assert max(i.importance for i in ranked if i.feature in NOISE) < 0.25 * ranked[0].importance


def test_tree_shap_for_sklearn_trees_and_none_for_other_models():
    df = _frame()
    X = df[SIGNAL + NOISE].to_numpy()
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, df["y"])
    shap = core.tree_shap(forest, X[:40], SIGNAL + NOISE)
    assert shap.output == "probability"
    np.testing.assert_allclose(shap.base + shap.values.sum(axis=2), forest.predict_proba(X[:40]), atol=1e-6)
    assert core.tree_shap(LogisticRegression().fit(X, df["y"]), X, SIGNAL + NOISE) is None


# --- stored with the version, through the service and the CLI --------------------

def _register(settings, model, example, name="churn") -> str:
    with keel.start_run("explain", settings=settings):
        return keel.log_model(model, "model", input_example=example, register=name).registered


@pytest.fixture
def xgb_version(settings, tmp_path):
    df = _frame()
    model = xgb.XGBClassifier(n_estimators=30).fit(df[SIGNAL + NOISE], df["y"])
    uri = _register(settings, model, df[SIGNAL + NOISE][:3])
    df.assign(id=range(len(df))).to_csv(tmp_path / "data.csv", index=False)  # an extra column is ignored
    return uri, model, tmp_path / "data.csv"


@store
def test_explain_version_stores_a_document_readable_back(settings, xgb_version):
    uri, model, path = xgb_version
    client = keel.Client(settings)
    set_alias(client.ctx, "churn", "candidate", 1)
    doc = explain_version(client.ctx, "models:/churn@candidate", path, target="y", max_rows=500, n_repeats=3)
    assert set(doc) >= {"schema", "model", "created_at", "created_by", "data", "target", "methods", "global", "score"}
    assert (doc["schema"], doc["model"], doc["created_by"], doc["target"]) == (
        "keel.explanation/1", "models:/churn/1", "alice", "y")
    assert doc["data"] == {"rows": 500, "total_rows": 600, "source": str(path),
                           "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert doc["methods"] == ["permutation", "tree_shap"]
    assert doc["score"]["name"] == "accuracy" and doc["score"]["baseline"] > 0.9
    importances = [g["importance"] for g in doc["global"]]
    assert importances == sorted(importances, reverse=True)
    for method in doc["methods"]:
        ranked = _by_method(doc, method)
        assert [g["feature"] for g in ranked[:2]] == ["a", "b"] and len(ranked) == 5
        assert all((g["std"] is None) == (method == "tree_shap") for g in ranked)
    assert max(g["importance"] for g in _by_method(doc, "permutation") if g["feature"] in NOISE) < 0.02

    assert latest_explanation(client.ctx, "churn", 1) == doc
    [item] = list_attached(client.ctx, "churn", 1)
    assert (item.kind, item.path) == ("explanation", explanation_path(doc["created_at"]))
    assert item.path.startswith("explanations/") and item.path.endswith("Z.json")
    [event] = client.audit_log(action="model.version.artifact")
    assert json.loads(event.details)["path"] == item.path and event.object_id == "churn/1"

    unstored = explain_version(client.ctx, "models:/churn/1", path, store=False)
    assert unstored["score"] is None and unstored["params"]["measure"] == "probability_change"
    assert len(list_attached(client.ctx, "churn", 1)) == 1


@store
def test_explain_without_target_on_a_non_tree_model(settings):
    df = _frame()
    model = LogisticRegression().fit(df[SIGNAL + NOISE].to_numpy(), df["y"])
    uri = _register(settings, model, df[SIGNAL + NOISE].to_numpy()[:3], name="logit")  # unnamed tensor input
    ctx = keel.Client(settings).ctx
    assert latest_explanation(ctx, "logit", 1) is None
    doc = explain_version(ctx, uri, df[SIGNAL + NOISE])
    assert doc["methods"] == ["permutation"] and doc["score"] is None and doc["target"] is None
    assert doc["data"]["source"] == "dataframe" and doc["data"]["sha256"] is None
    assert [g["feature"] for g in doc["global"][:2]] == ["a", "b"]
    assert latest_explanation(ctx, "logit", 1)["created_at"] == doc["created_at"]
    rows = explain_rows(uri, df[SIGNAL + NOISE][:20], background=df[SIGNAL + NOISE], settings=settings)
    assert rows["method"] == "substitution" and rows["output"] == "probability" and rows["class_index"] == 1
    np.testing.assert_allclose(rows["outputs"], model.predict_proba(df[SIGNAL + NOISE].to_numpy()[:20])[:, 1])
    assert np.abs(rows["values"]).mean(axis=0).argmax() == 0  # feature "a" moves the probability most
    with pytest.raises(InvalidInput, match=r"background lacks the feature column\(s\) 'b'"):
        explain_rows(uri, df[SIGNAL + NOISE][:2], background=df[["a", "noise1"]], settings=settings)
    with pytest.raises(InvalidInput, match="one row of a non-tree model needs background="):
        explain_rows(uri, df[SIGNAL + NOISE][:1], settings=settings)


@store
def test_explain_rows_of_registered_boosters_add_up_to_their_margin(settings, xgb_version):
    uri, model, _ = xgb_version
    df = _frame(seed=5)[:30]
    rows = explain_rows(uri, df[SIGNAL + NOISE], settings=settings)
    assert rows["method"] == "tree_shap" and rows["features"] == SIGNAL + NOISE and rows["class_index"] is None
    margin = model.get_booster().predict(xgb.DMatrix(df[SIGNAL + NOISE]), output_margin=True)
    np.testing.assert_allclose(rows["base_value"] + np.sum(rows["values"], axis=1), margin, atol=1e-4)
    light = lgb.LGBMRegressor(n_estimators=30, verbose=-1).fit(_frame()[SIGNAL + NOISE], _frame()["y"])
    light_uri = _register(settings, light, _frame()[SIGNAL + NOISE][:3], name="light")
    rows = explain_rows(keel.load_model(light_uri, settings=settings), df[SIGNAL + NOISE])
    np.testing.assert_allclose(rows["base_value"] + np.sum(rows["values"], axis=1),
                               light.booster_.predict(df[SIGNAL + NOISE], raw_score=True), atol=1e-6)


@store
def test_bad_input_gets_clear_errors(settings, xgb_version, tmp_path):
    uri, _, path = xgb_version
    ctx = keel.Client(settings).ctx
    with pytest.raises(InvalidInput, match=r"target column 'label' is not in .*data.csv; its columns are: a, b"):
        explain_version(ctx, uri, path, target="label")
    pd.read_csv(path).drop(columns=["b", "noise3"]).to_csv(tmp_path / "partial.csv", index=False)
    with pytest.raises(InvalidInput, match=r"lacks the model's feature column\(s\) 'b', 'noise3'"):
        explain_version(ctx, uri, tmp_path / "partial.csv", target="y")
    pd.read_csv(path)[:0].to_csv(tmp_path / "empty.csv", index=False)
    with pytest.raises(InvalidInput, match="empty.csv has no rows"):
        explain_version(ctx, uri, tmp_path / "empty.csv")
    with pytest.raises(InvalidInput, match="data file .*missing.csv does not exist"):
        explain_version(ctx, uri, tmp_path / "missing.csv")
    with pytest.raises(InvalidInput, match="target 'a' is one of the model's features"):
        explain_version(ctx, uri, path, target="a")
    assert list_attached(ctx, "churn", 1) == []


@store
def test_cli_explain(keel_env, xgb_version):
    uri, _, path = xgb_version
    shown = run_cli(keel_env, "explain", uri, str(path), "--target", "y", "--repeats", "2", "--top", "3")
    lines = shown.stdout.splitlines()
    assert "permutation: drop in accuracy" in shown.stdout and "tree SHAP: mean |SHAP value|" in shown.stdout
    first = next(i for i, line in enumerate(lines) if "drop in accuracy" in line)
    assert "a" in lines[first + 4].split() and "b" in lines[first + 5].split()
    assert "... 2 more (--top)" in shown.stdout
    assert "stored with models:/churn/1 as explanations/" in lines[-1]
    printed = json.loads(run_cli(keel_env, "explain", uri, str(path), "--no-store", "--json").stdout)
    assert printed["schema"] == "keel.explanation/1" and printed["score"] is None
    failed = run_cli(keel_env, "explain", uri, str(path), "--target", "nope", check=False)
    assert failed.returncode == 1 and "error: target column 'nope' is not in" in failed.stderr
    stored = json.loads(run_cli(keel_env, "explain", uri, str(path), "--target", "y", "--json").stdout)
    assert stored["model"] == "models:/churn/1" and stored["created_by"] == "alice"
