"""Bring an MLflow model directory into keel: read ``MLmodel``, load the native files, re-save as a keel bundle.

The native flavors (scikit-learn saved with skops, XGBoost, LightGBM
boosters, ONNX) are read without mlflow installed. MLflow's pickle-based
flavors (cloudpickle scikit-learn, LightGBM scikit-learn wrappers) are loaded
only with ``allow_unverified_pickle=True``, since nothing vouches for their
content; once imported, the model is stored in keel's pickle-free formats.
Custom ``python_function`` models can only run under mlflow: they are kept
whole (format ``mlflow-pyfunc``), also only with that consent, and from then
on their pickles load only when keel's store recorded their hash.
"""

from __future__ import annotations

import json
import pickle
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.errors import InvalidInput, NotFound, PermissionDenied

NATIVE = ("sklearn", "xgboost", "lightgbm", "onnx")
# skops types from these packages are trusted on import; anything else needs the user's say-so.
_SAFE_PACKAGES = {"sklearn", "numpy", "scipy", "builtins", "collections", "xgboost", "lightgbm", "catboost"}


@dataclass(frozen=True)
class Imported:
    model: Any
    flavor: str
    input_example: Any
    mlflow: dict[str, Any]  # what MLflow recorded: version, uuid, flavor details


def read_mlflow_model(path: str | Path, *, allow_unverified_pickle: bool = False) -> Imported:
    """Load the model in an MLflow model directory through its native flavor."""
    import yaml

    folder = Path(path)
    mlmodel = folder / "MLmodel"
    if not mlmodel.is_file():
        raise NotFound(f"{folder} is not an MLflow model directory: MLmodel is missing")
    spec = yaml.safe_load(mlmodel.read_text()) or {}
    flavors = spec.get("flavors") or {}
    flavor = next((f for f in NATIVE if f in flavors), None)
    if flavor is not None:
        reader = {"sklearn": _sklearn, "xgboost": _xgboost, "lightgbm": _lightgbm, "onnx": _onnx}[flavor]
        model = reader(folder, flavors[flavor], allow_unverified_pickle)
    elif "python_function" in flavors:
        flavor, model = "python_function", _pyfunc(folder, allow_unverified_pickle)
    else:
        raise InvalidInput(f"{folder}: MLflow flavors {sorted(flavors)} cannot be imported; importable flavors "
                           f"are {', '.join(NATIVE)} and python_function")
    info = {"mlflow_version": spec.get("mlflow_version"), "model_uuid": spec.get("model_uuid"),
            "flavor": flavor, "run_id": spec.get("run_id")}
    return Imported(model, flavor, _input_example(folder, spec), info)


def _file(folder: Path, rel: str | None, what: str) -> Path:
    from keel.artifacts.paths import safe_join

    if not rel:
        raise InvalidInput(f"{folder}/MLmodel does not name the {what} file")
    file = safe_join(folder, rel)  # MLmodel is input: its paths must stay inside the folder
    if not file.is_file():
        raise NotFound(f"{folder}: the {what} file {rel} named in MLmodel is missing")
    return file


def _unpickle(file: Path, allow: bool) -> Any:
    if not allow:
        raise PermissionDenied(
            f"{file} is a pickle (MLflow's default for this flavor); loading it runs whatever code it holds. "
            "Pass --allow-unverified-pickle (allow_unverified_pickle=True) if you trust where it came from; "
            "keel then stores the model in a pickle-free format")
    warnings.warn(f"LOADING AN UNVERIFIED PICKLE from an MLflow model: {file}", stacklevel=3)
    print(f"keel: WARNING: loading unverified pickle {file}", file=sys.stderr)
    with open(file, "rb") as fh:
        return pickle.load(fh)


def _sklearn(folder: Path, conf: dict[str, Any], allow: bool) -> Any:
    file = _file(folder, conf.get("pickled_model"), "scikit-learn model")
    if conf.get("serialization_format") != "skops":
        return _unpickle(file, allow)
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=file)
    unsafe = sorted(t for t in untrusted if t.split(".", 1)[0] not in _SAFE_PACKAGES)
    if unsafe and not allow:
        raise PermissionDenied(f"{file} needs types outside scikit-learn/numpy/scipy to load: {unsafe}; "
                               "pass --allow-unverified-pickle if you trust them")
    return sio.load(file, trusted=untrusted)


def _xgboost(folder: Path, conf: dict[str, Any], allow: bool) -> Any:
    import xgboost as xgb

    file = _file(folder, conf.get("data"), "XGBoost model")
    module, _, name = (conf.get("model_class") or "xgboost.core.Booster").rpartition(".")
    if not module.startswith("xgboost") or not hasattr(xgb, name):
        raise InvalidInput(f"{folder}: unexpected XGBoost model class {conf.get('model_class')!r}")
    if name == "Booster":
        return xgb.Booster(model_file=str(file))
    model = getattr(xgb, name)()
    model.load_model(file)
    return model


def _lightgbm(folder: Path, conf: dict[str, Any], allow: bool) -> Any:
    import lightgbm as lgb

    file = _file(folder, conf.get("data"), "LightGBM model")
    if file.suffix == ".pkl":  # MLflow pickles LightGBM's scikit-learn wrappers
        return _unpickle(file, allow)
    return lgb.Booster(model_file=str(file))


def _onnx(folder: Path, conf: dict[str, Any], allow: bool) -> Any:
    import onnx

    return onnx.load(str(_file(folder, conf.get("data"), "ONNX model")))


def _pyfunc(folder: Path, allow: bool) -> Any:
    """A custom (python_function) model: kept whole, run by mlflow; it holds a cloudpickle."""
    import importlib.util

    from keel.formats.mlflow_pyfunc import MlflowDirectory

    if importlib.util.find_spec("mlflow") is None:
        raise InvalidInput(f"{folder} is an MLflow python_function model, which only mlflow can run; "
                           "install mlflow (or mlflow-skinny) to import it")
    if not allow:
        raise PermissionDenied(
            f"{folder} is an MLflow python_function model: a cloudpickle, and loading it runs whatever code it "
            "holds. Pass --allow-unverified-pickle (allow_unverified_pickle=True) if you trust where it came from")
    warnings.warn(f"IMPORTING AN UNVERIFIED PICKLED MLflow MODEL: {folder}", stacklevel=3)
    print(f"keel: WARNING: importing unverified pickled MLflow model {folder}", file=sys.stderr)
    return MlflowDirectory(folder.resolve())


def _input_example(folder: Path, spec: dict[str, Any]) -> Any:
    """MLflow's saved input example, as a DataFrame or array (None if there is none)."""
    info = spec.get("saved_input_example_info") or {}
    rel = info.get("artifact_path")
    if not rel:
        return None
    data = json.loads(_file(folder, rel, "input example").read_text())
    if info.get("type") == "dataframe":
        import pandas as pd

        if isinstance(data, dict) and "columns" in data:
            return pd.DataFrame(data["data"], columns=data["columns"])
        return pd.DataFrame(data)
    import numpy as np

    return np.asarray(data.get("inputs", data) if isinstance(data, dict) else data)
