"""CatBoost models in CatBoost's own ``cbm`` format (no pickle).

CatBoostClassifier, CatBoostRegressor and the generic CatBoost are saved with
``save_model(format="cbm")`` and rebuilt as the same class, so the class
labels and ``predict_proba`` of a classifier come back. A model trained with
categorical, text or embedding features is handed a DataFrame, whose columns
keep their types (strings stay strings); any other model takes a plain array.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keel.errors import InvalidInput
from keel.formats.base import MethodPredictor, Saved

FILE = "model.cbm"
_CLASSES = {"CatBoostClassifier", "CatBoostRegressor", "CatBoost"}


class CatBoostFormat:
    name = "catboost"
    version = 1

    def matches(self, model: Any) -> bool:
        import catboost

        return isinstance(model, catboost.CatBoost)

    def save(self, model: Any, folder: Path) -> Saved:
        kind = type(model).__name__
        if kind not in _CLASSES:
            raise InvalidInput(f"unsupported CatBoost model type {kind}; use one of {sorted(_CLASSES)}")
        if not model.is_fitted():
            raise InvalidInput(f"the {kind} is not fitted; call fit() before saving it")
        model.save_model(str(folder / FILE), format="cbm")
        # Categorical, text and embedding columns must reach CatBoost with their
        # own types, which a single numpy array (one dtype) cannot carry.
        frame = any((model.get_cat_feature_indices(), model.get_text_feature_indices(),
                     model.get_embedding_feature_indices()))
        return Saved(files=[FILE], modules=["catboost", "numpy"], meta={"class": kind, "frame": frame})

    def wrap(self, model: Any, saved: Saved) -> MethodPredictor:
        return _predictor(model, saved.meta["frame"])

    def load(self, folder: Path, saved: Saved) -> MethodPredictor:
        import catboost

        kind = saved.meta.get("class")
        if kind not in _CLASSES:
            raise InvalidInput(f"bundle names an unknown CatBoost class {kind!r}; expected one of {sorted(_CLASSES)}")
        model = getattr(catboost, kind)()
        model.load_model(str(folder / FILE), format="cbm")
        return _predictor(model, bool(saved.meta.get("frame")))


def _predictor(model: Any, frame: bool) -> MethodPredictor:
    # The generic CatBoost class has no predict_proba; only the classifier does.
    return MethodPredictor(model, frame, proba=type(model).__name__ == "CatBoostClassifier")
