"""A seeded scikit-learn pipeline that registers its model, written to a tmp folder per test."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

CHURN = """
import keel
import pandas as pd
from sklearn.linear_model import LogisticRegression

from features import clip_outliers


@keel.step(outputs=2)
def prepare(path, target: str):
    frame = clip_outliers(pd.read_csv(path))
    return frame.drop(columns=[target]), frame[target]


@keel.step
def train(X, y, C: float, seed: int):
    model = LogisticRegression(C=C, random_state=seed, max_iter=1000).fit(X, y)
    keel.log_dataset(X.assign(label=y), name="train")
    keel.log_metric("train_accuracy", float(model.score(X, y)))
    info = keel.log_model(model, "model", register="churn")
    return info.version


@keel.pipeline(datasets=["data"])
def churn(data="train.csv", target="label", C=1.0, seed=0):
    X, y = prepare(data, target)
    return train(X, y, C, seed)
"""

FEATURES = """
def clip_outliers(frame):
    return frame.assign(f0=frame["f0"].clip(-3.0, 3.0))
"""


@pytest.fixture
def churn_project(tmp_path: Path) -> Path:
    """pipe.py + features.py, and data files: weak.csv (40 rows), new.csv (760), noisy.csv (new, labels
    shuffled), eval.csv (600 held-out rows)."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification

    folder = tmp_path / "churn"
    folder.mkdir()
    (folder / "pipe.py").write_text(textwrap.dedent(CHURN))
    (folder / "features.py").write_text(textwrap.dedent(FEATURES))
    X, y = make_classification(n_samples=1400, n_features=5, n_informative=3, random_state=0)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)]).assign(label=y)
    frame.iloc[:40].to_csv(folder / "weak.csv", index=False)
    new = frame.iloc[40:800]
    new.to_csv(folder / "new.csv", index=False)
    noisy = new.assign(label=np.random.default_rng(1).permutation(new["label"].to_numpy()))
    noisy.to_csv(folder / "noisy.csv", index=False)
    frame.iloc[800:].to_csv(folder / "eval.csv", index=False)
    return folder
