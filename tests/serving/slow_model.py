"""A deliberately slow custom model, to overload the server in tests."""

import time

import numpy as np


class SlowModel:
    def __init__(self, seconds):
        self.seconds = seconds

    def predict(self, X):
        time.sleep(self.seconds)
        return np.asarray(X, dtype=float).sum(axis=1)
