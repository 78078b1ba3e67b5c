"""Every format plug-in passes the conformance suite: round trip, hashes, lock, signature."""

from __future__ import annotations

import numpy as np
import pytest

from keel.testing.formats import check_format


def test_sklearn_estimator(classification, tmp_path):
    from sklearn.linear_model import LogisticRegression

    X_train, X_test, y_train, _ = classification
    model = LogisticRegression(max_iter=1000).fit(X_train, y_train)
    loaded = check_format(model, X_test, tmp_path)
    assert loaded.format == "sklearn" and not loaded.signature.columnar


def test_sklearn_pipeline_on_a_dataframe(frame_data, tmp_path):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, y = frame_data
    model = Pipeline([
        ("prep", ColumnTransformer([("num", StandardScaler(), ["age", "income"]),
                                    ("cat", OneHotEncoder(), ["city"])])),
        ("forest", RandomForestClassifier(n_estimators=20, random_state=0)),
    ]).fit(frame, y)
    loaded = check_format(model, frame, tmp_path)
    assert loaded.signature.columnar
    assert [s.name for s in loaded.signature.inputs] == ["age", "income", "city"]
    # skops does not trust a tree by default: keel derived it at save time, so loading needed no user action
    assert loaded.manifest.data["meta"]["trusted_types"] == ["sklearn.tree._tree.Tree"]


def test_xgboost_classifier(classification, tmp_path):
    import xgboost as xgb
    X_train, X_test, y_train, _ = classification
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(X_train, y_train)
    loaded = check_format(model, X_test, tmp_path)
    assert loaded.format == "xgboost" and "xgboost" in " ".join(loaded.manifest.data["libraries"])


def test_xgboost_booster_regression(classification, tmp_path):
    import xgboost as xgb
    X_train, X_test, y_train, _ = classification
    booster = xgb.train({"max_depth": 3}, xgb.DMatrix(X_train, label=y_train.astype(float)), num_boost_round=10)
    check_format(booster, X_test, tmp_path)


def test_lightgbm_classifier_and_regressor(classification, tmp_path):
    import lightgbm as lgb
    X_train, X_test, y_train, _ = classification
    clf = lgb.LGBMClassifier(n_estimators=20, verbose=-1).fit(X_train, y_train)
    loaded = check_format(clf, X_test, tmp_path / "clf")
    assert loaded.has_proba
    reg = lgb.LGBMRegressor(n_estimators=20, verbose=-1).fit(X_train, y_train.astype(float))
    assert not check_format(reg, X_test, tmp_path / "reg").has_proba


def test_lightgbm_multiclass_labels_come_back(tmp_path):
    import lightgbm as lgb
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, names)
    loaded = check_format(model, X, tmp_path)
    assert set(loaded.predict(X[:20])) <= set(names)


def test_onnx_model(classification, tmp_path):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    X_train, X_test, y_train, _ = classification
    sk = LogisticRegression(max_iter=1000).fit(X_train, y_train)
    onx = to_onnx(sk, X_train[:1].astype(np.float32), options={id(sk): {"zipmap": False}})
    loaded = check_format(onx, X_test.astype(np.float32), tmp_path)
    assert loaded.format == "onnx"
    np.testing.assert_allclose(loaded.predict_proba(X_test), sk.predict_proba(X_test), atol=1e-5)


def test_custom_python_model_captures_its_source(classification, tmp_path):
    from custom_model import ThresholdModel

    _, X_test, _, _ = classification
    model = ThresholdModel(np.linspace(-1, 1, X_test.shape[1]), 0.1)
    loaded = check_format(model, X_test, tmp_path)
    assert loaded.format == "python"
    assert "code/custom_model.py" in loaded.manifest.files
    assert loaded.manifest.data["pickles"] == ["model.pkl"]


def test_class_defined_in_main_is_refused_clearly(tmp_path):
    from keel.errors import InvalidInput
    from keel.formats.api import save_model

    Main = type("Main", (), {"predict": lambda self, X: X, "__module__": "__main__"})
    with pytest.raises(InvalidInput, match=r"defined in the script being run \(__main__\); move it into a module"):
        save_model(Main(), tmp_path / "m")


def test_unknown_object_and_format_are_named(tmp_path):
    from keel.errors import InvalidInput
    from keel.formats.api import save_model

    with pytest.raises(InvalidInput, match=r"cannot tell the format of a builtins.dict"):
        save_model({"a": 1}, tmp_path / "a")
    with pytest.raises(InvalidInput, match=r"unknown model format 'pickle'; known formats: xgboost, lightgbm"):
        save_model({"a": 1}, tmp_path / "b", format="pickle")
