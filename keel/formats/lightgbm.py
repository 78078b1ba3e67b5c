"""LightGBM models in LightGBM's own text format (no pickle).

The text file holds the booster; for the scikit-learn wrappers keel also
records the class labels so that the loaded model answers ``predict`` with
labels and ``predict_proba`` with one column per class, as the wrapper did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keel.formats.base import Saved

FILE = "model.txt"


class BoosterPredictor:
    def __init__(self, booster: Any, classes: list[Any] | None, wants_frame: bool) -> None:
        self.native = booster
        self.wants_frame = wants_frame
        self._classes = classes
        if classes is not None:
            self.predict_proba = self._proba

    def _proba(self, x: Any) -> Any:
        import numpy as np

        raw = self.native.predict(x)
        return np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw

    def predict(self, x: Any) -> Any:
        if self._classes is None:
            return self.native.predict(x)
        import numpy as np

        return np.asarray(self._classes)[self._proba(x).argmax(axis=1)]


class LightGBMFormat:
    name = "lightgbm"
    version = 1

    def matches(self, model: Any) -> bool:
        import lightgbm as lgb

        return isinstance(model, (lgb.Booster, lgb.LGBMModel))

    def save(self, model: Any, folder: Path) -> Saved:
        import lightgbm as lgb

        booster = model if isinstance(model, lgb.Booster) else model.booster_
        booster.save_model(str(folder / FILE))
        classes = getattr(model, "classes_", None)
        meta = {
            "wrapper": type(model).__name__,
            "classes": [c.item() if hasattr(c, "item") else c for c in classes] if classes is not None else None,
            "frame": getattr(model, "feature_names_in_", None) is not None,
        }
        return Saved(files=[FILE], modules=["lightgbm", "numpy", "scipy"], meta=meta)

    def wrap(self, model: Any, saved: Saved) -> Any:
        import lightgbm as lgb

        booster = model if isinstance(model, lgb.Booster) else model.booster_
        return BoosterPredictor(booster, saved.meta["classes"], saved.meta["frame"])

    def load(self, folder: Path, saved: Saved) -> Any:
        import lightgbm as lgb

        booster = lgb.Booster(model_file=str(folder / FILE))
        return BoosterPredictor(booster, saved.meta.get("classes"), bool(saved.meta.get("frame")))
