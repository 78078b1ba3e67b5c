"""MLflow model directories, written by MLflow itself, import and predict as MLflow's own loader does."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import keel
from keel.errors import PermissionDenied
from keel.formats.mlflow_import import read_mlflow_model

pytestmark = pytest.mark.store
REQS = ["scikit-learn"]  # explicit requirements: MLflow's own inference takes ~20 s per model


@pytest.fixture(scope="module")
def data():
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=300, n_features=6, random_state=0)
    return pd.DataFrame(X, columns=[f"f{i}" for i in range(6)]), y


def _import(keel_env, path, *extra):
    proc = subprocess.run([sys.executable, "-m", "keel.cli.main", "models", "import", str(path), "--format",
                           "mlflow", "--json", *extra], env=keel_env, capture_output=True, text=True)
    return proc


def test_sklearn_skops_model_imports_via_cli_and_matches_mlflow(data, keel_env, settings, tmp_path):
    import mlflow.sklearn
    from sklearn.ensemble import RandomForestClassifier

    frame, y = data
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(frame, y)
    path = tmp_path / "mlflow-rf"
    mlflow.sklearn.save_model(model, path, input_example=frame.head(3), pip_requirements=REQS,
                              serialization_format="skops", skops_trusted_types=["sklearn.tree._tree.Tree"])
    proc = _import(keel_env, path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["format"] == "sklearn" and info["uri"].startswith("runs:/")
    ours = keel.load_model(info["uri"], settings=settings)
    theirs = mlflow.pyfunc.load_model(str(path))
    np.testing.assert_array_equal(ours.predict(frame), np.asarray(theirs.predict(frame)))
    np.testing.assert_allclose(ours.predict_proba(frame), model.predict_proba(frame), atol=1e-12)
    assert [s.name for s in ours.signature.inputs] == list(frame.columns)  # from MLflow's input example
    run = keel.Client(settings).get_run(info["run_id"])
    assert run.tags["keel.import_format"] == "mlflow" and run.tags["mlflow.flavor"] == "sklearn"


def test_xgboost_lightgbm_and_onnx_flavors(data, tmp_path):
    import lightgbm as lgb
    import mlflow.lightgbm
    import mlflow.onnx
    import mlflow.xgboost
    import xgboost as xgb
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    frame, y = data
    X = frame.to_numpy()
    xgb_model = xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(X, y)
    mlflow.xgboost.save_model(xgb_model, tmp_path / "xgb", pip_requirements=["xgboost"])
    got = read_mlflow_model(tmp_path / "xgb")
    np.testing.assert_allclose(got.model.predict_proba(X), xgb_model.predict_proba(X), atol=1e-7)
    np.testing.assert_allclose(got.model.predict_proba(X),
                               mlflow.pyfunc.load_model(str(tmp_path / "xgb")).get_raw_model().predict_proba(X))

    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), num_boost_round=10)
    mlflow.lightgbm.save_model(booster, tmp_path / "lgb", pip_requirements=["lightgbm"])
    got = read_mlflow_model(tmp_path / "lgb")
    np.testing.assert_allclose(got.model.predict(X), np.asarray(mlflow.pyfunc.load_model(str(tmp_path / "lgb"))
                                                                .predict(pd.DataFrame(X))).ravel())

    sk = LogisticRegression(max_iter=500).fit(X, y)
    onx = to_onnx(sk, X[:1].astype(np.float32), options={id(sk): {"zipmap": False}})
    mlflow.onnx.save_model(onx, tmp_path / "onnx", pip_requirements=["onnxruntime"])
    got = read_mlflow_model(tmp_path / "onnx")
    assert got.flavor == "onnx" and got.model.graph.output[0].name == "label"


def test_pickled_flavor_needs_explicit_consent_and_is_stored_pickle_free(data, keel_env, settings, tmp_path):
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    frame, y = data
    model = LogisticRegression(max_iter=500).fit(frame, y)
    path = tmp_path / "mlflow-pickle"
    mlflow.sklearn.save_model(model, path, pip_requirements=REQS, serialization_format="cloudpickle")
    with pytest.raises(PermissionDenied, match="is a pickle"):
        read_mlflow_model(path)
    refused = _import(keel_env, path)
    assert refused.returncode == 1 and "--allow-unverified-pickle" in refused.stderr
    proc = _import(keel_env, path, "--allow-unverified-pickle")
    assert proc.returncode == 0, proc.stderr
    assert "WARNING: loading unverified pickle" in proc.stderr
    info = json.loads(proc.stdout)
    loaded = keel.load_model(info["uri"], settings=settings)
    assert loaded.manifest.data["pickles"] == [] and "model.skops" in loaded.manifest.files
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))


def test_not_an_mlflow_directory(tmp_path):
    from keel.errors import NotFound

    with pytest.raises(NotFound, match="MLmodel is missing"):
        read_mlflow_model(tmp_path)


def test_custom_pyfunc_model_is_kept_whole_and_runs_under_mlflow(keel_env, settings, tmp_path):
    import mlflow.pyfunc

    from pyfunc_model import RowSum

    path = tmp_path / "pyfunc"
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.5, 0.25, 4.0]})
    import pyfunc_model

    # code_paths: MLflow copies the model's module into the directory, so it loads anywhere
    mlflow.pyfunc.save_model(path, python_model=RowSum(), input_example=frame, pip_requirements=["numpy"],
                             code_paths=[pyfunc_model.__file__])
    refused = _import(keel_env, path)
    assert refused.returncode == 1 and "python_function model" in refused.stderr
    proc = _import(keel_env, path, "--allow-unverified-pickle")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["format"] == "mlflow-pyfunc"
    loaded = keel.load_model(info["uri"], settings=settings)  # by URI: the store vouches for the pickle
    assert loaded.manifest.data["pickles"] == ["mlflow/python_model.pkl"]
    np.testing.assert_allclose(np.asarray(loaded.predict(frame)).ravel(),
                               np.asarray(mlflow.pyfunc.load_model(str(path)).predict(frame)).ravel())
