"""Conformance checks for model format plug-ins, in the spirit of scikit-learn's check_estimator.

``check_format(model, X)`` saves ``model`` as a bundle, reloads it, and checks
what every format must guarantee: the manifest and lock are complete, the
reloaded model predicts exactly what the original does, an edited file is
refused naming it, and the signature is enforced.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from keel.errors import IntegrityError, InvalidInput


def check_format(model: Any, X: Any, folder: str | os.PathLike[str], *, format: str | None = None,
                 proba_tolerance: float = 1e-6, example_rows: int = 5) -> Any:
    """Run every conformance check; returns the reloaded model. Raises AssertionError on a failure."""
    import numpy as np

    from keel.envs.lock import EnvironmentLock, distributions_for_modules
    from keel.formats.api import load_model, save_model
    from keel.formats.bundle import LOCK, MANIFEST

    folder = Path(folder)
    example = _head(X, example_rows)
    manifest = save_model(model, folder / "bundle", format=format, input_example=example)
    data = manifest.data

    # 1. The manifest is complete and every file it lists is there with its hash.
    for key in ("format", "format_version", "libraries", "signature", "files", "environment"):
        assert data.get(key) not in (None, ""), f"keel.yaml lacks {key}"
    assert LOCK in data["files"] and MANIFEST not in data["files"]
    assert set(data["files"]) == {p.relative_to(manifest.path).as_posix()
                                  for p in manifest.path.rglob("*") if p.is_file() and p.name != MANIFEST}

    # 2. Requirements are complete: every module the format needs is pinned in the lock.
    lock = EnvironmentLock.from_text((manifest.path / LOCK).read_text())
    needed = distributions_for_modules(data["modules"])
    canonical = {d.lower().replace("_", "-").replace(".", "-") for d in needed}
    missing = sorted(canonical - set(lock.packages))
    assert not missing, f"requirements.lock misses {missing}"
    assert data["libraries"], "no library versions recorded"

    # 3. The reloaded model predicts what the original predicts.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_model(manifest.path, allow_unverified_pickle=True)
    expected, got = _native_predict(model, X), np.asarray(loaded.predict(X))
    if np.issubdtype(np.asarray(expected).dtype, np.floating):
        np.testing.assert_allclose(got, expected, rtol=0, atol=proba_tolerance)
    else:
        np.testing.assert_array_equal(got, expected)
    if loaded.has_proba and callable(getattr(model, "predict_proba", None)):
        np.testing.assert_allclose(loaded.predict_proba(X), _native_proba(model, X), rtol=0, atol=proba_tolerance)

    # 4. An edited file is refused, naming it.
    tampered = folder / "tampered"
    shutil.copytree(manifest.path, tampered)
    victim = next(f for f in data["files"] if f != LOCK)
    with open(tampered / victim, "ab") as fh:
        fh.write(b"\0")
    try:
        load_model(tampered, allow_unverified_pickle=True)
    except IntegrityError as exc:
        assert victim in str(exc), f"integrity error does not name {victim}: {exc}"
    else:
        raise AssertionError(f"an edited {victim} was loaded")

    # 5. The signature is enforced: input of the wrong width is refused with a clear error.
    narrow = _drop_last_column(X)
    try:
        loaded.predict(narrow)
    except InvalidInput:
        pass
    else:
        raise AssertionError("input with a missing column was accepted")
    return loaded


def _head(X: Any, n: int) -> Any:
    return X.head(n) if hasattr(X, "head") else X[:n]


def _drop_last_column(X: Any) -> Any:
    if hasattr(X, "iloc"):
        return X.iloc[:, :-1]
    return X[:, :-1]


def _native_predict(model: Any, X: Any) -> Any:
    import numpy as np

    if type(model).__module__.startswith("onnx"):
        import onnxruntime as ort

        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: np.asarray(X, dtype=np.float32)})[0]
    if any(c.__module__.split(".")[0] == "torch" for c in type(model).__mro__):  # nn.Module: forward
        import torch

        with torch.no_grad():
            return model(torch.as_tensor(np.asarray(X, dtype=np.float32))).numpy()
    if type(model).__name__ == "Booster" and type(model).__module__.startswith("xgboost"):
        import xgboost as xgb

        return model.predict(xgb.DMatrix(X))
    return np.asarray(model.predict(X))


def _native_proba(model: Any, X: Any) -> Any:
    return model.predict_proba(X)
