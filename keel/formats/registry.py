"""The format plug-ins, as a declarative table imported only when used."""

from __future__ import annotations

import importlib
from typing import Any

from keel.errors import InvalidInput
from keel.formats.base import ModelFormat, module_of

# name -> "module:Class". Detection tries them in this order: the boosters
# before scikit-learn (their estimators are scikit-learn estimators too), the
# catch-all custom Python format last.
FORMATS: dict[str, str] = {
    "xgboost": "keel.formats.xgboost:XGBoostFormat",
    "lightgbm": "keel.formats.lightgbm:LightGBMFormat",
    "catboost": "keel.formats.catboost:CatBoostFormat",
    "torch": "keel.formats.torch:TorchFormat",
    "sklearn": "keel.formats.sklearn:SklearnFormat",
    "onnx": "keel.formats.onnx:OnnxFormat",
    "mlflow-pyfunc": "keel.formats.mlflow_pyfunc:MlflowPyfuncFormat",  # made by the MLflow importer
    "python": "keel.formats.python:PythonFormat",
}
# Which top-level package makes an object a candidate for a format (no import needed).
_BY_PACKAGE = {"xgboost": "xgboost", "lightgbm": "lightgbm", "catboost": "catboost", "torch": "torch",
               "sklearn": "sklearn", "onnx": "onnx"}
# Formats whose models are often subclasses defined in user code (a torch.nn.Module
# subclass lives in the user's module): their package is also looked for along the
# class's MRO, by module name, so the library is imported only for its own objects.
_BY_BASE_PACKAGE = {"torch": "torch"}

_loaded: dict[str, ModelFormat] = {}


def get_format(name: str) -> ModelFormat:
    """The plug-in called ``name``; imports its module on first use."""
    if name not in FORMATS:
        raise InvalidInput(f"unknown model format {name!r}; known formats: {', '.join(FORMATS)}")
    plugin = _loaded.get(name)
    if plugin is None:
        module, _, cls = FORMATS[name].partition(":")
        plugin = _loaded[name] = getattr(importlib.import_module(module), cls)()
    return plugin


def detect_format(model: Any) -> ModelFormat:
    """The plug-in for a live model object, or InvalidInput saying what is accepted."""
    candidate = _BY_PACKAGE.get(module_of(model)) or _by_base_package(model)
    if candidate and get_format(candidate).matches(model):
        return get_format(candidate)
    for name in FORMATS:
        if name != candidate and name not in _BY_PACKAGE.values() and get_format(name).matches(model):
            return get_format(name)
    raise InvalidInput(
        f"cannot tell the format of a {type(model).__module__}.{type(model).__name__}: keel takes "
        "scikit-learn, XGBoost, LightGBM and CatBoost models, PyTorch modules, ONNX ModelProto objects, "
        "and any object with a predict() method (custom Python); pass format=... to choose one"
    )


def _by_base_package(model: Any) -> str | None:
    packages = ((cls.__module__ or "").split(".", 1)[0] for cls in type(model).__mro__)
    return next((_BY_BASE_PACKAGE[p] for p in packages if p in _BY_BASE_PACKAGE), None)
