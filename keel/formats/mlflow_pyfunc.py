"""MLflow ``python_function`` models kept as they are, inside a keel bundle.

A custom MLflow model (a ``PythonModel`` subclass, cloudpickled) can only be
run by mlflow itself. keel stores its whole MLflow directory under
``mlflow/`` in the bundle, hashes every file like any other bundle, treats
its pickles as pickles (loaded only when keel's store recorded their hash),
and pins mlflow in the lock. Only the MLflow importer creates these.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.formats.base import Saved

FOLDER = "mlflow"
_PICKLE_SUFFIXES = {".pkl", ".pickle", ".cloudpickle", ".joblib"}


@dataclass(frozen=True)
class MlflowDirectory:
    """An MLflow model directory to be stored as it is."""

    path: Path


class PyfuncPredictor:
    wants_frame = None  # pyfunc models take DataFrames for named columns, arrays otherwise

    def __init__(self, model: Any) -> None:
        self.native = model

    def predict(self, x: Any) -> Any:
        return self.native.predict(x)


class MlflowPyfuncFormat:
    name = "mlflow-pyfunc"
    version = 1

    def matches(self, model: Any) -> bool:
        return isinstance(model, MlflowDirectory)

    def save(self, model: MlflowDirectory, folder: Path) -> Saved:
        shutil.copytree(model.path, folder / FOLDER, symlinks=False)
        files = sorted(p.relative_to(folder).as_posix() for p in (folder / FOLDER).rglob("*") if p.is_file())
        pickles = [f for f in files if Path(f).suffix in _PICKLE_SUFFIXES]
        return Saved(files=files, modules=["mlflow", "cloudpickle", "numpy", "pandas"], pickles=pickles)

    def wrap(self, model: MlflowDirectory, saved: Saved) -> PyfuncPredictor:
        return self._load(model.path)

    def load(self, folder: Path, saved: Saved) -> PyfuncPredictor:
        return self._load(folder / FOLDER)  # the bundle checked every file's hash, pickles included

    @staticmethod
    def _load(path: Path) -> PyfuncPredictor:
        import mlflow.pyfunc

        return PyfuncPredictor(mlflow.pyfunc.load_model(str(path)))
