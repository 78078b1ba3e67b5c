"""Explain a registered version on a dataset and keep the result with the version.

``explain_version`` loads the model, reads the data (CSV/Parquet file or an
in-memory table), computes permutation importance and, for tree models, tree
SHAP (``keel.governance.explain``), and attaches the JSON document to the
version as ``explanations/<UTC time>.json`` (kind ``explanation``; audited).
``explain_rows`` gives per-row explanations from Python, stored nowhere.
"""

from __future__ import annotations

import json
import os
import warnings
from datetime import datetime, timezone
from typing import Any

import numpy as np

from keel.errors import InvalidInput
from keel.governance import explain as core
from keel.service.context import Context

SCHEMA = "keel.explanation/1"
KIND = "explanation"
DEFAULT_MAX_ROWS = 2000


def explanation_path(created_at: int) -> str:
    """Where an explanation made at ``created_at`` (ms) is attached: ``explanations/<UTC time>.json``."""
    moment = datetime.fromtimestamp(created_at / 1000, tz=timezone.utc)
    return f"explanations/{moment:%Y%m%dT%H%M%S}.{created_at % 1000:03d}Z.json"


def explain_version(ctx: Context, uri: str, data: Any, *, target: str | None = None, n_repeats: int = 5,
                    max_rows: int = DEFAULT_MAX_ROWS, seed: int = 0, scoring: str | None = None,
                    store: bool = True) -> dict[str, Any]:
    """Global importance of a registered version's features on ``data``.

    Args:
        ctx: The service context.
        uri: ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``.
        data: A .csv/.csv.gz/.parquet file path, or a pandas/polars DataFrame,
            pyarrow table or dict of columns. Columns beyond the model's
            features (and ``target``) are ignored.
        target: The label column. With it, importance is the drop in
            ``scoring`` (accuracy for classifiers, R2 otherwise); without it,
            the change of the model's output.
        n_repeats: Shuffles per feature.
        max_rows: At most this many rows are used, drawn with ``seed``.
        seed: Seed for the row sample and the shuffles.
        scoring: A name from ``keel.governance.explain.SCORERS``.
        store: Attach the document to the version (needs the editor role).

    Returns:
        The ``keel.explanation/1`` document (see docs/explanations.md); when
        stored, it lies at ``explanation_path(doc["created_at"])``.

    Raises:
        InvalidInput: unknown target, missing feature columns, no rows, bad parameters.
        NotFound: the model, version or alias does not exist.
    """
    from keel.formats.api import load_model
    from keel.service.registry import resolve_uri
    from keel.service.tracking import now_ms
    from keel.service.version_artifacts import attach

    version = resolve_uri(ctx, uri)
    table, source, sha256 = _read(data)
    model = load_model(version.uri, settings=ctx.settings)
    features = _features(model, table.column_names, target, source)
    columns, labels = _split(table, features, target, source)
    total = core.num_rows(columns)
    rows = core.sample_rows(total, max_rows, seed)
    columns = core.take(columns, rows)
    labels = labels[rows] if labels is not None else None

    fns = _functions(model, features)
    result = core.permutation_importance(fns, columns, labels, scoring=scoring, n_repeats=n_repeats, seed=seed)
    importances, methods = list(result.importances), [core.PERMUTATION]
    shap = _tree_shap(model, columns, features)
    if shap is not None:
        importances += shap.global_importance()
        methods.append(core.TREE_SHAP)
    importances.sort(key=lambda i: -i.importance if np.isfinite(i.importance) else np.inf)
    doc = _json_safe({
        "schema": SCHEMA, "model": version.uri, "created_at": now_ms(), "created_by": ctx.actor,
        "data": {"rows": len(rows), "total_rows": total, "source": source, "sha256": sha256},
        "target": target, "methods": methods,
        "global": [i.to_dict() for i in importances],
        "score": {"name": result.measure, "baseline": result.baseline} if result.baseline is not None else None,
        "params": {"n_repeats": n_repeats, "max_rows": max_rows, "seed": seed, "measure": result.measure,
                   "shap_output": shap.output if shap is not None else None},
    })
    if store:
        body = json.dumps(doc, indent=2, allow_nan=False).encode()
        attach(ctx, version.name, version.version, explanation_path(doc["created_at"]), body, kind=KIND)
    return doc


def latest_explanation(ctx: Context, name: str, version: int) -> dict[str, Any] | None:
    """The newest stored explanation of ``name``/``version``, or None if it has none."""
    from keel.service.version_artifacts import list_attached, read_attached

    items = list_attached(ctx, name, version, kind=KIND)
    return json.loads(read_attached(ctx, items[0])) if items else None


