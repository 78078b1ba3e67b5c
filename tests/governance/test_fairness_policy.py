"""Fairness before serving: `keel fairness` measures a candidate on evaluation data, the promotion
policy's fairness limits judge that evaluation, and the model card shows it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import keel
from keel.errors import ConfigError, PolicyViolation
from keel.testing.cli import run_cli

pytestmark = pytest.mark.store

LIMITS = {"aliases": {"production": {"require_card": False, "require_reference_dataset": False,
                                     "fairness": {"max_parity_difference": 0.1, "min_parity_ratio": 0.8}}}}


def applicants(seed, n, biased):
    """score drives the label; with ``biased`` the group leaks into the features the model sees."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 2, n)
    score = rng.normal(0, 1, n)
    y = (score + rng.normal(0, 0.5, n) > 0).astype(int)
    proxy = group * 1.5 if biased else rng.normal(0, 1, n) * 0.0
    return {"score": score, "proxy": proxy + rng.normal(0, 0.1, n), "group": group, "y": y}


@pytest.fixture
def candidate(settings, tmp_path):
    """A version whose decisions lean on a proxy of the group, and evaluation files."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    train = pd.DataFrame(applicants(0, 2000, biased=True))
    # The training labels favour group 1: a model that learns the proxy approves it more.
    train["y"] = np.where(train.group == 1, 1, train.y)
    features = train[["score", "proxy"]]
    with keel.start_run("credit", settings=settings):
        info = keel.log_model(LogisticRegression().fit(features, train.y), "model", input_example=features[:3],
                              register="credit")
    unfair, fair = tmp_path / "eval.csv", tmp_path / "eval-fair.csv"
    pd.DataFrame(applicants(1, 2000, biased=True)).to_csv(unfair, index=False)
    pd.DataFrame(applicants(2, 2000, biased=False)).to_csv(fair, index=False)
    return info.version, unfair, fair


def test_the_policy_refuses_an_unfair_candidate_and_passes_a_fair_evaluation(settings, candidate, tmp_path):
    version, unfair, fair = candidate
    s = dataclasses.replace(settings, policy=LIMITS)

    held = keel.registry.request_promotion("credit", version, alias="production", settings=s)
    [check] = [c for c in held.checks if c["name"] == "fairness"]
    assert not check["passed"] and "no fairness evaluation" in check["detail"]

    env = {"KEEL_HOME": str(settings.home), "KEEL_STORE_URI": settings.store_uri,
           "KEEL_ARTIFACT_URI": str(settings.artifact_uri), "KEEL_USER": "alice", "PATH": "/usr/bin:/bin"}
    proc = run_cli(env, "fairness", f"models:/credit/{version}", str(unfair), "--sensitive", "group",
                   "--target", "y", "--json", check=False)
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["result"]["demographic_parity_difference"] > 0.1 and doc["result"]["status"] == "fail"

    bob = dataclasses.replace(s, user="bob")
    with pytest.raises(PolicyViolation, match=r"fairness: across group on 2000 rows: "
                                              r"demographic_parity_difference 0\.\d+ FAILS <= 0\.1"):
        keel.registry.approve(held.id, reason="looks fine", settings=bob)

    card = keel.registry.get_card(f"models:/credit/{version}", settings=s)
    assert card["fairness"]["status"] == "available" and card["fairness"]["verdict"] == "fail"
    assert card["fairness"]["evaluation"]["rows"] == 2000

    # On data where the group does not leak into the features, the same model is fair; a new
    # request judges the newest evaluation and passes.
    keel.registry.cancel(held.id, reason="re-evaluate", settings=s)
    passed = keel.registry.evaluate_fairness(f"models:/credit/{version}", str(fair), sensitive="group",
                                             target="y", settings=s)
    assert passed["result"]["status"] == "pass"
    again = keel.registry.request_promotion("credit", version, alias="production", settings=s)
    [check] = [c for c in again.checks if c["name"] == "fairness"]
    assert check["passed"] and check["evidence"]["demographic_parity_difference"] <= 0.1
    keel.registry.approve(again.id, reason="fair on the evaluation set", settings=bob)


def test_bad_fairness_limits_in_the_policy_are_named(settings):
    from keel.governance.policy import load_policy

    with pytest.raises(ConfigError, match="fairness must map max_parity_difference"):
        load_policy({"aliases": {"production": {"fairness": {"max_parity_gap": 0.1}}}})
    with pytest.raises(ConfigError, match="fairness must map"):
        load_policy({"aliases": {"production": {"fairness": {"min_parity_ratio": "high"}}}})
