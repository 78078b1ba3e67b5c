"""`keel env show/verify/build` on a logged model, through the real command."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from keel.testing.cli import run_cli
import yaml

import keel
from keel.formats.bundle import LOCK, MANIFEST, sha256_file

pytestmark = pytest.mark.store
keel_cli = run_cli


@pytest.fixture
def logged(settings):
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=300, n_features=6, random_state=0)
    model = LogisticRegression(max_iter=500).fit(X, y)
    with keel.start_run("env", settings=settings):
        info = keel.log_model(model, "model", input_example=X[:3])
    return info.uri, model, X


def test_show_and_verify(logged, keel_env):
    import sklearn

    uri, _, _ = logged
    text = keel_cli(keel_env, "env", "show", uri).stdout
    assert f"scikit-learn=={sklearn.__version__}" in text and "# python: " in text
    data = json.loads(keel_cli(keel_env, "env", "show", uri, "--json").stdout)
    assert data["format"] == "sklearn" and data["packages"]["scikit-learn"] == sklearn.__version__
    ok = keel_cli(keel_env, "env", "verify", uri)
    assert "environment matches the model's lock" in ok.stdout


def test_verify_lists_every_mismatch_and_exits_1(logged, keel_env, tmp_path):
    import numpy
    import sklearn

    uri, model, X = logged
    folder = tmp_path / "bundle"
    keel.save_model(model, folder, input_example=X[:3])
    lock = (folder / LOCK).read_text()
    lock = lock.replace(f"scikit-learn=={sklearn.__version__}", "scikit-learn==0.0.1")
    lock = lock.replace(f"numpy=={numpy.__version__}", "numpy==0.0.2")
    (folder / LOCK).write_text(lock)
    manifest = yaml.safe_load((folder / MANIFEST).read_text())
    manifest["files"][LOCK] = sha256_file(folder / LOCK)
    (folder / MANIFEST).write_text(yaml.safe_dump(manifest))
    bad = keel_cli(keel_env, "env", "verify", str(folder), check=False)
    assert bad.returncode == 1
    assert "numpy: locked 0.0.2" in bad.stderr and "scikit-learn: locked 0.0.1" in bad.stderr


def test_build_creates_an_environment_where_the_model_predicts(logged, keel_env, settings, tmp_path):
    from keel.formats.api import resolve_bundle

    uri, model, X = logged
    target = tmp_path / "venv"
    out = keel_cli(keel_env, "env", "build", uri, "--path", str(target))
    assert "checked: the model loads there (LogisticRegression)" in out.stdout
    np.save(tmp_path / "x.npy", X)
    bundle, _ = resolve_bundle(uri, settings)  # the hash-verified local copy of the logged bundle
    code = ("import sys, numpy as np, keel; m = keel.load_model(sys.argv[1], strict=True); "
            "np.save(sys.argv[3], m.predict(np.load(sys.argv[2])))")
    subprocess.run([str(target / "bin" / "python"), "-c", code, str(bundle), str(tmp_path / "x.npy"),
                    str(tmp_path / "y.npy")], check=True, cwd=tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), model.predict(X))
