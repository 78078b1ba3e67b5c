"""The quickstart's data: scikit-learn's breast cancer set as CSV files, and the same rows as a
recalibrated microscope reads them (the drift that the loop detects and retrains on)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The microscope's recalibration: every length reads 25 % larger, so every area 56 % larger.
LENGTH_SCALE = 1.25
TARGET = "target"


@dataclass(frozen=True)
class Data:
    names: list[str]
    X_train: Any
    X_test: Any
    y_train: Any
    y_test: Any
    train: Path  # data/train.csv and data/test.csv: what version 1 is trained and tested on
    test: Path
    new_train: Path  # data/new/*.csv: the same samples, measured on the recalibrated microscope
    new_test: Path

    def columns(self, X: Any) -> dict[str, Any]:
        return {n: X[:, i] for i, n in enumerate(self.names)}

    def table(self, X: Any, y: Any) -> dict[str, Any]:
        return {**self.columns(X), TARGET: y}


def recalibrated(X: Any, names: list[str]) -> Any:
    """``X`` as the recalibrated microscope measures it: radii and perimeters x1.25, areas x1.25²."""
    X = X.copy()
    for i, name in enumerate(names):
        if "radius" in name or "perimeter" in name:
            X[:, i] *= LENGTH_SCALE
        elif "area" in name:
            X[:, i] *= LENGTH_SCALE ** 2
    return X


def scaled_columns(names: list[str]) -> list[str]:
    return [n for n in names if any(k in n for k in ("radius", "perimeter", "area"))]


def write_data(home: Path) -> Data:
    """Split the data set (seeded, stratified) and write the four CSV files under ``home/data``."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    raw = load_breast_cancer()
    names = [str(n).replace(" ", "_") for n in raw.feature_names]
    X_train, X_test, y_train, y_test = train_test_split(
        raw.data, raw.target, test_size=0.25, random_state=0, stratify=raw.target)
    folder = home / "data"
    data = Data(names, X_train, X_test, y_train, y_test, folder / "train.csv", folder / "test.csv",
                folder / "new" / "train.csv", folder / "new" / "test.csv")
    _write_csv(data.train, data.table(X_train, y_train))
    _write_csv(data.test, data.table(X_test, y_test))
    _write_csv(data.new_train, data.table(recalibrated(X_train, names), y_train))
    _write_csv(data.new_test, data.table(recalibrated(X_test, names), y_test))
    return data


def _write_csv(path: Path, columns: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(pa.table(columns), path)
