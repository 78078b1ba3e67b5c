"""Performance metrics: agree with scikit-learn on random inputs, and say why when a metric is undefined."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest
from sklearn import metrics as skm

from keel.errors import InvalidInput
from keel.monitoring.drift import detect_drift
from keel.monitoring.performance import binary_roc_auc, compare_performance, evaluate_performance


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("seed", range(6))
def test_binary_agrees_with_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    y = rng.integers(0, 2, n)
    # Rounded scores: many ties, which AUC must count as half.
    s = np.round(np.clip(rng.random(n) * 0.7 + y * rng.uniform(0, 0.4), 0, 1), int(rng.integers(1, 4)))
    pred = (s > rng.uniform(0.3, 0.7)).astype(int)
    r = evaluate_performance(y, pred, scores=s)
    assert (r.task, r.average, r.pos_label, r.rows) == ("binary", "binary", 1, n)
    m = r.metrics
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred), abs=1e-12)
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred), abs=1e-12)
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, s), abs=1e-12)
    # Two probability columns give the same as the positive class's column.
    two = evaluate_performance(y, pred, scores=np.column_stack([1 - s, s])).metrics
    assert two["roc_auc"] == pytest.approx(m["roc_auc"], abs=1e-12)
    assert two["log_loss"] == pytest.approx(m["log_loss"], abs=1e-9)


def test_binary_text_labels_and_pos_label() -> None:
    rng = np.random.default_rng(7)
    n = 800
    y = np.where(rng.random(n) < 0.3, "fraud", "ok")
    s = np.clip(rng.random(n) * 0.8 + (y == "fraud") * 0.3, 0, 1)
    pred = np.where(s > 0.5, "fraud", "ok")
    r = evaluate_performance(y, pred, scores=s, pos_label="fraud")
    assert r.pos_label == "fraud" and r.labels == ["fraud", "ok"]
    assert r.metrics["precision"] == pytest.approx(skm.precision_score(y, pred, pos_label="fraud"))
    assert r.metrics["recall"] == pytest.approx(skm.recall_score(y, pred, pos_label="fraud"))
    assert r.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(y == "fraud", s))
    # Without pos_label the last class in sorted order is positive ("ok"); the result says so.
    assert evaluate_performance(y, pred).pos_label == "ok"


@pytest.mark.parametrize("seed", range(5))
def test_multiclass_agrees_with_sklearn(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    k = int(rng.integers(3, 8))
    n = int(rng.integers(300, 4000))
    y = rng.integers(0, k, n)
    proba = _softmax(rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y])
    pred = proba.argmax(axis=1)
    pred[rng.random(n) < 0.05] = 0  # some noise, so no class is perfect
    r = evaluate_performance(y, pred, scores=proba)
    assert (r.task, r.average) == ("multiclass", "macro")
    m = r.metrics
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro", zero_division=0), abs=1e-12)
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred, average="macro", zero_division=0), abs=1e-12)
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0), abs=1e-12)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"), abs=1e-12)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba), abs=1e-12)
    per_class_auc = skm.roc_auc_score(y, proba, multi_class="ovr", average=None)
    assert [c["roc_auc"] for c in r.per_class] == pytest.approx(list(per_class_auc), abs=1e-12)
    assert [c["support"] for c in r.per_class] == list(np.bincount(y, minlength=k))


def test_multiclass_text_labels_in_model_order() -> None:
    # The model's classes in its own order (not sorted): score columns follow `labels`.
    rng = np.random.default_rng(3)
    n, labels = 1500, ["dog", "cat", "bird"]
    y = np.array(labels)[rng.integers(0, 3, n)]
    proba = _softmax(rng.normal(size=(n, 3)) + np.column_stack([y == c for c in labels]))
    pred = np.array(labels)[proba.argmax(axis=1)]
    r = evaluate_performance(y, pred, scores=proba, labels=labels)
    assert r.labels == labels and r.unseen_labels == []
    order = [labels.index(c) for c in sorted(labels)]  # sklearn wants sorted columns
    assert r.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba[:, order], multi_class="ovr"))
    assert r.metrics["log_loss"] == pytest.approx(skm.log_loss(y, proba[:, order]))
    assert r.metrics["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))


@pytest.mark.parametrize("seed", range(4))
def test_regression_agrees_with_sklearn(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    n = int(rng.integers(20, 5000))
    y = rng.lognormal(size=n) * rng.choice([-1, 1], n)  # no zero target: MAPE as sklearn's
    f = y + rng.normal(size=n) * rng.uniform(0.1, 2)
    r = evaluate_performance(y, f)
    assert r.task == "regression" and r.notes == {}
    m = r.metrics
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, f), rel=1e-12)
    assert m["rmse"] == pytest.approx(skm.root_mean_squared_error(y, f), rel=1e-12)
    assert m["r2"] == pytest.approx(skm.r2_score(y, f), rel=1e-12)
    assert m["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y, f), rel=1e-12)


def test_auc_formula_on_a_small_example() -> None:
    # Positives score 0.8, 0.4; negatives 0.4, 0.1: pairs (win, tie, win, win) = 3.5 of 4.
    assert binary_roc_auc(np.array([True, True, False, False]), np.array([0.8, 0.4, 0.4, 0.1])) == 0.875
    assert binary_roc_auc(np.array([True, True]), np.array([0.1, 0.2])) is None


def test_empty_and_mismatched_inputs_are_clear_errors() -> None:
    with pytest.raises(InvalidInput, match="No row has both a label and a prediction"):
        evaluate_performance([], [])
    with pytest.raises(InvalidInput, match="3 without a label"):
        evaluate_performance([None, None, np.nan], [1, 0, 1])
    with pytest.raises(InvalidInput, match="same length"):
        evaluate_performance([1, 0], [1, 0, 1])
    with pytest.raises(InvalidInput, match="task must be one of"):
        evaluate_performance([1, 0], [1, 0], task="ranking")
    with pytest.raises(InvalidInput, match="y_true must be a 1-D array of labels or numbers of one type"):
        evaluate_performance(np.array([1, "a"], dtype=object), ["a", "a"])
    with pytest.raises(InvalidInput, match=r"y_true and y_pred mix label types \(int, str\)"):
        evaluate_performance([1, 2], ["a", "a"])
    with pytest.raises(InvalidInput, match="labels hold numbers but y_true and y_pred hold text"):
        evaluate_performance(["a", "b"], ["a", "a"], labels=[0, 1])
    with pytest.raises(InvalidInput, match="scores have 3 columns but there are 2 classes"):
        evaluate_performance([0, 1, 1], [0, 1, 0], scores=np.full((3, 3), 1 / 3))
    with pytest.raises(InvalidInput, match="one column per class"):
        evaluate_performance([0, 1, 2], [0, 1, 2], scores=[0.1, 0.2, 0.3])
    with pytest.raises(InvalidInput, match="task='binary' needs at most two classes"):
        evaluate_performance([0, 1, 2], [0, 1, 2], task="binary")
    with pytest.raises(InvalidInput, match="pos_label 'x' is not one of labels"):
        evaluate_performance(["a", "b"], ["a", "b"], labels=["a", "b"], pos_label="x")
    with pytest.raises(InvalidInput, match="infinite"):
        evaluate_performance([1.5, 2.5], [np.inf, 1.0])


def test_undefined_metrics_are_none_with_a_reason() -> None:
    one_class = evaluate_performance([1, 1, 1, 1], [1, 0, 1, 1], scores=[0.9, 0.2, 0.8, 0.7])
    assert one_class.metrics["roc_auc"] is None and one_class.notes["roc_auc"] == "y_true holds one class only (1)"
    assert one_class.metrics["accuracy"] == 0.75 and one_class.metrics["log_loss"] is not None
    no_positive_pred = evaluate_performance([0, 1, 0], [0, 0, 0])
    assert no_positive_pred.metrics["precision"] is None
    assert no_positive_pred.notes["precision"] == "no positive predictions"
    assert no_positive_pred.metrics["recall"] == 0.0 and no_positive_pred.metrics["f1"] == 0.0
    all_negative = evaluate_performance([0, 0], [0, 0])
    assert all_negative.labels == [0, 1] and all_negative.metrics["f1"] is None and "f1" in all_negative.notes
    no_scores = evaluate_performance([0, 1], [0, 1])
    assert no_scores.metrics["roc_auc"] is None and no_scores.notes["log_loss"] == "no scores given"
    margins = evaluate_performance([0, 1, 1], [0, 1, 1], scores=[-2.0, 3.0, 0.5])
    assert margins.metrics["roc_auc"] == 1.0 and margins.metrics["log_loss"] is None
    assert "not probabilities" in margins.notes["log_loss"]
    nan_scores = evaluate_performance([0, 1, 1], [0, 1, 1], scores=[0.1, np.nan, 0.5])
    assert nan_scores.metrics["roc_auc"] is None and "NaN or infinite in 1 rows" in nan_scores.notes["roc_auc"]
    constant = evaluate_performance([2.5, 2.5, 2.5], [2.0, 2.5, 3.0])
    assert constant.metrics["r2"] is None and "constant" in constant.notes["r2"]
    zeros = evaluate_performance([0.0, 2.0, 4.0, 0.0], [1.0, 1.5, 5.0, 0.0])
    assert zeros.metrics["mape"] == pytest.approx((0.5 / 2 + 1 / 4) / 2)
    assert zeros.notes["mape"] == "2 rows with y_true = 0 left out"
    assert evaluate_performance([0.0, 0.0], [1.5, 0.0], task="regression").metrics["mape"] is None
    for r in (one_class, no_positive_pred, margins, nan_scores, constant, zeros):
        json.dumps(r.to_dict(), allow_nan=False)


def test_labels_unseen_in_training() -> None:
    # The model knows a, b, c; traffic brings d (true) and e (predicted by a fallback rule).
    y = ["a", "b", "c", "d", "d", "a"]
    pred = ["a", "b", "e", "a", "d", "a"]
    proba = np.full((6, 3), 1 / 3)
    r = evaluate_performance(y, pred, scores=proba, labels=["a", "b", "c"])
    assert r.labels == ["a", "b", "c", "d", "e"]
    assert r.unseen_labels == [{"label": "d", "true_count": 2, "pred_count": 1},
                               {"label": "e", "true_count": 0, "pred_count": 1}]
    assert r.metrics["accuracy"] == pytest.approx(4 / 6)
    assert r.metrics["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert r.metrics["roc_auc"] is None and r.metrics["log_loss"] is None
    assert r.notes["roc_auc"] == "y_true holds labels the model has no score for: d"
    assert "classes predicted but absent from y_true count as 0: e" == r.notes["recall"]


def test_missing_labels_are_left_out_and_counted() -> None:
    y = pa.array([1, None, 0, 1, None, 0], pa.int64())
    pred = np.array([1.0, 1.0, 0.0, np.nan, 0.0, 1.0])  # float labels 1.0 match integer 1
    r = evaluate_performance(y, pred)
    assert (r.rows, r.rows_missing_label, r.rows_missing_prediction) == (3, 2, 1)
    assert r.task == "binary" and r.labels == [0, 1] and r.metrics["accuracy"] == pytest.approx(2 / 3)
    booleans = evaluate_performance([True, None, False, True], [True, True, False, False])
    assert booleans.pos_label is True and booleans.metrics["recall"] == 0.5


def test_task_auto_and_explicit() -> None:
    assert evaluate_performance([1.5, 2.0, 3.25], [1.0, 2.0, 3.0]).task == "regression"
    assert evaluate_performance([1, 2, 3], [1, 2, 2]).task == "multiclass"
    counts = evaluate_performance([1, 2, 3], [1, 2, 2], task="regression")
    assert counts.task == "regression" and counts.metrics["mae"] == pytest.approx(1 / 3)
    with pytest.raises(InvalidInput, match="scores are for classification"):
        evaluate_performance([1.5, 2.0], [1.0, 2.0], scores=[0.1, 0.2])


def test_comparison_against_reference() -> None:
    reference = {"accuracy": 0.90, "f1": 0.80, "roc_auc": 0.95, "log_loss": 0.30, "precision": None}
    current = {"accuracy": 0.86, "f1": 0.70, "roc_auc": 0.95, "log_loss": 0.34, "precision": 0.5, "recall": 0.6}
    c = compare_performance(current, reference)
    by = {m.metric: m for m in c.metrics}
    assert set(by) == {"accuracy", "f1", "roc_auc", "log_loss", "precision"}  # recall: no reference value
    assert by["accuracy"].status == "pass" and by["accuracy"].difference == pytest.approx(-0.04)
    assert by["f1"].status == "fail" and by["f1"].degradation == pytest.approx(0.10)
    assert by["log_loss"].limit_kind == "relative_increase" and by["log_loss"].degradation == pytest.approx(0.4 / 3)
    assert by["log_loss"].status == "fail"
    assert by["precision"].status == "not_judged" and by["precision"].reason == "no reference value"
    assert c.degraded
    relaxed = compare_performance(current, reference, max_drop=0.2, limits={"log_loss": 0.5})
    assert not relaxed.degraded
    perfect = compare_performance({"mae": 0.1}, {"mae": 0.0}).metrics[0]
    assert perfect.status == "fail" and perfect.degradation == float("inf")


def test_evaluate_with_reference_and_json() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 500)
    s = np.clip(rng.random(500) * 0.6 + y * 0.35, 0, 1)
    train = evaluate_performance(y, (s > 0.5).astype(int), scores=s)
    worse = evaluate_performance(y, (rng.random(500) > 0.5).astype(int), scores=rng.random(500), reference=train)
    assert worse.comparison is not None and worse.comparison.degraded
    assert {m.metric for m in worse.comparison.metrics} == set(train.metrics)
    doc = worse.to_dict()
    json.dumps(doc, allow_nan=False)
    assert set(doc) == {"task", "rows", "metrics", "notes", "average", "pos_label", "labels", "per_class",
                        "unseen_labels", "rows_missing_label", "rows_missing_prediction", "comparison"}
    assert set(doc["comparison"]) == {"degraded", "max_drop", "max_error_increase", "metrics"}


def test_drift_result_json_grows_only_when_performance_is_given() -> None:
    rng = np.random.default_rng(6)
    data = {"x": rng.normal(size=200)}
    drift = detect_drift(data, data)
    before = drift.to_dict()
    assert "performance" not in before and "fairness" not in before
    perf = evaluate_performance([0, 1, 1, 0], [0, 1, 0, 0])
    doc = replace(drift, performance=perf).to_dict()
    assert doc["performance"] == perf.to_dict()
    assert {k: v for k, v in doc.items() if k != "performance"} == before
