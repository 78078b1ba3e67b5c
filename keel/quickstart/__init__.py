"""`keel quickstart`: the whole loop on a dataset scikit-learn ships, narrated step by step.

1. Data: the breast cancer set as CSV files in the home (data.py).
2. Train (train.py): the pipeline shipped in keel/examples/quickstart_pipeline.py
   runs once; its fit step tracks params, metrics per epoch, hashed and profiled
   datasets and artifacts, and registers the model (an sklearn Pipeline, scaler
   inside) as a skops bundle, reloaded by URI, with its ONNX copy.
3. Govern (govern.py): model card, explanation, promotion to production with
   four eyes, lineage.
4. Close the loop (loop.py): production is deployed with the local target; a
   monitor sees a clean window of traffic pass and a recalibrated one drift; a
   monitor-alert trigger retrains through the recorded pipeline; the gate
   compares champion and challenger; the approver moves production to the
   challenger; the server is stopped. The new version's lineage shows the loop.
5. The audit chain is verified, last.

Where the serve or pandas extras are missing, step 4 is skipped with the
command that installs them.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from rich.console import Console

from keel.errors import IntegrityError, InvalidInput
from keel.settings import Settings

__all__ = ["run_quickstart"]

# What production asks of a version here (a team writes this in keel.toml).
POLICY = {"aliases": {"production": {"min_metrics": {"roc_auc": 0.95}, "require_card": True,
                                     "require_reference_dataset": True}}}


def run_quickstart(home: Path | None = None, console: Console | None = None) -> str:
    """Run the quickstart into a fresh KEEL_HOME; returns the id of the run that trained version 1."""
    from keel.quickstart.data import write_data
    from keel.quickstart.govern import govern, loop_lineage
    from keel.quickstart.loop import TRIGGER, close_loop, missing_extras
    from keel.quickstart.narrate import Narrator
    from keel.quickstart.train import MODEL_NAME, train
    from keel.tracking.fluent import client_for

    console = console or Console(highlight=False, soft_wrap=True)  # long lines stay whole in pipes
    t0 = time.perf_counter()
    home = Path(home) if home else Path(tempfile.mkdtemp(prefix="keel-quickstart-"))
    if home.exists() and any(home.iterdir()):
        raise InvalidInput(f"quickstart needs a fresh KEEL_HOME, but {home} is not empty; pass another --home")
    home.mkdir(parents=True, exist_ok=True)
    # A fresh store beside the home, whatever KEEL_STORE_URI says: the quickstart never touches real data.
    settings = Settings.load({
        "home": home, "store_uri": f"sqlite:///{home.absolute() / 'keel.db'}",
        "artifact_uri": str(home.absolute() / "artifacts"), "policy": POLICY,
    })
    console.print(f"[bold]keel quickstart[/bold]  KEEL_HOME={home}")
    say = Narrator(console)

    data = write_data(home)
    say.step("data", f"breast cancer (scikit-learn): {len(data.y_train)} train / {len(data.y_test)} test rows, "
                     f"{len(data.names)} features -> data/train.csv, data/test.csv; the same samples from a "
                     f"recalibrated microscope -> data/new/")
    trained = train(say, settings, data)
    govern(say, settings, home, trained.version, data)

    missing = missing_extras()
    latest = trained.version
    if missing:
        say.step("loop", f"skipped: serving, monitoring and retraining need keel's {' and '.join(missing)} "
                         f"extras: pip install 'keel[{','.join(missing)}]' and run it again")
    else:
        latest = close_loop(say, settings, data)
        loop_lineage(say, settings, home, latest)

    from keel.formats import onnx_copy

    onnx_copy.wait(30)  # the retrained version's ONNX copy is done before the chain is checked
    report = client_for(settings).verify_audit()
    if not report.ok:
        raise IntegrityError(f"audit chain broken at event {report.first_bad_seq}: {report.reason}")
    say.step("audit", f"chain OK: {report.events_checked} events, head {report.head_hash[:16]}...")
    explore = [f"export KEEL_HOME={home}", "keel pipeline runs", f"keel runs show {trained.run_id}",
               *([] if missing else [f"keel monitor show {MODEL_NAME}", f"keel triggers show {TRIGGER}",
                                     "keel deployments list"]),
               f"keel card models:/{MODEL_NAME}@production", f"keel lineage models:/{MODEL_NAME}/{latest}",
               "keel audit log"]
    console.print(f"done in {time.perf_counter() - t0:.1f}s. Explore it:\n  " + "\n  ".join(explore),
                  markup=False, highlight=False)
    return trained.run_id

