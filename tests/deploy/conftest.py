"""Models and specs shared by the deploy tests (trained once per module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: Any, output: Any, timeout: float = 180.0) -> None:
    """Until ``url`` answers 200; fails with ``output()`` (what the process wrote) if it exits or never does."""
    import time

    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the process exited {proc.returncode}: {output()}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not become ready: {output()}")


def spec_for(bundle: Path, *, target: str = "kubernetes", profile: Any = None, **kw: Any):
    """A DeploySpec for a bundle folder, as the service builds it."""
    from keel.deploy.base import DeploySpec
    from keel.deploy.profiles import Profile
    from keel.formats.bundle import MANIFEST, read_manifest, sha256_file

    manifest = read_manifest(bundle)
    files = {**manifest.files, MANIFEST: sha256_file(bundle / MANIFEST)}
    values = dict(target=target, name="churn-v3", model_uri="models:/churn/3", bundle=bundle,
                  bundle_files=dict(sorted(files.items())), manifest=manifest.data, profile=profile or Profile(),
                  model_name="churn", model_version=3)
    values.update(kw)
    return DeploySpec(**values)


@pytest.fixture(scope="module")
def data():
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=600, n_features=6, n_informative=4, random_state=1)
    return {"X": X, "y": y, "train": slice(0, 400), "held": slice(400, 600)}


@pytest.fixture(scope="module")
def sk_bundle(tmp_path_factory, data) -> Path:
    """A scikit-learn logistic regression saved as a bundle folder."""
    from sklearn.linear_model import LogisticRegression

    import keel

    X, y = data["X"][data["train"]], data["y"][data["train"]]
    model = LogisticRegression(max_iter=500).fit(X, y)
    folder = tmp_path_factory.mktemp("bundles") / "churn"
    keel.save_model(model, folder, input_example=X[:5])
    return folder


@pytest.fixture(scope="module")
def onnx_bundle(tmp_path_factory, data) -> dict:
    """The same kind of model converted to ONNX and saved as an ONNX bundle, plus the original."""
    import numpy as np
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    import keel

    X, y = data["X"][data["train"]], data["y"][data["train"]]
    model = LogisticRegression(max_iter=500).fit(X, y)
    onx = to_onnx(model, initial_types=[("input", FloatTensorType([None, X.shape[1]]))],
                  options={id(model): {"zipmap": False}})
    folder = tmp_path_factory.mktemp("bundles") / "churn-onnx"
    keel.save_model(onx, folder, input_example=X[:5].astype(np.float32))
    return {"bundle": folder, "model": model}
