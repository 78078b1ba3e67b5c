"""Promotion policy: which checks a version must pass to take an alias, and
who must approve. Pure: configuration in, check results out.

keel.toml::

    [policy]
    protected_aliases = ["production"]     # the default: four eyes needed

    [policy.aliases.production]
    min_metrics = { accuracy = 0.90 }      # the run's latest value must be >= floor
    max_metrics = { log_loss = 0.35 }      # ... or <= ceiling
    require_card = true                    # default true for protected aliases
    require_reference_dataset = true       # default true for protected aliases
    fairness = { max_parity_difference = 0.1, min_parity_ratio = 0.8 }   # judged on the
                                           # newest `keel fairness` evaluation of the version

    [policy.aliases.staging]
    auto_approve = true                    # default for unprotected aliases

A protected alias always waits for an approver (never auto-approved). The
bundle-integrity check (the manifest the registry pinned is present and
verifies) runs for every alias.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from keel.errors import ConfigError

DEFAULT_PROTECTED = ("production",)
_ALIAS_KEYS = {"min_metrics", "max_metrics", "require_card", "require_reference_dataset", "auto_approve", "fairness"}
# Fairness limits: the measure each bounds, and whether the bound is a ceiling (<=) or a floor (>=).
FAIRNESS_LIMITS = {"max_parity_difference": ("demographic_parity_difference", "<="),
                   "min_parity_ratio": ("demographic_parity_ratio", ">="),
                   "max_equalized_odds_difference": ("equalized_odds_difference", "<=")}


@dataclass(frozen=True)
class AliasPolicy:
    alias: str
    protected: bool
    auto_approve: bool
    require_card: bool
    require_reference_dataset: bool
    min_metrics: Mapping[str, float] = field(default_factory=dict)
    max_metrics: Mapping[str, float] = field(default_factory=dict)
    fairness: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "protected": self.protected, "auto_approve": self.auto_approve,
                "require_card": self.require_card, "require_reference_dataset": self.require_reference_dataset,
                "min_metrics": dict(self.min_metrics), "max_metrics": dict(self.max_metrics),
                "fairness": dict(self.fairness)}


@dataclass(frozen=True)
class Policy:
    protected_aliases: frozenset[str]
    aliases: Mapping[str, Mapping[str, Any]]

    def for_alias(self, alias: str) -> AliasPolicy:
        protected = alias in self.protected_aliases
        raw = self.aliases.get(alias, {})
        auto = bool(raw.get("auto_approve", not protected))
        if protected and auto:
            raise ConfigError(f"keel.toml: [policy.aliases.{alias}] auto_approve = true is not allowed for a "
                              "protected alias (it needs an approver); remove it from protected_aliases instead")
        return AliasPolicy(alias, protected, auto, bool(raw.get("require_card", protected)),
                           bool(raw.get("require_reference_dataset", protected)),
                           dict(raw.get("min_metrics", {})), dict(raw.get("max_metrics", {})),
                           dict(raw.get("fairness", {})))


@dataclass(frozen=True)
class Evidence:
    """What the store knows about a version when its checks run."""

    metrics: Mapping[str, float | None]  # the run's latest values (None: NaN)
    card_fields: tuple[str, ...]  # user-written card fields present (model or version level)
    card_updated: Mapping[str, Any] | None  # who/when of the newest card edit
    datasets: tuple[Mapping[str, Any], ...]  # datasets logged with the run (name, digest, rows, context)
    bundle: Mapping[str, Any]  # {"manifest_sha256": ..., "verified": bool, "detail": ...}
    fairness: Mapping[str, Any] | None = None  # the newest keel.fairness/1 evaluation of the version


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail, "evidence": dict(self.evidence)}


def load_policy(table: Mapping[str, Any]) -> Policy:
    """Validate the ``[policy]`` table of keel.toml (errors name the key)."""
    unknown = set(table) - {"protected_aliases", "aliases"}
    if unknown:
        raise ConfigError(f"keel.toml: unknown key(s) in [policy]: {', '.join(sorted(unknown))}; "
                          "expected protected_aliases, aliases")
    protected = table.get("protected_aliases", list(DEFAULT_PROTECTED))
    if not isinstance(protected, list) or not all(isinstance(a, str) for a in protected):
        raise ConfigError(f"keel.toml: policy.protected_aliases must be a list of alias names, got {protected!r}")
    aliases = table.get("aliases", {})
    if not isinstance(aliases, Mapping):
        raise ConfigError("keel.toml: [policy.aliases] must be a table of alias tables")
    for alias, raw in aliases.items():
        where = f"keel.toml: [policy.aliases.{alias}]"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} must be a table")
        bad = set(raw) - _ALIAS_KEYS
        if bad:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(bad))}; expected "
                              f"{', '.join(sorted(_ALIAS_KEYS))}")
        for key in ("min_metrics", "max_metrics"):
            bounds = raw.get(key, {})
            if not isinstance(bounds, Mapping) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    for v in bounds.values()):
                raise ConfigError(f"{where}: {key} must map metric names to finite numbers, got {bounds!r}")
        limits = raw.get("fairness", {})
        bad_limits = {k: v for k, v in (limits.items() if isinstance(limits, Mapping) else [])
                      if k not in FAIRNESS_LIMITS or isinstance(v, bool) or not isinstance(v, (int, float))
                      or not math.isfinite(v)}
        if not isinstance(limits, Mapping) or bad_limits:
            raise ConfigError(f"{where}: fairness must map {', '.join(FAIRNESS_LIMITS)} to finite numbers, "
                              f"got {limits!r}")
        for key in ("require_card", "require_reference_dataset", "auto_approve"):
            if key in raw and not isinstance(raw[key], bool):
                raise ConfigError(f"{where}: {key} must be true or false, got {raw[key]!r}")
    return Policy(frozenset(protected), aliases)


def evaluate(policy: AliasPolicy, evidence: Evidence) -> list[Check]:
    """Every check the alias's policy asks for, each with the evidence it looked at."""
    checks = [Check("bundle_integrity", bool(evidence.bundle.get("verified")), evidence.bundle.get("detail", ""),
                    {"manifest_sha256": evidence.bundle.get("manifest_sha256")})]
    for key, floor in policy.min_metrics.items():
        checks.append(_bound(key, floor, evidence.metrics, ">="))
    for key, ceiling in policy.max_metrics.items():
        checks.append(_bound(key, ceiling, evidence.metrics, "<="))
    if policy.require_card:
        present = bool(evidence.card_fields)
        detail = (f"model card has {', '.join(evidence.card_fields)}" if present else
                  "no model card text: write one with keel.registry.update_card or `keel card URI --set`")
        checks.append(Check("model_card", present, detail,
                            {"fields": list(evidence.card_fields), "updated": dict(evidence.card_updated or {})}))
    if policy.require_reference_dataset:
        present = bool(evidence.datasets)
        detail = (", ".join(f"{d['name']}@{str(d['digest'])[:12]}" for d in evidence.datasets) if present else
                  "the run logged no dataset: log the training data with keel.log_dataset so monitoring "
                  "has a reference")
        checks.append(Check("reference_dataset", present, detail, {"datasets": [dict(d) for d in evidence.datasets]}))
    if policy.fairness:
        checks.append(_fairness(policy.fairness, evidence.fairness))
    return checks


