"""Fairness of a registered version on evaluation data, kept with the version.

``evaluate_version`` predicts ``data`` with the version, measures fairness
across the groups of a sensitive column (``keel.monitoring.fairness``), and
attaches the document to the version as ``fairness/<UTC time>.json`` (kind
``fairness``; audited). The promotion policy's ``fairness`` limits judge the
newest such document, so a candidate is checked before it serves anyone;
monitors then measure the same thing on served traffic.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import numpy as np

from keel.errors import InvalidInput
from keel.service.context import Context

__all__ = ["KIND", "SCHEMA", "evaluate_version", "newest"]

SCHEMA = "keel.fairness/1"
KIND = "fairness"


def evaluate_version(ctx: Context, uri: str, data: Any, *, sensitive: str, target: str | None = None,
                     limits: dict[str, float] | None = None, min_group_size: int = 100,
                     store: bool = True) -> dict[str, Any]:
    """Fairness of the version ``uri`` on ``data`` (a CSV/Parquet file or a table) across ``sensitive``.

    The sensitive column may be one of the model's inputs or not; ``target``
    (the labels) adds accuracy, TPR/FPR per group and the equalized-odds difference.
    """
    from keel.formats.api import load_model
    from keel.monitoring.fairness import evaluate_fairness
    from keel.service.explanations import _features, _read
    from keel.service.registry import resolve_uri
    from keel.service.tracking import now_ms
    from keel.service.version_artifacts import attach

    version = resolve_uri(ctx, uri)
    table, source, sha256 = _read(data)
    if sensitive not in table.column_names:
        raise InvalidInput(f"sensitive column {sensitive!r} is not in {source}; its columns are: "
                           f"{', '.join(table.column_names)}")
    if table.num_rows == 0:
        raise InvalidInput(f"{source} has no rows")
    model = load_model(version.uri, settings=ctx.settings)
    features = _features(model, table.column_names, target, source)
    columns = {n: table[n].to_numpy(zero_copy_only=False) for n in features}
    inputs = columns if model.signature is not None and model.signature.columnar else \
        np.column_stack(list(columns.values()))
    predicted = np.asarray(model.predict(inputs)).ravel()
    scores = None
    if getattr(model, "has_proba", False):
        proba = np.asarray(model.predict_proba(inputs))
        scores = proba[:, 1] if proba.ndim == 2 and proba.shape[1] == 2 else None
    labels = table[target].to_numpy(zero_copy_only=False) if target is not None else None
    result = evaluate_fairness(table[sensitive].to_numpy(zero_copy_only=False), predicted, labels,
                               scores=scores if labels is not None else None, limits=limits,
                               min_group_size=min_group_size, sensitive=sensitive)
    created = now_ms()
    doc = {"schema": SCHEMA, "model": version.uri, "created_at": created, "created_by": ctx.actor,
           "data": {"source": source, "sha256": sha256, "rows": table.num_rows}, "target": target,
           "result": result.to_dict()}
    if store:
        moment = datetime.fromtimestamp(created / 1000, tz=timezone.utc)
        path = f"fairness/{moment:%Y%m%dT%H%M%S}.{created % 1000:03d}Z.json"
        attach(ctx, version.name, version.version, path, json.dumps(doc, allow_nan=False).encode(), kind=KIND)
    return doc


def newest(ctx: Context, name: str, version: int) -> dict[str, Any] | None:
    """The newest fairness evaluation attached to a version, or None."""
    from keel.service.version_artifacts import list_attached, read_attached

    found = list_attached(ctx, name, version, kind=KIND)
    return json.loads(read_attached(ctx, found[0])) if found else None
