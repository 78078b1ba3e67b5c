"""scikit-learn estimators and Pipelines, saved with skops' secure format (no pickle).

skops refuses to load types it does not trust. The types a model needs are
listed when it is saved and recorded in keel.yaml, whose hash the store
vouches for, so loading needs no user action and still loads nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keel.formats.base import MethodPredictor, Saved

FILE = "model.skops"


class SklearnFormat:
    name = "sklearn"
    version = 1

    def matches(self, model: Any) -> bool:
        try:
            from sklearn.base import BaseEstimator
        except ImportError:
            return False
        return isinstance(model, BaseEstimator) and callable(getattr(model, "predict", None))

    def save(self, model: Any, folder: Path) -> Saved:
        import skops.io as sio

        sio.dump(model, folder / FILE)
        trusted = sorted(sio.get_untrusted_types(file=folder / FILE))
        modules = ["sklearn", "skops", "numpy", "scipy"]
        if hasattr(model, "feature_names_in_"):
            modules.append("pandas")
        modules += sorted({t.split(".", 1)[0] for t in trusted} - {"sklearn", "numpy", "scipy", "builtins"})
        estimator = f"{type(model).__module__}.{type(model).__qualname__}"
        return Saved(files=[FILE], modules=modules, meta={"trusted_types": trusted, "estimator": estimator})

    def wrap(self, model: Any, saved: Saved) -> MethodPredictor:
        return _predictor(model)

    def load(self, folder: Path, saved: Saved) -> MethodPredictor:
        import skops.io as sio

        return _predictor(sio.load(folder / FILE, trusted=list(saved.meta.get("trusted_types", []))))


def _predictor(estimator: Any) -> MethodPredictor:
    # Fitted on a DataFrame: give it one back (column names, mixed types).
    return MethodPredictor(estimator, hasattr(estimator, "feature_names_in_"))