def explain_rows(model_or_uri: Any, X: Any, *, background: Any = None, class_index: int | None = None,
                 settings: Any = None) -> dict[str, Any]:
    """Per-row explanations: how much each feature moved each row's output.

    Tree models get exact tree SHAP (``method: "tree_shap"``; ``base_value`` plus
    a row's values is its raw margin, given in ``outputs``); other models get
    ``"substitution"``: the output minus the output with that feature set to its
    typical value in ``background`` (default: ``X`` itself, which then needs two
    or more rows).

    Args:
        model_or_uri: A ``LoadedModel``, or any URI ``keel.load_model`` takes.
        X: The rows to explain (DataFrame, dict of columns, 2-D array, or file path).
        background: Rows that define typical values for ``substitution``.
        class_index: For multi-class models, which class's output to explain
            (default: the class predicted most often among the rows).
        settings: Settings for loading a URI.

    Returns:
        ``{"method", "features", "output", "class_index", "base_value",
        "values": [[per feature] per row], "outputs": [per row]}``.
    """
    from keel.formats.api import load_model
    from keel.formats.loaded import LoadedModel

    model = model_or_uri if isinstance(model_or_uri, LoadedModel) else load_model(model_or_uri, settings=settings)
    table, source, _ = _read(X)
    features = _features(model, table.column_names, None, source)
    columns, _ = _split(table, features, None, source)
    contributions = _tree_shap(model, columns, features)
    if contributions is None:
        if background is None and core.num_rows(columns) < 2:
            raise InvalidInput("explaining one row of a non-tree model needs background= (a few typical rows)")
        reference = columns if background is None else _split(_read(background)[0], features, None, "background")[0]
        contributions = core.substitution(_functions(model, features), columns, reference)
    return contributions.rows(class_index)


# --- plumbing -----------------------------------------------------------------

def _read(data: Any) -> tuple[Any, str, str | None]:
    """(table, source, sha256 of the file or None)."""
    from keel.formats.bundle import sha256_file
    from keel.tracking.datasets import to_arrow

    if isinstance(data, (str, os.PathLike)):
        path = os.fsdecode(os.fspath(data))
        if not os.path.isfile(path):
            raise InvalidInput(f"data file {path} does not exist; give a .csv, .csv.gz, .parquet or .pq file")
        return to_arrow(path), path, sha256_file(path)
    try:
        return to_arrow(data), "dataframe", None
    except TypeError as exc:
        raise InvalidInput(f"cannot read the data: {exc}") from None


def _features(model: Any, available: list[str], target: str | None, source: str) -> list[str]:
    """The model's feature columns, checked against the data's."""
    if target is not None and target not in available:
        raise InvalidInput(f"target column {target!r} is not in {source}; its columns are: {', '.join(available)}")
    signature = model.signature
    if signature is not None and signature.columnar:
        names = [spec.name for spec in signature.inputs]
        missing = [n for n in names if n not in available]
        if missing:
            raise InvalidInput(f"{source} lacks the model's feature column(s) {', '.join(map(repr, missing))} "
                               f"(the model {model.uri} takes: {', '.join(names)})")
        if target in names:
            raise InvalidInput(f"target {target!r} is one of the model's features; name the label column")
        return names
    names = [n for n in available if n != target]  # an unnamed tensor: every other column, in order
    shape = signature.inputs[0].shape if signature is not None else ()
    if len(shape) == 2 and shape[1] not in (-1, len(names)):
        besides = " besides the target" if target is not None else ""
        raise InvalidInput(f"the model {model.uri} takes {shape[1]} features (unnamed, in order); {source} has "
                           f"{len(names)} column(s){besides}: {', '.join(names)}; if one is the label, "
                           "name it as the target (--target)")
    return names


def _split(table: Any, features: list[str], target: str | None, source: str
           ) -> tuple[core.Columns, np.ndarray | None]:
    """Feature columns as numpy arrays, and the labels; rows without a label are dropped."""
    missing = [name for name in features if name not in table.column_names]
    if missing:
        raise InvalidInput(f"{source} lacks the feature column(s) {', '.join(map(repr, missing))}")
    if target is not None:
        table = table.filter(table.column(target).is_valid())
    if table.num_rows == 0:
        raise InvalidInput(f"{source} has no rows" + (f" with a value in {target!r}" if target else "")
                           + "; explanations need data")
    columns = {name: table.column(name).to_numpy() for name in features}
    return columns, table.column(target).to_numpy() if target is not None else None


def _to_input(model: Any, columns: core.Columns) -> Any:
    if model.signature is not None and model.signature.columnar:
        return columns  # a dict of columns; the signature checks and converts it
    return np.column_stack(list(columns.values()))


def _functions(model: Any, features: list[str]) -> core.ModelFunctions:
    proba = (lambda c: model.predict_proba(_to_input(model, c))) if model.has_proba else None
    return core.ModelFunctions(lambda c: model.predict(_to_input(model, c)), proba)


def _tree_shap(model: Any, columns: core.Columns, features: list[str]) -> core.Contributions | None:
    try:
        return core.tree_shap(model.native, model.prepare(_to_input(model, columns)), features)
    except Exception as exc:  # e.g. CatBoost text features: permutation importance still stands
        warnings.warn(f"tree SHAP failed for {model.uri} ({type(exc).__name__}: {exc}); "
                      "using model-agnostic methods only", stacklevel=3)
        return None


def _json_safe(value: Any) -> Any:
    """NaN and infinities (an R2 on a constant target) become null: strict JSON for every reader."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