def _fairness(limits: Mapping[str, float], evaluation: Mapping[str, Any] | None) -> Check:
    """Every fairness limit of the policy, judged on the newest evaluation; one that cannot be judged fails."""
    if evaluation is None:
        return Check("fairness", False, "no fairness evaluation of this version: run `keel fairness URI DATA "
                                        "--sensitive COLUMN [--target LABEL]`", {"limits": dict(limits)})
    result = evaluation.get("result") or {}
    verdicts = []
    for name, bound in limits.items():
        measure, op = FAIRNESS_LIMITS[name]
        value = result.get(measure)
        ok = value is not None and (value <= bound if op == "<=" else value >= bound)
        shown = "not measurable" if value is None else f"{value:.4g}"
        verdicts.append((ok, f"{measure} {shown} {'meets' if ok else 'FAILS'} {op} {bound:g}"))
    detail = (f"across {result.get('sensitive')} on {(evaluation.get('data') or {}).get('rows')} rows: "
              + "; ".join(text for _, text in verdicts))
    return Check("fairness", all(ok for ok, _ in verdicts), detail,
                 {"limits": dict(limits), "evaluated_at": evaluation.get("created_at"),
                  "data": evaluation.get("data"), "sensitive": result.get("sensitive"),
                  **{m: result.get(m) for m, _ in FAIRNESS_LIMITS.values()}})


def _bound(key: str, bound: float, metrics: Mapping[str, float | None], op: str) -> Check:
    name = f"metric:{key}{op}{bound:g}"
    if key not in metrics:
        return Check(name, False, f"the run has no metric {key!r}", {"metric": key, "bound": bound})
    value = metrics[key]
    passed = value is not None and (value >= bound if op == ">=" else value <= bound)
    shown = "NaN" if value is None else f"{value:.6g}"
    return Check(name, passed, f"{key} = {shown} ({'meets' if passed else 'fails'} {op} {bound:g})",
                 {"metric": key, "value": value, "bound": bound})
