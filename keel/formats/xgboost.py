"""XGBoost models in XGBoost's own UBJSON format (no pickle).

The scikit-learn wrappers (XGBClassifier, XGBRegressor, ...) are saved with
``save_model`` and rebuilt as the same wrapper, so ``predict_proba`` and the
class labels come back; a bare Booster is rebuilt as a Booster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keel.errors import InvalidInput
from keel.formats.base import MethodPredictor, Saved

FILE = "model.ubj"
_WRAPPERS = {"XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier", "XGBRFRegressor"}


class BoosterPredictor:
    wants_frame = False

    def __init__(self, booster: Any) -> None:
        self.native = booster

    def predict(self, x: Any) -> Any:
        import xgboost as xgb

        return self.native.predict(xgb.DMatrix(x))


class XGBoostFormat:
    name = "xgboost"
    version = 1

    def matches(self, model: Any) -> bool:
        import xgboost as xgb

        return isinstance(model, (xgb.Booster, xgb.XGBModel))

    def save(self, model: Any, folder: Path) -> Saved:
        import xgboost as xgb

        kind = "Booster" if isinstance(model, xgb.Booster) else type(model).__name__
        if kind != "Booster" and kind not in _WRAPPERS:
            raise InvalidInput(f"unsupported XGBoost model type {kind}; use one of {sorted(_WRAPPERS)} or a Booster")
        model.save_model(folder / FILE)
        return Saved(files=[FILE], modules=["xgboost", "numpy", "scipy"], meta={"wrapper": kind})

    def wrap(self, model: Any, saved: Saved) -> Any:
        return BoosterPredictor(model) if saved.meta["wrapper"] == "Booster" else _wrapper(model)

    def load(self, folder: Path, saved: Saved) -> Any:
        import xgboost as xgb

        kind = saved.meta.get("wrapper")
        if kind == "Booster":
            return BoosterPredictor(xgb.Booster(model_file=str(folder / FILE)))
        if kind not in _WRAPPERS:
            raise InvalidInput(f"bundle names an unknown XGBoost wrapper {kind!r}")
        model = getattr(xgb, kind)()
        model.load_model(folder / FILE)
        return _wrapper(model)


def _wrapper(model: Any) -> MethodPredictor:
    # Fitted on a DataFrame: give it one back.
    return MethodPredictor(model, getattr(model, "feature_names_in_", None) is not None)
