"""Data and models shared by the format tests: small, generated, deterministic."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def classification():
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    X, y = make_classification(n_samples=600, n_features=8, n_informative=5, random_state=0)
    return train_test_split(X, y, test_size=0.3, random_state=0)


@pytest.fixture(scope="session")
def frame_data():
    """A DataFrame with numeric and categorical columns, as real tabular data has."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame({
        "age": rng.integers(18, 80, n),
        "income": rng.normal(50_000, 15_000, n),
        "city": rng.choice(["oslo", "lima", "pune"], n),
    })
    y = ((frame["income"] > 52_000) ^ (frame["city"] == "lima")).astype(int).to_numpy()
    return frame, y
