"""The quickstart's training pipeline: breast cancer, a scaler and a logistic SGD classifier.

``keel quickstart`` runs it once (version 1) and ``keel retrain`` replays it on
new data (version 2). It needs only keel's core dependencies: the CSV files are
read with pyarrow, and the model takes named columns, so the retrain gate and
the monitor see the same names as the files. The scaler lives inside the model
(an sklearn Pipeline): whoever scores the model hands it raw measurements.

    keel pipeline run quickstart_pipeline.py --param train=train.csv --param test=test.csv
"""

from __future__ import annotations

import keel


@keel.step(outputs=2)
def load(train: str, test: str, target: str):
    """Read both files and check that they hold the same columns, with the label in ``target``."""
    import pyarrow.csv as pacsv

    tables = pacsv.read_csv(train), pacsv.read_csv(test)
    for path, table in zip((train, test), tables):
        if target not in table.column_names:
            raise ValueError(f"{path} has no label column {target!r}; columns: {table.column_names}")
    if tables[0].column_names != tables[1].column_names:
        raise ValueError(f"{train} and {test} have different columns")
    return tables


@keel.step
def fit(train, test, target: str, alpha: float, epochs: int, seed: int, register: str) -> dict:
    """Train epoch by epoch, logging to this step's run; register the model.

    Returns the registered version and whether its ONNX copy is on its way ("pending") or why not.
    """
    import numpy as np
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import (accuracy_score, classification_report, confusion_matrix, f1_score, log_loss,
                                 roc_auc_score)
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    names = [n for n in train.column_names if n != target]
    X_train, X_test = (np.column_stack([t[n].to_numpy() for n in names]).astype(np.float64) for t in (train, test))
    y_train, y_test = train[target].to_numpy(), test[target].to_numpy()
    keel.log_params({"model": "SGDClassifier", "loss": "log_loss", "scaler": "StandardScaler"})
    keel.log_dataset(train, "breast-cancer-train", context="training", save=True)
    keel.log_dataset(test, "breast-cancer-test", context="evaluation")

    scaler = StandardScaler().fit(X_train)
    model = SGDClassifier(loss="log_loss", alpha=alpha, random_state=seed)
    Xs_train, Xs_test = scaler.transform(X_train), scaler.transform(X_test)
    classes = np.unique(y_train)
    for epoch in range(epochs):
        model.partial_fit(Xs_train, y_train, classes=classes)
        keel.log_metrics({
            "train_loss": log_loss(y_train, model.predict_proba(Xs_train)),
            "test_loss": log_loss(y_test, model.predict_proba(Xs_test)),
            "test_accuracy": accuracy_score(y_test, model.predict(Xs_test)),
        }, step=epoch)
    proba, pred = model.predict_proba(Xs_test)[:, 1], model.predict(Xs_test)
    keel.log_metrics({"accuracy": accuracy_score(y_test, pred), "f1": f1_score(y_test, pred),
                      "roc_auc": roc_auc_score(y_test, proba), "log_loss": log_loss(y_test, proba)}, step=epochs)

    coefficients = dict(sorted(zip(names, model.coef_[0].round(6).tolist()), key=lambda kv: -abs(kv[1])))
    keel.log_dict({"intercept": float(model.intercept_[0]), "coefficients": coefficients},
                  "details/coefficients.json")
    keel.log_dict({"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(), "features": names},
                  "details/scaler.json")
    labels = ["malignant", "benign"]  # scikit-learn's coding: 0 malignant, 1 benign
    keel.log_dict({"labels": labels, "matrix": confusion_matrix(y_test, pred).tolist()},
                  "evaluation/confusion_matrix.json")
    keel.log_text(classification_report(y_test, pred, target_names=labels), "evaluation/report.txt")

    # The scaler goes inside the model, and the example is a dict of named columns: the model takes
    # the files' columns by name, raw, wherever it is served or scored.
    example = {n: X_test[:5, i] for i, n in enumerate(names)}
    info = keel.log_model(make_pipeline(scaler, model), "model", input_example=example, register=register)
    return {"version": info.version, "onnx": info.onnx}


@keel.pipeline(name="breast-cancer", datasets=["train", "test"], experiment="quickstart")
def breast_cancer(train: str = "train.csv", test: str = "test.csv", target: str = "target", alpha: float = 1e-3,
                  epochs: int = 15, seed: int = 0, register: str = "breast-cancer"):
    train_table, test_table = load(train, test, target)
    return fit(train_table, test_table, target, alpha, epochs, seed, register)
