"""The HTML report with performance and fairness: self-contained, small, well formed, escaped."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser

import numpy as np

from keel.monitoring.drift import detect_drift
from keel.monitoring.fairness import evaluate_fairness
from keel.monitoring.performance import evaluate_performance
from keel.monitoring.report import render_html
from keel.monitoring.result import DriftResult


def _drift(rng: np.random.Generator, n: int = 20_000) -> DriftResult:
    """25 columns as in the benchmark: 20 numeric, 5 categorical up to 50 categories, 3 drifted."""
    ref = {f"num_{i:02d}": rng.normal(size=n) for i in range(20)}
    ref |= {f"cat_{k}": rng.choice([f"c{j}" for j in range(k)], n) for k in (3, 5, 10, 20, 50)}
    cur = {name: rng.permutation(values) for name, values in ref.items()}
    cur["num_00"] = cur["num_00"] + 0.3
    cur["num_01"] = cur["num_01"] * 1.5
    cur["cat_50"] = np.where(rng.random(n) < 0.1, "c0", cur["cat_50"])
    return detect_drift(ref, cur)


class _Checker(HTMLParser):
    """Every element closed, in order; records every attribute that could load something."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.loading: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.loading += [(tag, f"{k}={v}") for k, v in attrs if k in ("src", "href", "xlink:href", "srcset")]
        if tag not in ("meta", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack.pop() == tag, (tag, self.stack[-5:])


def _well_formed_and_offline(html: str) -> None:
    checker = _Checker()
    checker.feed(html)
    checker.close()
    assert checker.stack == [] and checker.loading == []
    lowered = html.lower()
    assert not re.search(r"https?://", lowered)  # no address at all, not even the SVG namespace
    for needle in ("<script", "<link", "<img", "<iframe", "@import", "url(", "@font-face"):
        assert needle not in lowered, needle


def test_full_report_is_self_contained_and_small() -> None:
    rng = np.random.default_rng(21)
    drift = _drift(rng)
    n, k = 5000, 4
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.2 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    reference = {"accuracy": 0.9, "precision": 0.9, "recall": 0.9, "f1": 0.9, "roc_auc": 0.9, "log_loss": 0.5}
    perf = evaluate_performance(y, pred, scores=proba, reference=reference)
    regions = np.array(["north", "south", "east", "west", "islands"])[rng.choice(5, n, p=[.3, .3, .2, .19, .01])]
    approve = (rng.random(n) < np.where(regions == "south", 0.3, 0.5)).astype(int)
    fair = evaluate_fairness(regions, approve, (rng.random(n) < 0.5).astype(int), sensitive="region")
    html = render_html(replace(drift, performance=perf, fairness=fair))

    assert len(html.encode()) < 1_000_000
    _well_formed_and_offline(html)
    # 25 distribution plots, the drift score per column, the selection rate per group.
    assert html.count("<svg") == 27
    assert "Drift score per column" in html and html.index("Drift score per column") < html.index("num_00</td>")
    overview = re.search(r"Drift score per column.*?</svg>", html, re.S).group(0)
    assert overview.count("<rect") == 25 and overview.count("fill='#cf222e'") == len(drift.drifted) >= 3
    # Performance: current vs reference per metric, verdicts, per-class table.
    assert "<h2>Performance</h2>" in html and "Performance degraded" in html
    assert "macro average over classes" in html and "ROC AUC" in html and "log loss" in html
    assert html.count("<span class='drift'>fail</span>") >= 1
    assert "<th>reference</th>" in html and "<th>class</th>" in html
    # Fairness: verdicts per limit, the chart, the per-group table with the small group flagged.
    assert "Fairness across region" in html and "Fairness check failed" in html
    for name in ("max_parity_difference", "min_parity_ratio", "max_equalized_odds_difference"):
        assert name in html
    assert "too small to judge" in html and "islands" in html
    chart = re.search(r"Selection rate per group.*?</svg>", html, re.S).group(0)
    assert chart.count("<rect") == 5 and "fill-opacity='0.35'" in chart  # the small group is pale


def test_drift_only_report_has_no_harm_sections() -> None:
    rng = np.random.default_rng(22)
    html = render_html(detect_drift({"x": rng.normal(size=500)}, {"x": rng.normal(size=500)}))
    _well_formed_and_offline(html)
    assert "Drift score per column" in html
    assert "<h2>Performance</h2>" not in html and "Fairness" not in html


def test_names_are_escaped() -> None:
    rng = np.random.default_rng(23)
    evil = "<script>alert(1)</script>"
    data = {evil: rng.normal(size=300)}
    drift = detect_drift(data, data)
    fair = evaluate_fairness([evil, "ok"] * 150, [1, 0, 1, 1] * 75, sensitive=evil)
    perf = evaluate_performance([evil, "b", "b"], [evil, "b", evil], pos_label=evil)
    html = render_html(replace(drift, performance=perf, fairness=fair))
    assert "<script" not in html.lower() and "&lt;script&gt;" in html
    _well_formed_and_offline(html)


def test_regression_and_many_groups() -> None:
    rng = np.random.default_rng(24)
    drift = detect_drift({"x": rng.normal(size=400)}, {"x": rng.normal(size=400)})
    y = rng.normal(size=4000) + 10
    perf = evaluate_performance(y, y + rng.normal(size=4000), reference={"mae": 0.5, "rmse": 0.7, "r2": 0.95})
    groups = np.array([f"store_{i:02d}" for i in range(40)])[rng.integers(0, 40, 4000)]
    fair = evaluate_fairness(groups, rng.integers(0, 2, 4000), min_group_size=50)
    html = render_html(replace(drift, performance=perf, fairness=fair))
    _well_formed_and_offline(html)
    assert "MAE" in html and "RMSE" in html and "R\u00b2" in html and "increase 10%" in html
    assert "Fairness not judged" not in html and "10 smaller groups in the table" in html
    chart = re.search(r"Selection rate per group.*?</svg>", html, re.S).group(0)
    assert chart.count("<rect") == 30
    assert html.count("store_") >= 40  # every group in the table
