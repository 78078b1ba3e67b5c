"""A custom MLflow python_function model, in a module of its own (imported by the MLflow import tests)."""

import mlflow.pyfunc
import numpy as np


class RowSum(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return np.asarray(model_input, dtype=float).sum(axis=1)
