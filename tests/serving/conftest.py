"""Registered models for the serving tests (a store shared by a test module)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).parent


@pytest.fixture(scope="module")
def trained_models(tmp_path_factory) -> Iterator[dict]:
    """tiny (logistic regression, ONNX copy), forest (random forest) and slow (custom Python) registered."""
    sys.path.insert(0, str(ROOT))
    import keel
    from keel.formats import onnx_copy
    from keel.settings import Settings
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from slow_model import SlowModel

    home = tmp_path_factory.mktemp("serve") / "home"
    settings = Settings.load({"home": home, "user": "trainer"}, env={})
    X, y = make_classification(n_samples=2000, n_features=20, random_state=0)
    tiny = LogisticRegression(max_iter=1000).fit(X, y)
    forest = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0).fit(X, y)
    with keel.start_run("serve", settings=settings):
        keel.log_model(tiny, "tiny", input_example=X[:5], register="tiny")
        keel.log_model(forest, "forest", input_example=X[:5], register="forest")
        keel.log_model(SlowModel(0.05), "slow", input_example=X[:2, :3], register="slow")
    assert onnx_copy.wait(180)
    yield {"home": home, "X": X, "y": y, "tiny": tiny, "forest": forest, "settings": settings}
    sys.path.remove(str(ROOT))
