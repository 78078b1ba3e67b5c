"""Train version 1 through the shipped pipeline, and narrate what its step run logged."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from keel.quickstart.data import Data
from keel.quickstart.narrate import Narrator
from keel.settings import Settings

PIPELINE_FILE = Path(__file__).resolve().parents[1] / "examples" / "quickstart_pipeline.py"
MODEL_NAME = "breast-cancer"


@dataclass(frozen=True)
class Trained:
    pipeline_run_id: str
    run_id: str  # the fit step's run: metrics, datasets, artifacts and the model
    version: int


def train(say: Narrator, settings: Settings, data: Data) -> Trained:
    """Run the pipeline on data/train.csv and data/test.csv; version 1 is registered by its fit step."""
    from keel.formats import onnx_copy
    from keel.formats.api import load_model
    from keel.pipelines.loader import find_pipeline, load_file
    from keel.pipelines.runner import run_pipeline
    from keel.tracking.fluent import client_for

    # The folder of the file is the project root: a checkout and an installed wheel record the same sources.
    root = PIPELINE_FILE.parent
    pipe = find_pipeline(load_file(PIPELINE_FILE, root=root))
    run = run_pipeline(pipe, {"train": str(data.train), "test": str(data.test)}, settings=settings, root=root)
    fit_run = run.steps["fit"].run_id
    result = run.value()
    version = int(result["version"])
    say.step("pipeline", f"{pipe.name} (keel/examples/{PIPELINE_FILE.name}): run {run.run_id}, steps "
                         f"{' -> '.join(f'{n} {s.status}' for n, s in run.steps.items())}; code, parameters, "
                         f"data and environment recorded for replay")

    client = client_for(settings)
    datasets = {d.context: d for d in client.run_datasets(fit_run)}
    say.step("track", f"step run {fit_run} (fit): params, metrics, datasets hashed and profiled "
                      f"({datasets['training'].digest[:19]}..., {datasets['evaluation'].digest[:19]}...)")
    logged = client.get_run(fit_run)
    epochs = len(client.metric_history(fit_run, "train_loss"))
    say.step("train", f"{epochs} epochs, loss and accuracy logged per epoch; test accuracy "
                      f"{logged.metrics['accuracy']:.3f}, ROC AUC {logged.metrics['roc_auc']:.3f}")

    stored = client.list_artifacts(fit_run)
    for info in stored:  # read back: every read re-checks the sha256
        client.read_artifact(fit_run, info.path)
    say.step("store", f"{len(stored)} artifacts stored content-addressed (sha256), read back and verified")

    registered = f"models:/{MODEL_NAME}/{version}"
    loaded = load_model(registered, settings=settings)
    accuracy = float((loaded.predict(data.columns(data.X_test)) == data.y_test).mean())
    say.step("model", f"runs:/{fit_run}/model: {loaded.format} bundle (skops, no pickle), the scaler inside, "
                      f"signature of {len(loaded.signature.inputs)} named columns, "
                      f"{len(loaded.manifest.data['libraries'])} pinned libraries; registered as {registered}, "
                      f"reloaded by URI, hashes checked, test accuracy as logged: "
                      f"{abs(accuracy - logged.metrics['accuracy']) < 1e-12}")

    onnx_copy.wait(30)
    tags = client.get_run(fit_run).tags
    onnx = json.loads(tags.get(onnx_copy.tag_key("model"), json.dumps({"status": result["onnx"]})))
    if onnx["status"] == "passed":
        say.step("onnx", f"converted off the caller's path; parity on {onnx['rows']} rows: max |diff| "
                         f"{onnx['max_abs_diff']:.1e}, labels agree {onnx['label_agreement']:.1%} -> {onnx['uri']}")
    else:
        say.step("onnx", f"no ONNX copy: {onnx.get('reason', onnx['status'])}")
    print_run(say, client, fit_run)
    return Trained(run.run_id, fit_run, version)


def print_run(say: Narrator, client: Any, run_id: str) -> None:
    run = client.get_run(run_id)
    table = Table("metric", "latest", "values", title=f"run {run.name} ({run.status})", title_justify="left")
    for key, value in run.metrics.items():
        table.add_row(key, f"{value:.4f}", str(len(client.metric_history(run_id, key))))
    say.console.print(table)
