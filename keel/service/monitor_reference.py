"""A monitor's reference, built once at creation: the summary the windows are compared with.

From a CSV/Parquet file: the model's input columns summarised, plus the
model's answers on them (the baseline of prediction drift) and, with a
target, its performance there. From a dataset logged at training: its column
profile (``keel.monitoring.summary_io.summary_from_profile``), without
answers. A labelled holdout can stand in for the reference's performance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from keel.errors import InvalidInput, NotFound
from keel.service.context import Context
from keel.store.schema import datasets

__all__ = ["build_reference", "holdout_performance"]


def build_reference(ctx: Context, model_uri: str, reference: str, target: str | None,
                    baseline: bool) -> tuple[Any, dict[str, Any], dict[str, Any] | None]:
    """The reference summary (model inputs, plus the model's answers), what it came from, its performance."""
    from keel.monitoring.columns import load_table, summarize, summarize_column
    from keel.monitoring.summary_io import summary_from_profile
    from keel.monitoring.window import PREDICTION

    if str(reference).startswith("datasets:/"):
        row = _dataset(ctx, str(reference))
        summary, left_out = summary_from_profile((row.profile or {}).get("columns", {}), row.num_rows,
                                                 source=str(reference))
        if target is not None:
            summary.columns.pop(target, None)
        info = {"kind": "dataset_profile", "uri": str(reference), "dataset_id": row.id, "digest": row.digest,
                "rows": row.num_rows, "left_out": left_out}
        return summary, info, None
    table = load_table(reference, what="reference")
    if table.num_rows == 0:
        raise InvalidInput(f"reference {reference} has no rows")
    if target is not None and target not in table.column_names:
        raise InvalidInput(f"target column {target!r} is not in the reference; columns: {table.column_names}")
    model = _load(ctx, model_uri) if baseline else None
    inputs, kept = _model_inputs(model, table, target)
    summary = summarize(inputs, source=str(reference), what="reference")
    info: dict[str, Any] = {"kind": "file", "uri": str(Path(reference).resolve()), "rows": table.num_rows,
                            "left_out": [n for n in table.column_names if n not in kept]}
    performance = None
    if model is not None:
        answers, scores = _predict(model, inputs)
        summary.columns[PREDICTION] = summarize_column(PREDICTION, _arrow(answers))
        info["baseline"] = "predictions of the model on the reference"
        if target is not None:
            performance = _performance(table[target], answers, scores)
    return summary, info, performance


def holdout_performance(ctx: Context, model_uri: str, path: str, target: str) -> dict[str, Any] | None:
    """The model's performance on a labelled file (its input columns and ``target``)."""
    from keel.monitoring.columns import load_table

    table = load_table(path, what="performance reference")
    if target not in table.column_names:
        raise InvalidInput(f"target column {target!r} is not in the performance reference {path}; "
                           f"columns: {table.column_names}")
    model = _load(ctx, model_uri)
    answers, scores = _predict(model, _model_inputs(model, table, target)[0])
    return _performance(table[target], answers, scores)


def _load(ctx: Context, model_uri: str) -> Any:
    import keel

    return keel.load_model(model_uri, settings=ctx.settings)


def _model_inputs(model: Any, table: Any, target: str | None) -> tuple[Any, list[str]]:
    """The columns of ``table`` the model takes, named as the prediction log names them, and their names here."""
    signature = getattr(model, "signature", None)
    wanted = {spec.name for spec in signature.inputs} if signature is not None and signature.columnar else None
    keep = [n for n in table.column_names if n != target and (wanted is None or n in wanted)]
    if wanted is not None and not keep:
        raise InvalidInput(f"the data has none of the model's input columns {sorted(wanted)}; "
                           f"its columns: {table.column_names}")
    inputs = table.select(keep)
    if signature is None or signature.columnar:
        return inputs, keep
    # A model taking one 2-D tensor: the log names its columns input_0, input_1, ...
    spec = signature.inputs[0]
    width = spec.shape[-1] if len(spec.shape) == 2 else None
    if width != inputs.num_columns:
        raise InvalidInput(f"the model takes one tensor {spec.name!r} of {width} columns; the data has "
                           f"{inputs.num_columns} (leave the target out with --target)")
    return inputs.rename_columns([f"{spec.name}_{i}" for i in range(width)]), keep


def _predict(model: Any, inputs: Any) -> tuple[Any, Any]:
    """The model's answers on ``inputs`` (and the positive class's score for a binary classifier)."""
    import numpy as np

    columns = {n: inputs[n].to_numpy(zero_copy_only=False) for n in inputs.column_names}
    signature = getattr(model, "signature", None)
    data = np.column_stack(list(columns.values())) if signature is not None and not signature.columnar else columns
    answers = np.asarray(model.predict(data))
    scores = None
    if getattr(model, "has_proba", False):
        proba = np.asarray(model.predict_proba(data))
        scores = proba[:, 1] if proba.ndim == 2 and proba.shape[1] == 2 else None
    return answers, scores


def _performance(truth: Any, answers: Any, scores: Any) -> dict[str, Any]:
    from keel.monitoring.performance import evaluate_performance

    return evaluate_performance(truth.to_numpy(zero_copy_only=False), answers, scores=scores).to_dict()


def _arrow(values: Any) -> Any:
    import pyarrow as pa

    return pa.array(values.ravel() if getattr(values, "ndim", 1) > 1 and values.shape[-1] == 1 else values)


def _dataset(ctx: Context, uri: str) -> Any:
    rest = uri.removeprefix("datasets:/")
    name, _, digest = rest.partition("/")
    query = sa.select(datasets).where(datasets.c.name == name)
    if digest:
        query = query.where(datasets.c.digest.like(f"{digest.removeprefix('sha256:')}%"))
    with ctx.store.read() as conn:
        row = conn.execute(query.order_by(datasets.c.created_at.desc()).limit(1)).first()
    if row is None:
        raise NotFound(f"no dataset {uri} (log one with keel.log_dataset, or give a CSV/Parquet file)")
    return row
