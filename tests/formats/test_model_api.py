"""log_model / load_model as a user calls them: runs:/ URIs, pickle safety, integrity, environment."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import yaml

import keel
from keel.errors import IntegrityError, InvalidInput, NotFound, PermissionDenied
from keel.formats.bundle import LOCK, MANIFEST, EnvironmentMismatch, UnverifiedPickle, sha256_file

pytestmark = pytest.mark.store


@pytest.fixture
def forest(frame_data):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame, y = frame_data
    pipe = Pipeline([("prep", ColumnTransformer([("cat", OneHotEncoder(), ["city"])], remainder="passthrough")),
                     ("rf", RandomForestClassifier(n_estimators=15, random_state=0))])
    return pipe.fit(frame, y), frame


def test_log_and_load_through_a_runs_uri(settings, forest):
    model, frame = forest
    with keel.start_run("models", settings=settings) as run:
        run.log_dataset(frame, "train")
        info = keel.log_model(model, "classifier", input_example=frame.head(3))
    assert info.uri == f"runs:/{run.id}/classifier" and info.format == "sklearn"
    loaded = keel.load_model(info.uri, settings=settings)
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    np.testing.assert_allclose(loaded.predict_proba(frame), model.predict_proba(frame), atol=1e-6)
    lineage = loaded.manifest.data["lineage"]
    assert lineage["run_id"] == run.id and lineage["datasets"][0]["name"] == "train"
    client = keel.Client(settings)
    assert client.get_run(run.id).tags["keel.model.classifier"].startswith("sklearn:")
    paths = {a.path for a in client.list_artifacts(run.id, "classifier")}
    assert {"classifier/keel.yaml", "classifier/model.skops", "classifier/requirements.lock"} <= paths


def test_predict_refuses_bad_input_clearly(settings, forest):
    model, frame = forest
    with keel.start_run("models", settings=settings):
        info = keel.log_model(model, "m", input_example=frame.head(3))
    loaded = keel.load_model(info.uri, settings=settings)
    with pytest.raises(InvalidInput, match="income"):
        loaded.predict(frame.drop(columns=["income"]))
    with pytest.raises(InvalidInput, match="colour"):
        loaded.predict(frame.assign(colour="red"))
    with pytest.raises(InvalidInput, match="age"):
        loaded.predict(frame.assign(age="old"))
    with pytest.raises(InvalidInput, match="no rows"):
        loaded.predict(frame.iloc[:0])
    # columns in another order, records and a dict of columns all work
    records = frame.head(4)[["city", "income", "age"]].to_dict("records")
    np.testing.assert_array_equal(loaded.predict(records), model.predict(frame.head(4)))


def test_edited_file_in_the_store_cache_or_folder_is_refused(settings, forest, tmp_path):
    model, frame = forest
    folder = tmp_path / "bundle"
    keel.save_model(model, folder, input_example=frame.head(2))
    (folder / "model.skops").write_bytes((folder / "model.skops").read_bytes() + b"x")
    with pytest.raises(IntegrityError, match=r"file model.skops was changed after the model was saved"):
        keel.load_model(folder)


def test_unverified_pickle_is_refused_unless_asked_loudly(settings, classification, tmp_path):
    from custom_model import ThresholdModel

    _, X, _, _ = classification
    model = ThresholdModel(np.ones(X.shape[1]), 0.0)
    folder = tmp_path / "custom"
    keel.save_model(model, folder, input_example=X[:3])
    with pytest.raises(PermissionDenied, match=r"contains the pickle model.pkl.*not recorded by keel's store"):
        keel.load_model(folder, settings=settings)
    with pytest.warns(UnverifiedPickle, match="LOADING AN UNVERIFIED PICKLE"):
        loaded = keel.load_model(folder, allow_unverified_pickle=True, settings=settings)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_logged_pickle_loads_by_uri_and_by_path(settings, classification):
    from custom_model import ThresholdModel

    _, X, _, _ = classification
    model = ThresholdModel(np.ones(X.shape[1]), 0.0)
    with keel.start_run("custom", settings=settings):
        info = keel.log_model(model, "custom", input_example=X[:3])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedPickle)
        loaded = keel.load_model(info.uri, settings=settings)
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
        # The same bundle on disk is trusted because the store recorded the pickle's hash.
        again = keel.load_model(loaded.manifest.path, settings=settings)
    np.testing.assert_array_equal(again.predict(X), model.predict(X))


def _rewrite_lock(folder, old, new):
    lock = (folder / LOCK).read_text().replace(old, new)
    (folder / LOCK).write_text(lock)
    manifest = yaml.safe_load((folder / MANIFEST).read_text())
    manifest["files"][LOCK] = sha256_file(folder / LOCK)
    (folder / MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=False))


def test_environment_mismatch_warns_and_strict_refuses(classification, tmp_path):
    import sklearn
    from sklearn.linear_model import LogisticRegression

    X_train, X_test, y_train, _ = classification
    folder = tmp_path / "m"
    keel.save_model(LogisticRegression().fit(X_train, y_train), folder, input_example=X_test[:2])
    # As if the model had been saved with another scikit-learn.
    _rewrite_lock(folder, f"scikit-learn=={sklearn.__version__}", "scikit-learn==0.0.1")
    with pytest.warns(EnvironmentMismatch, match=r"scikit-learn: locked 0.0.1, installed " + sklearn.__version__):
        keel.load_model(folder)
    with pytest.raises(IntegrityError, match="strict: refusing to load"):
        keel.load_model(folder, strict=True)


def test_model_uri_errors_are_clear(settings):
    with pytest.raises(NotFound, match="registered model 'churn' does not exist"):
        keel.load_model("models:/churn@production", settings=settings)
    with pytest.raises(InvalidInput, match="unsupported model URI"):
        keel.load_model("s3://bucket/model", settings=settings)
    with pytest.raises(NotFound, match="is not a keel model bundle"):
        keel.load_model("/nonexistent/folder", settings=settings)
    with keel.start_run("x", settings=settings) as run:
        pass
    with pytest.raises(NotFound, match="is not a logged model"):
        keel.load_model(f"runs:/{run.id}/nothing", settings=settings)


def test_log_model_needs_a_run(classification):
    from sklearn.linear_model import LogisticRegression

    X_train, _, y_train, _ = classification
    with pytest.raises(InvalidInput, match="log_model needs a run"):
        keel.log_model(LogisticRegression().fit(X_train, y_train), "m")
