"""`keel quickstart`: the loop on a dataset scikit-learn ships, narrated.

Grows with each capability. Today: train, track (params, metrics over steps,
datasets with profiles, artifacts), log and register the model as a bundle
and load it back by URI, make its ONNX copy, then govern it: model card,
explanation, a promotion to production under a policy with four eyes,
lineage, and the audit chain verified.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from keel.errors import IntegrityError
from keel.settings import Settings

EPOCHS = 15
MODEL_NAME = "breast-cancer"
REVIEWER = "risk-officer"
# What production asks of a version here (a team writes this in keel.toml).
POLICY = {"aliases": {"production": {"min_metrics": {"roc_auc": 0.95}, "require_card": True,
                                     "require_reference_dataset": True}}}


def run_quickstart(home: Path | None = None, console: Console | None = None) -> str:
    """Run the quickstart into a fresh KEEL_HOME; returns the run id."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from sklearn.pipeline import make_pipeline

    from keel.formats import onnx_copy
    from keel.formats.api import load_model, log_model
    from keel.tracking.fluent import client_for, start_run

    console = console or Console(highlight=False, soft_wrap=True)  # long lines stay whole in pipes
    t0 = time.perf_counter()
    home = Path(home) if home else Path(tempfile.mkdtemp(prefix="keel-quickstart-"))
    if home.exists() and any(home.iterdir()):
        from keel.errors import InvalidInput

        raise InvalidInput(f"quickstart needs a fresh KEEL_HOME, but {home} is not empty; pass another --home")
    # A fresh store beside the home, whatever KEEL_STORE_URI says: the quickstart never touches real data.
    settings = Settings.load({
        "home": home, "store_uri": f"sqlite:///{home.absolute() / 'keel.db'}",
        "artifact_uri": str(home.absolute() / "artifacts"), "policy": POLICY,
    })
    console.print(f"[bold]keel quickstart[/bold]  KEEL_HOME={home}")

    data = load_breast_cancer()
    names = [str(n).replace(" ", "_") for n in data.feature_names]
    X_train, X_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, random_state=0, stratify=data.target)
    console.print(f"1. data     breast cancer (scikit-learn): {len(X_train)} train / {len(X_test)} test rows, "
                  f"{len(names)} features")

    params = {"model": "SGDClassifier", "loss": "log_loss", "alpha": 1e-3, "epochs": EPOCHS,
              "scaler": "StandardScaler", "random_state": 0}
    with start_run(experiment="quickstart", name="breast-cancer-sgd", settings=settings,
                   tags={"task": "binary-classification"}) as run:
        run.log_params(params)
        train_table = {**{n: X_train[:, i] for i, n in enumerate(names)}, "target": y_train}
        test_table = {**{n: X_test[:, i] for i, n in enumerate(names)}, "target": y_test}
        train_ds = run.log_dataset(train_table, "breast-cancer-train", context="training", save=True)
        test_ds = run.log_dataset(test_table, "breast-cancer-test", context="evaluation")
        console.print(f"2. track    run {run.id} in experiment 'quickstart'; datasets hashed and profiled "
                      f"({train_ds.digest[:19]}..., {test_ds.digest[:19]}...)")

        scaler = StandardScaler().fit(X_train)
        Xs_train, Xs_test = scaler.transform(X_train), scaler.transform(X_test)
        model = SGDClassifier(loss="log_loss", alpha=params["alpha"], random_state=0)
        classes = np.unique(y_train)
        for epoch in range(EPOCHS):
            model.partial_fit(Xs_train, y_train, classes=classes)
            run.log_metrics({
                "train_loss": log_loss(y_train, model.predict_proba(Xs_train)),
                "test_loss": log_loss(y_test, model.predict_proba(Xs_test)),
                "test_accuracy": accuracy_score(y_test, model.predict(Xs_test)),
            }, step=epoch)
        proba = model.predict_proba(Xs_test)[:, 1]
        pred = model.predict(Xs_test)
        final = {"accuracy": accuracy_score(y_test, pred), "f1": f1_score(y_test, pred),
                 "roc_auc": roc_auc_score(y_test, proba), "log_loss": log_loss(y_test, proba)}
        run.log_metrics(final, step=EPOCHS)
        console.print(f"3. train    {EPOCHS} epochs, loss and accuracy logged per epoch; "
                      f"test accuracy {final['accuracy']:.3f}, ROC AUC {final['roc_auc']:.3f}")

        coefficients = dict(sorted(zip(names, model.coef_[0].round(6).tolist()), key=lambda kv: -abs(kv[1])))
        run.log_dict({"intercept": float(model.intercept_[0]), "coefficients": coefficients},
                     "details/coefficients.json")
        run.log_dict({"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(), "features": names},
                     "details/scaler.json")
        from sklearn.metrics import classification_report, confusion_matrix

        run.log_dict({"labels": [str(n) for n in data.target_names],
                      "matrix": confusion_matrix(y_test, pred).tolist()}, "evaluation/confusion_matrix.json")
        run.log_text(classification_report(y_test, pred, target_names=[str(n) for n in data.target_names]),
                     "evaluation/report.txt")
        stored = client_for(settings).list_artifacts(run.id)
        for info in stored:  # read back: every read re-checks the sha256
            client_for(settings).read_artifact(run.id, info.path)
        console.print(f"4. store    {len(stored)} artifacts stored content-addressed (sha256), read back and verified")

        pipeline = make_pipeline(scaler, model)
        info = log_model(pipeline, "model", input_example=X_test[:5], register=MODEL_NAME)
        loaded = load_model(info.registered, settings=settings)
        same = bool((loaded.predict(X_test) == pipeline.predict(X_test)).all())
        lock_size = len(loaded.manifest.data["libraries"])
        console.print(f"5. model    {info.uri}: {info.format} bundle (skops, no pickle), signature of "
                      f"{loaded.signature.inputs[0].shape[-1]} features, {lock_size} pinned "
                      f"libraries; registered as {info.registered}, reloaded by URI, hashes checked, "
                      f"predictions identical: {same}")

    onnx_copy.wait(30)
    client = client_for(settings)
    onnx = json.loads(client.get_run(run.id).tags.get(onnx_copy.tag_key("model"), json.dumps({"status": info.onnx})))
    if onnx["status"] == "passed":
        console.print(f"6. onnx     converted off the caller's path; parity on {onnx['rows']} rows: "
                      f"max |diff| {onnx['max_abs_diff']:.1e}, labels agree {onnx['label_agreement']:.1%} "
                      f"-> {onnx['uri']}")
    else:
        console.print(f"6. onnx     no ONNX copy: {onnx.get('reason', onnx['status'])}", markup=False)
    _print_run(console, client, run.id)
    _govern(console, settings, home, info.version, test_table)
    report = client.verify_audit()
    if not report.ok:
        raise IntegrityError(f"audit chain broken at event {report.first_bad_seq}: {report.reason}")
    console.print(f"10. audit   chain OK: {report.events_checked} events, head {report.head_hash[:16]}...")
    console.print(f"done in {time.perf_counter() - t0:.1f}s. Explore it:\n"
                  f"  export KEEL_HOME={home}\n  keel runs show {run.id}\n"
                  f"  keel card models:/{MODEL_NAME}@production\n  keel lineage models:/{MODEL_NAME}/1\n"
                  f"  keel audit log")
    return run.id


def _govern(console: Console, settings: Settings, home: Path, version: int, test_table: dict) -> None:
    """Card, explanation, promotion with four eyes, lineage: requirement 6 of the loop."""
    import dataclasses

    from keel import registry
    from keel.errors import PermissionDenied
    from keel.governance.card import render_html

    uri = f"models:/{MODEL_NAME}/{version}"
    registry.update_card(MODEL_NAME, settings=settings,
                         overview="Flags breast tumour samples as malignant or benign from 30 cell-nucleus "
                                  "measurements (Wisconsin diagnostic data).",
                         intended_use="A demonstration of keel's loop; not for clinical use.",
                         limitations="569 samples from one hospital; no demographic attributes to check fairness on.")
    explained = registry.explain(uri, test_table, target="target", settings=settings)
    top = [g for g in explained["global"] if g["method"] == "permutation"][:3]
    console.print(f"7. explain  permutation importance on the test set (accuracy drop): "
                  + ", ".join(f"{g['feature']} {g['importance']:.3f}" for g in top))

    request = registry.request_promotion(MODEL_NAME, version, "production", settings=settings,
                                         comment="first candidate")
    checks = ", ".join(f"{c['name']} {'ok' if c['passed'] else 'FAILED'}" for c in request.checks)
    try:  # four eyes: whoever asked cannot also approve
        registry.approve(request.id, reason="self-approval", settings=settings)
        raise AssertionError("self-approval was accepted")
    except PermissionDenied:
        pass
    reviewer = dataclasses.replace(settings, user=REVIEWER)
    registry.approve(request.id, reason="metrics and card reviewed", settings=reviewer)
    console.print(f"8. promote  {settings.user} asked for production ({checks}); their own approval was "
                  f"refused; {REVIEWER} approved -> models:/{MODEL_NAME}@production = version {version}")

    card_path = home / "model-card.html"
    card_path.write_text(render_html(registry.get_card(f"models:/{MODEL_NAME}@production", settings=settings)),
                         encoding="utf-8")
    graph = registry.lineage(f"models:/{MODEL_NAME}/{version}", direction="up", settings=settings)
    upstream = sorted({node.kind for node in graph.nodes.values() if node.id != graph.root})
    console.print(f"9. govern   lineage of {uri}: {', '.join(upstream)} upstream; model card (purpose, data, "
                  f"metrics, explanation, environment, approvals) -> {card_path}")


def _print_run(console: Console, client, run_id: str) -> None:
    run = client.get_run(run_id)
    table = Table("metric", "latest", "values", title=f"run {run.name} ({run.status})", title_justify="left")
    for key, value in run.metrics.items():
        table.add_row(key, f"{value:.4f}", str(len(client.metric_history(run_id, key))))
    console.print(table)
