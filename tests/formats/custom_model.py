"""A custom Python model, in a module of its own as keel asks (imported by the tests)."""

import numpy as np


class ThresholdModel:
    """Predicts 1 where the weighted sum of the features passes a threshold."""

    def __init__(self, weights, threshold):
        self.weights = np.asarray(weights, dtype=float)
        self.threshold = threshold

    def predict(self, X):
        return (np.asarray(X, dtype=float) @ self.weights > self.threshold).astype(int)

    def predict_proba(self, X):
        score = 1 / (1 + np.exp(-(np.asarray(X, dtype=float) @ self.weights - self.threshold)))
        return np.column_stack([1 - score, score])
