"""The champion/challenger gate, pure: scores and thresholds in, a decision with every number out.

In the spirit of TFX's Evaluator "blessing": a challenger is blessed when
it loads and answers, every metric meets its floor (value threshold), and no
gated metric is worse than the champion's by more than its tolerance (change
threshold). Each check records the numbers it compared, and each failed
check gives one reason line naming the metric and both values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

# Metrics where lower is better; every other metric is higher-is-better.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "mse", "log_loss", "error_rate"})


@dataclass(frozen=True)
class GateSpec:
    """What the gate asks. ``tolerances`` are absolute (0.01 = one point of accuracy)."""

    floors: Mapping[str, float] = field(default_factory=dict)  # higher-is-better metrics: minimum
    ceilings: Mapping[str, float] = field(default_factory=dict)  # lower-is-better metrics: maximum
    tolerances: Mapping[str, float] = field(default_factory=dict)  # metric -> allowed worsening vs champion
    # Fairness of the challenger across the groups of ``sensitive`` in the evaluation data, with
    # limits as keel.monitoring.fairness names them (max_parity_difference, min_parity_ratio,
    # max_equalized_odds_difference).
    sensitive: str | None = None
    fairness: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"floors": dict(self.floors), "ceilings": dict(self.ceilings), "tolerances": dict(self.tolerances),
                "sensitive": self.sensitive, "fairness": dict(self.fairness)}


@dataclass(frozen=True)
class Decision:
    blessed: bool
    checks: list[dict[str, Any]]
    reasons: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"blessed": self.blessed, "checks": self.checks, "reasons": self.reasons}


def decide(spec: GateSpec, challenger: Mapping[str, float], champion: Mapping[str, float] | None,
           load_check: tuple[bool, str], fairness: Mapping[str, Any] | None = None) -> Decision:
    """Run every check of ``spec`` on the challenger's scores (and the champion's, if there is one).

    ``fairness`` is the challenger's fairness result on the evaluation data
    (``FairnessResult.to_dict()``), computed when ``spec.sensitive`` is set.
    """
    checks: list[dict[str, Any]] = []
    ok, detail = load_check
    checks.append({"name": "load_and_query", "passed": ok, "detail": detail})
    for metric, floor in spec.floors.items():
        value = challenger.get(metric)
        passed = _finite(value) and value >= floor
        checks.append({"name": f"floor:{metric}", "metric": metric, "value": value, "bound": floor,
                       "passed": passed,
                       "detail": f"{metric}: challenger {_fmt(value)} {'meets' if passed else 'is below'} the "
                                 f"floor {_fmt(floor)}"})
    for metric, ceiling in spec.ceilings.items():
        value = challenger.get(metric)
        passed = _finite(value) and value <= ceiling
        checks.append({"name": f"ceiling:{metric}", "metric": metric, "value": value, "bound": ceiling,
                       "passed": passed,
                       "detail": f"{metric}: challenger {_fmt(value)} {'meets' if passed else 'is above'} the "
                                 f"ceiling {_fmt(ceiling)}"})
    if champion is not None:
        for metric, tolerance in spec.tolerances.items():
            checks.append(_versus(metric, challenger.get(metric), champion.get(metric), tolerance))
    if spec.sensitive is not None:
        checks.extend(_fairness(spec.sensitive, fairness or {}))
    reasons = [c["detail"] for c in checks if not c["passed"]]
    return Decision(not reasons, checks, reasons)


def _fairness(sensitive: str, result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One check per fairness limit of the result; a limit it could not judge fails (no evidence, no pass)."""
    checks = []
    for limit in result.get("checks", []):
        passed = limit.get("status") == "pass"
        value = limit.get("value")
        why = limit.get("reason") or ("meets" if passed else "breaks")
        checks.append({"name": f"fairness:{limit['name']}", "metric": limit.get("metric"), "value": value,
                       "bound": limit.get("limit"), "sensitive": sensitive, "passed": passed,
                       "detail": f"{limit.get('metric')} across {sensitive}: challenger {_fmt(value)} {why} "
                                 f"the limit {_fmt(limit.get('limit'))}"})
    if not checks:
        checks.append({"name": "fairness", "sensitive": sensitive, "passed": False,
                       "detail": f"fairness across {sensitive} could not be measured: {result.get('error', 'no result')}"})
    return checks


def _versus(metric: str, new: float | None, old: float | None, tolerance: float) -> dict[str, Any]:
    lower = metric in LOWER_IS_BETTER
    base = {"name": f"vs_champion:{metric}", "metric": metric, "challenger": new, "champion": old,
            "tolerance": tolerance, "direction": "lower is better" if lower else "higher is better"}
    if not _finite(new):
        return {**base, "passed": False, "detail": f"{metric}: challenger has no finite value ({_fmt(new)}); "
                                                    f"champion {_fmt(old)}"}
    if not _finite(old):
        return {**base, "passed": True, "detail": f"{metric}: champion has no value to compare with; "
                                                   f"challenger {_fmt(new)}"}
    worse_by = (new - old) if lower else (old - new)
    passed = worse_by <= tolerance + 1e-12
    if passed:
        verdict = "better" if worse_by < 0 else "equal" if worse_by == 0 else "worse, within"
        detail = f"{metric}: challenger {_fmt(new)} vs champion {_fmt(old)} ({verdict}; tolerance {_fmt(tolerance)})"
    else:
        detail = (f"{metric}: challenger {_fmt(new)} is worse than champion {_fmt(old)} by {_fmt(worse_by)} "
                  f"(tolerance {_fmt(tolerance)})")
    return {**base, "worse_by": worse_by, "passed": passed, "detail": detail}


def default_spec(task: str) -> GateSpec:
    """Without configuration: the challenger must not be worse than the champion on the main metric."""
    return GateSpec(tolerances={"accuracy": 0.0} if task == "classification" else {"rmse": 0.0})


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if _finite(value) else str(value)
