"""Fairness across groups: fairlearn's definitions (checked against fairlearn itself), limits, small groups."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (MetricFrame, demographic_parity_difference, demographic_parity_ratio,
                               equalized_odds_difference, false_positive_rate, selection_rate, true_positive_rate)
from sklearn import metrics as skm

from keel.errors import InvalidInput
from keel.monitoring.drift import detect_drift
from keel.monitoring.fairness import FairnessLimits, evaluate_fairness

# fairlearn's own user-guide example (docs/user_guide/assessment/common_fairness_metrics.rst).
Y_TRUE = [0, 1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1]
Y_PRED = [0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0]
GROUPS = ["b", "b", "a", "b", "b", "c", "c", "c", "a", "a", "c", "a", "b", "c", "c", "b", "c", "c"]


def test_documented_formulas_by_hand() -> None:
    r = evaluate_fairness(GROUPS, Y_PRED, Y_TRUE, min_group_size=1)
    a, b, c = r.group("a"), r.group("b"), r.group("c")
    # a: 4 rows, predicted 1 in 3; labels 1 at rows 2, 8 (one caught), labels 0 at rows 9, 11 (both flagged).
    assert (a.count, a.selection_rate, a.tpr, a.fpr, a.positives) == (4, 0.75, 0.5, 1.0, 2)
    assert (b.count, b.selection_rate, b.tpr, b.fpr) == (6, 0.5, 0.6, 0.0)
    assert (c.count, c.selection_rate, c.tpr) == (8, 0.5, 0.4) and c.fpr == pytest.approx(2 / 3)
    assert a.accuracy == 0.25 and a.precision == pytest.approx(1 / 3)
    assert r.demographic_parity_difference == 0.75 - 0.5
    assert r.demographic_parity_ratio == pytest.approx(0.5 / 0.75)
    assert r.true_positive_rate_difference == pytest.approx(0.6 - 0.4)
    assert r.false_positive_rate_difference == 1.0 and r.equalized_odds_difference == 1.0
    assert [g.group for g in r.groups] == ["c", "b", "a"]  # largest first
    assert r.overall.count == 18 and r.overall.selection_rate == pytest.approx(10 / 18)


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_fairlearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 6))
    n = int(rng.integers(2000, 6000))
    names = np.array([f"g{i}" for i in range(k)])
    groups = names[rng.choice(k, n, p=rng.dirichlet(np.ones(k) * 5))]
    bias = dict(zip(names, rng.uniform(-0.2, 0.2, k)))
    y = (rng.random(n) < 0.4).astype(int)
    s = np.clip(rng.random(n) * 0.7 + y * 0.3 + np.vectorize(bias.get)(groups), 0, 1)
    pred = (s > 0.5).astype(int)
    r = evaluate_fairness(groups, pred, y, scores=s, min_group_size=1)
    kw = {"sensitive_features": groups}
    assert r.demographic_parity_difference == pytest.approx(demographic_parity_difference(y, pred, **kw), abs=1e-12)
    assert r.demographic_parity_ratio == pytest.approx(demographic_parity_ratio(y, pred, **kw), abs=1e-12)
    assert r.equalized_odds_difference == pytest.approx(equalized_odds_difference(y, pred, **kw), abs=1e-12)
    frame = MetricFrame(metrics={"sr": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate,
                                 "acc": skm.accuracy_score, "prec": skm.precision_score},
                        y_true=y, y_pred=pred, sensitive_features=groups).by_group
    for g in r.groups:
        row = frame.loc[g.group]
        assert (g.selection_rate, g.tpr, g.fpr, g.accuracy, g.precision) == pytest.approx(
            (row["sr"], row["tpr"], row["fpr"], row["acc"], row["prec"]), abs=1e-12)
        mask = groups == g.group
        assert g.roc_auc == pytest.approx(skm.roc_auc_score(y[mask], s[mask]), abs=1e-12)
        assert g.count == mask.sum() and g.share == pytest.approx(mask.mean())


def test_limits_pass_and_fail() -> None:
    # Selection rates 0.5 and 0.4 over 200 rows each: difference 0.1 (at the limit), ratio 0.8 (at the limit).
    groups = ["x"] * 200 + ["y"] * 200
    pred = [1] * 100 + [0] * 100 + [1] * 80 + [0] * 120
    at_limit = evaluate_fairness(groups, pred)
    assert at_limit.demographic_parity_difference == pytest.approx(0.1)
    assert [c.status for c in at_limit.checks] == ["pass", "pass", "not_judged"]
    assert at_limit.check("max_equalized_odds_difference").reason == "no labels (y_true)"
    assert at_limit.status == "pass" and at_limit.passed
    strict = evaluate_fairness(groups, pred, limits={"max_parity_difference": 0.05, "min_parity_ratio": None})
    assert [c.name for c in strict.checks] == ["max_parity_difference", "max_equalized_odds_difference"]
    assert strict.check("max_parity_difference").status == "fail" and not strict.passed
    with pytest.raises(InvalidInput, match="Unknown fairness limits"):
        evaluate_fairness(groups, pred, limits={"max_parity_diff": 0.1})
    # Float noise does not fail a check: 0.4 - 0.3 = 0.10000000000000003.
    noisy = evaluate_fairness(["x"] * 100 + ["y"] * 100, [1] * 40 + [0] * 60 + [1] * 30 + [0] * 70,
                              limits=FairnessLimits(0.1, None, None))
    assert noisy.demographic_parity_difference > 0.1 and noisy.check("max_parity_difference").status == "pass"


def test_equalized_odds_limit() -> None:
    rng = np.random.default_rng(9)
    n = 4000
    groups = np.where(rng.random(n) < 0.5, "p", "q")
    y = (rng.random(n) < 0.5).astype(int)
    # Same selection rate, but group q's positives are caught less often: TPR gap, parity intact.
    pred = np.where(groups == "p", y, np.where(y == 1, rng.random(n) < 0.7, rng.random(n) < 0.3)).astype(int)
    r = evaluate_fairness(groups, pred, y)
    assert r.check("max_parity_difference").status == "pass"
    assert r.true_positive_rate_difference == pytest.approx(1 - r.group("q").tpr)
    assert r.equalized_odds_difference > 0.25 and r.check("max_equalized_odds_difference").status == "fail"
    assert r.status == "fail"


def test_small_groups_are_reported_not_judged() -> None:
    groups = ["big1"] * 150 + ["big2"] * 150 + ["tiny"] * 5
    pred = [1] * 75 + [0] * 75 + [1] * 72 + [0] * 78 + [0] * 5  # tiny group: selection rate 0
    r = evaluate_fairness(groups, pred)
    tiny = r.group("tiny")
    assert tiny.too_small and tiny.selection_rate == 0.0 and tiny.count == 5
    assert not r.group("big1").too_small and r.groups_judged == 2
    assert r.demographic_parity_difference == pytest.approx(0.5 - 0.48)  # tiny left out
    assert r.status == "pass"
    # With every group below the minimum there is nothing to judge, and nothing fails.
    none = evaluate_fairness(groups, pred, min_group_size=1000)
    assert none.groups_judged == 0 and none.demographic_parity_difference is None
    assert none.notes["demographic_parity_difference"] == "needs two groups of at least 1000 rows; 0 found"
    assert [c.status for c in none.checks] == ["not_judged"] * 3 and none.status == "not_judged" and none.passed


def test_group_without_positive_labels() -> None:
    # Group "n" has no positive label: no TPR (fairlearn's confusion matrix would say 0), left out of the gap.
    groups = ["m"] * 4 + ["n"] * 3 + ["o"] * 4
    y_true = [1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0]
    y_pred = [1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 1]
    r = evaluate_fairness(groups, y_pred, y_true, min_group_size=1)
    assert r.group("n").tpr is None and r.group("n").fpr == pytest.approx(1 / 3)
    assert r.true_positive_rate_difference == pytest.approx(1.0 - 0.5)
    assert r.false_positive_rate_difference == pytest.approx(0.5 - 1 / 3)
    assert r.equalized_odds_difference == pytest.approx(0.5)
    # Only one group with positives: the TPR gap, and so equalized odds, cannot be judged.
    single = evaluate_fairness(groups, y_pred, [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], min_group_size=1)
    assert single.true_positive_rate_difference is None and single.equalized_odds_difference is None
    assert "with a positive label" in single.notes["true_positive_rate_difference"]
    assert single.check("max_equalized_odds_difference").status == "not_judged"


def test_labels_arriving_late_and_missing_groups() -> None:
    groups = pd.Series(["a", "a", None, "b", "b", None, "a", "b"])
    y_pred = [1, 0, 1, 1, np.nan, 0, 1, 0]
    y_true = [1, None, 1, 0, 1, None, 0, 0]
    r = evaluate_fairness(groups, y_pred, y_true, min_group_size=1, sensitive="region")
    assert r.rows == 7 and r.notes["rows"] == "1 rows without a prediction left out"
    a, b, missing = r.group("a"), r.group("b"), r.group("(missing)")
    assert (a.count, a.labelled, a.selection_rate) == (3, 2, pytest.approx(2 / 3))
    assert (a.tpr, a.fpr, a.accuracy) == (1.0, 1.0, 0.5)  # from the labelled rows only
    assert (b.count, b.labelled, b.fpr, b.tpr) == (2, 2, 0.5, None)
    assert (missing.count, missing.labelled, missing.selection_rate) == (2, 1, 0.5)
    doc = r.to_dict()
    json.dumps(doc, allow_nan=False)
    assert doc["sensitive"] == "region" and doc["passed"] == (r.status != "fail")


def test_text_outcomes_need_pos_label() -> None:
    groups = ["x", "y"] * 100
    pred = ["approved", "denied", "approved", "approved"] * 50
    with pytest.raises(InvalidInput, match="pos_label is needed"):
        evaluate_fairness(groups, pred)
    r = evaluate_fairness(groups, pred, pos_label="approved")
    assert r.group("x").selection_rate == 1.0 and r.group("y").selection_rate == 0.5
    assert r.demographic_parity_ratio == 0.5 and r.check("min_parity_ratio").status == "fail"
    nobody = evaluate_fairness(groups, ["denied"] * 200, pos_label="approved")
    assert nobody.demographic_parity_difference == 0.0 and nobody.demographic_parity_ratio is None
    ratio = nobody.check("min_parity_ratio")
    assert ratio.status == "not_judged" and "0 / 0" in ratio.reason
    with pytest.raises(InvalidInput, match="same length"):
        evaluate_fairness(groups, pred[:10], pos_label="approved")
    with pytest.raises(InvalidInput, match="No row has a prediction"):
        evaluate_fairness([], [])


def test_drift_result_carries_fairness() -> None:
    rng = np.random.default_rng(4)
    data = {"x": rng.normal(size=100)}
    drift = detect_drift(data, data)
    fair = evaluate_fairness(["a", "b"] * 100, [0, 1, 1, 1] * 50)
    doc = replace(drift, fairness=fair).to_dict()
    assert doc["fairness"] == fair.to_dict() and "performance" not in doc
    assert set(doc["fairness"]) == {"sensitive", "pos_label", "min_group_size", "rows", "groups", "overall",
                                    "groups_judged", "demographic_parity_difference", "demographic_parity_ratio",
                                    "true_positive_rate_difference", "false_positive_rate_difference",
                                    "equalized_odds_difference", "checks", "status", "notes", "passed"}
    assert doc["fairness"]["status"] == "fail"  # selection rates 0.5 vs 1.0
