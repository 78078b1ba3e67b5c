"""Govern version 1: card, explanation, promotion to production with four eyes, lineage."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from keel.errors import PermissionDenied
from keel.quickstart.data import TARGET, Data
from keel.quickstart.narrate import Narrator
from keel.quickstart.train import MODEL_NAME
from keel.settings import Settings

REVIEWER = "risk-officer"


def reviewer(settings: Settings) -> Settings:
    """The same store, acting as the approver (a second person)."""
    return dataclasses.replace(settings, user=REVIEWER)


def approve_with_four_eyes(settings: Settings, request_id: str, reason: str) -> None:
    """The requester's own approval is refused; the reviewer's goes through."""
    from keel import registry

    try:
        registry.approve(request_id, reason="self-approval", settings=settings)
    except PermissionDenied:
        pass
    else:
        raise AssertionError("self-approval was accepted")
    registry.approve(request_id, reason=reason, settings=reviewer(settings))


def govern(say: Narrator, settings: Settings, home: Path, version: int, data: Data) -> None:
    """Requirement 6 of the loop, on the first version."""
    from keel import registry

    uri = f"models:/{MODEL_NAME}/{version}"
    registry.update_card(MODEL_NAME, settings=settings,
                         overview="Flags breast tumour samples as malignant or benign from 30 cell-nucleus "
                                  "measurements (Wisconsin diagnostic data).",
                         intended_use="A demonstration of keel's loop; not for clinical use.",
                         limitations="569 samples from one hospital; no demographic attributes to check fairness on.")
    explained = registry.explain(uri, data.table(data.X_test, data.y_test), target=TARGET, settings=settings)
    top = [g for g in explained["global"] if g["method"] == "permutation"][:3]
    say.step("explain", "permutation importance on the test set (accuracy drop): "
                        + ", ".join(f"{g['feature']} {g['importance']:.3f}" for g in top))

    request = registry.request_promotion(MODEL_NAME, version, "production", settings=settings,
                                         comment="first candidate")
    checks = ", ".join(f"{c['name']} {'ok' if c['passed'] else 'FAILED'}" for c in request.checks)
    approve_with_four_eyes(settings, request.id, "metrics and card reviewed")
    say.step("promote", f"{settings.user} asked for production ({checks}); their own approval was refused; "
                        f"{REVIEWER} approved -> models:/{MODEL_NAME}@production = version {version}")

    card_path = write_card(settings, home, version)
    graph = registry.lineage(uri, direction="up", settings=settings)
    upstream = sorted({node.kind for node in graph.nodes.values() if node.id != graph.root})
    say.step("govern", f"lineage of {uri}: {', '.join(upstream)} upstream; model card (purpose, data, "
                       f"metrics, explanation, environment, approvals) -> {card_path}")


def write_card(settings: Settings, home: Path, version: int) -> Path:
    """The version's model card as one self-contained HTML file in the home."""
    from keel import registry
    from keel.governance.card import render_html

    path = home / f"model-card-v{version}.html"
    card = registry.get_card(f"models:/{MODEL_NAME}/{version}", settings=settings)
    path.write_text(render_html(card), encoding="utf-8")
    return path


# The way up from a retrained version to the traffic whose alert started it, and what each step is.
_LOOP_EDGES = {"registered_as": "its bundle", "logged": "the fit step's run", "parent_of": "the pipeline run",
               "triggered": "the monitor's window result", "monitored_by": "the version that served it"}


def loop_lineage(say: Narrator, settings: Settings, home: Path, version: int) -> None:
    """Print the lineage of the retrained version back to the monitored traffic, and write its card."""
    from keel import registry

    uri = f"models:/{MODEL_NAME}/{version}"
    graph = registry.lineage(uri, direction="up", settings=settings)
    say.step("lineage", f"{uri} back to the served traffic that started it (keel lineage {uri}):")
    node, kind = graph.nodes[graph.root], ""
    while kind != "monitored_by":
        above = {edge.kind: source for edge, source in graph.upstream(node.id)}
        kind = next((k for k in _LOOP_EDGES if k in above), "")
        if not kind:
            break
        node = above[kind]
        notes = [_LOOP_EDGES[kind]]
        notes += [f"a replay of {s.id}" for e, s in graph.upstream(node.id) if e.kind == "replayed_as"]
        if node.kind == "monitor_result":
            notes.append(str(node.attrs.get("status")))
        say.more(f"<- {kind:<13} {node.id} ({', '.join(notes)})")
    card = write_card(settings, home, version)
    say.more(f"its model card, with the gate's decision and the approval -> {card}")
