"""ONNX copies made in the background after log_model, parity-checked, used only if they pass."""

from __future__ import annotations

import json

import numpy as np
import pytest

import keel
from keel.formats import onnx_copy

pytestmark = pytest.mark.store


def _status(settings, run_id, name):
    return json.loads(keel.Client(settings).get_run(run_id).tags[onnx_copy.tag_key(name)])


@pytest.mark.parametrize("kind", ["forest", "xgboost", "lightgbm"])
def test_classical_models_get_a_checked_onnx_copy(settings, classification, kind):
    from sklearn.ensemble import RandomForestClassifier

    X_train, X_test, y_train, _ = classification
    if kind == "forest":
        model = RandomForestClassifier(n_estimators=30, max_depth=6, random_state=0).fit(X_train, y_train)
    elif kind == "xgboost":
        import xgboost as xgb

        model = xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(X_train, y_train)
    else:
        import lightgbm as lgb

        model = lgb.LGBMClassifier(n_estimators=20, verbose=-1).fit(X_train, y_train)
    with keel.start_run("onnx", settings=settings) as run:
        info = keel.log_model(model, "model", input_example=X_test[:5])
    assert info.onnx == "pending"  # log_model returned before the conversion finished
    assert onnx_copy.wait(timeout=120)
    status = _status(settings, run.id, "model")
    assert status["status"] == "passed", status
    assert status["max_abs_diff"] <= onnx_copy.MAX_ABS_DIFF and status["label_agreement"] >= onnx_copy.MIN_AGREEMENT
    assert status["rows"] == 5 + onnx_copy.PARITY_ROWS
    copy = keel.load_model(status["uri"], settings=settings)
    assert copy.format == "onnx"
    np.testing.assert_array_equal(copy.predict(X_test).ravel(), model.predict(X_test))
    np.testing.assert_allclose(copy.predict_proba(X_test), model.predict_proba(X_test), atol=1e-4)
    assert copy.manifest.data["lineage"]["converted_from"] == info.uri


def test_a_copy_that_cannot_be_made_is_recorded_not_raised(settings, frame_data):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame, y = frame_data
    model = Pipeline([("prep", ColumnTransformer([("cat", OneHotEncoder(), ["city"])], remainder="passthrough")),
                      ("lr", LogisticRegression(max_iter=500))]).fit(frame, y)
    with keel.start_run("onnx", settings=settings) as run:
        info = keel.log_model(model, "model", input_example=frame.head(5))
    assert onnx_copy.wait(timeout=120)
    status = _status(settings, run.id, "model")
    assert status["status"] == "unavailable" and "non-numeric" in status["reason"]
    assert keel.load_model(info.uri, settings=settings).predict(frame.head(3)) is not None


def test_formats_without_a_converter_say_so(settings, classification):
    from custom_model import ThresholdModel

    _, X, _, _ = classification
    with keel.start_run("onnx", settings=settings):
        info = keel.log_model(ThresholdModel(np.ones(X.shape[1]), 0), "m", input_example=X[:2])
    assert info.onnx == "not applicable to python models"
