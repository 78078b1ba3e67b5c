"""Evaluation data for the gate: read a table, split a holdout off new data, score a model on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keel.errors import InvalidInput

_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}


def read_table(path: str | Path) -> Any:
    """A CSV/TSV/Parquet file as a pandas DataFrame."""
    import pandas as pd

    path = Path(path)
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InvalidInput(f"evaluation data must be a .csv, .tsv or .parquet file, got {path}")
    if not path.is_file():
        raise InvalidInput(f"evaluation data {path} does not exist")
    if kind == "parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, sep="\t" if kind == "tsv" else ",")


def write_table(frame: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if _SUFFIXES.get(path.suffix.lower()) == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    return path


def split_holdout(path: str | Path, folder: Path, *, fraction: float, seed: int) -> tuple[Path, Path]:
    """Shuffle the rows of a data file (seeded) and write (train part, holdout part) next to each other."""
    if not 0 < fraction < 1:
        raise InvalidInput(f"holdout fraction must be between 0 and 1, got {fraction}")
    frame = read_table(path)
    if len(frame) < 4:
        raise InvalidInput(f"{path} has {len(frame)} rows: too few to hold some out for evaluation; pass --eval")
    shuffled = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    cut = max(1, int(round(len(shuffled) * fraction)))
    name, suffix = Path(path).stem, Path(path).suffix
    train = write_table(shuffled.iloc[cut:], folder / f"{name}{suffix}")
    holdout = write_table(shuffled.iloc[:cut], folder / f"{name}.holdout{suffix}")
    return train, holdout


def score(model: Any, frame: Any, target: str, ignore: tuple[str, ...] = ()) -> tuple[str, dict[str, float]]:
    """(task, metrics) of a loaded model on ``frame``: classification if it has predict_proba.

    ``ignore``: columns of ``frame`` that are not for the model unless its signature names them
    (the gate's sensitive column).
    """
    import numpy as np
    from sklearn import metrics

    if target not in frame.columns:
        raise InvalidInput(f"evaluation data has no target column {target!r}; columns: {', '.join(frame.columns)}")
    dropped = [target] + [c for c in ignore if c in frame.columns and not takes(model, c)]
    X, y = _inputs(model, frame.drop(columns=dropped)), frame[target].to_numpy()
    predicted = np.asarray(model.predict(X)).reshape(len(X), -1)[:, 0] if len(X) else np.asarray([])
    if getattr(model, "has_proba", False):
        result = {"accuracy": float(metrics.accuracy_score(y, predicted))}
        proba = np.asarray(model.predict_proba(X))
        if proba.ndim == 2 and proba.shape[1] == 2 and len(set(y.tolist())) == 2:
            result["roc_auc"] = float(metrics.roc_auc_score(y, proba[:, 1]))
        return "classification", result
    err = predicted.astype(float) - y.astype(float)
    return "regression", {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err))),
                          "r2": float(metrics.r2_score(y, predicted))}


def takes(model: Any, column: str) -> bool:
    """Whether the model's signature names ``column`` as an input (a model without one takes none by name)."""
    signature = getattr(model, "signature", None)
    return bool(signature is not None and signature.columnar and column in {s.name for s in signature.inputs})


def _inputs(model: Any, frame: Any) -> Any:
    """The columns the model takes (a model with named inputs ignores the data's other columns)."""
    signature = getattr(model, "signature", None)
    if signature is None or not signature.columnar:
        return frame
    wanted = [spec.name for spec in signature.inputs]
    return frame[[c for c in wanted if c in frame.columns]] if all(c in frame.columns for c in wanted) else frame


def fairness(model: Any, frame: Any, target: str, sensitive: str, limits: dict[str, float] | None) -> dict[str, Any]:
    """The model's fairness across ``sensitive`` on ``frame`` (``keel.monitoring.fairness``), as a dict."""
    import numpy as np

    from keel.monitoring.fairness import evaluate_fairness

    if sensitive not in frame.columns:
        raise InvalidInput(f"evaluation data has no sensitive column {sensitive!r}; columns: {', '.join(frame.columns)}")
    X = _inputs(model, frame.drop(columns=[target] + ([] if takes(model, sensitive) else [sensitive])))
    predicted = np.asarray(model.predict(X)).reshape(len(X), -1)[:, 0]
    return evaluate_fairness(frame[sensitive].to_numpy(), predicted, frame[target].to_numpy(),
                             limits=limits or None, sensitive=sensitive).to_dict()
