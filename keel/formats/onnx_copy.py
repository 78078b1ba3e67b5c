"""ONNX copies of classical models: converted off the caller's path, then parity-checked.

``log_model`` of a scikit-learn, XGBoost or LightGBM model starts a
background conversion of the logged bundle (re-read from the store, so later
changes to the live object cannot leak in). The copy is compared with the
original on the input example plus generated rows; the maximum absolute
difference of the probabilities (or predictions) and the agreement of the
labels are recorded. A copy that passes is logged next to the model as
``<name>-onnx``, and the run tag ``keel.model.<name>.onnx`` says what happened,
so that serving and edge deploys can use the copy when it passed.
"""

from __future__ import annotations

import atexit
import json
import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("keel.formats")

CONVERTIBLE = ("sklearn", "xgboost", "lightgbm")
MAX_ABS_DIFF = 1e-4  # float32 inference against float64: differences below this are rounding
MIN_AGREEMENT = 0.999  # share of rows whose predicted label must be the same
PARITY_ROWS = 256

_pending: set[threading.Thread] = set()
_lock = threading.Lock()


def tag_key(name: str) -> str:
    return f"keel.model.{name}.onnx"


def start(client: Any, run_id: str, name: str, example: Any) -> threading.Thread:
    """Convert and check ``runs:/run_id/name`` in a daemon thread; returns the thread."""
    thread = threading.Thread(target=_run, args=(client, run_id, name, example), name=f"keel-onnx-{name}",
                              daemon=True)
    with _lock:
        _pending.add(thread)
    thread.start()
    return thread


def wait(timeout: float | None = None) -> bool:
    """Wait for pending conversions; True if none is left running."""
    with _lock:
        threads = list(_pending)
    for thread in threads:
        thread.join(timeout)
    return not any(t.is_alive() for t in threads)


def _run(client: Any, run_id: str, name: str, example: Any) -> None:
    try:
        try:
            status = convert_logged(client, run_id, name, example)
        except Exception as exc:  # a failed conversion must not break the caller: record it
            log.info("keel: ONNX copy of runs:/%s/%s failed: %s", run_id, name, exc)
            status = {"status": "unavailable", "reason": f"{type(exc).__name__}: {exc}"[:500]}
        client.set_tags(run_id, {tag_key(name): json.dumps(status, sort_keys=True)})
        client.flush()
    except Exception as exc:
        log.warning("keel: could not record the ONNX copy status of runs:/%s/%s: %s", run_id, name, exc)
    finally:  # only now is the outcome in the store: wait() returns after this
        with _lock:
            _pending.discard(threading.current_thread())


def convert_logged(client: Any, run_id: str, name: str, example: Any) -> dict[str, Any]:
    """Convert the logged model, check parity, log the copy if it passed; returns the status."""
    import numpy as np

    from keel.formats.api import load_model
    from keel.formats.bundle import save_bundle

    model = load_model(f"runs:/{run_id}/{name}", settings=client.settings)
    x = np.asarray(model.prepare(example) if not hasattr(example, "columns") else _numeric(model, example),
                   dtype=np.float64)
    onx = convert(model.native, model.format, x.shape[1])
    rows = parity_rows(x)
    parity = check_parity(model, onx, rows)
    if not parity["passed"]:
        return {"status": "failed", **parity}
    with tempfile.TemporaryDirectory(prefix="keel-onnx-") as tmp:
        save_bundle(onx, Path(tmp) / "bundle", format="onnx", input_example=x.astype(np.float32),
                    lineage={"run_id": run_id, "converted_from": f"runs:/{run_id}/{name}", "parity": parity})
        client.log_artifacts(run_id, Path(tmp) / "bundle", f"{name}-onnx")
    return {"status": "passed", "uri": f"runs:/{run_id}/{name}-onnx", **parity}


def convert(native: Any, format: str, n_features: int) -> Any:
    """An ONNX ModelProto of a scikit-learn, XGBoost or LightGBM model taking float32[n, n_features]."""
    if format == "sklearn":
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType

        return to_onnx(native, initial_types=[("input", FloatTensorType([None, n_features]))],
                       options={id(native): {"zipmap": False}})
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType as MLFloat

    types = [("input", MLFloat([None, n_features]))]
    if format == "xgboost":
        return onnxmltools.convert_xgboost(native, initial_types=types)
    if format == "lightgbm":
        booster = getattr(native, "booster_", native)
        return onnxmltools.convert_lightgbm(booster, initial_types=types, zipmap=False)
    raise ValueError(f"no ONNX converter for {format} models")


def parity_rows(example: Any, n: int = PARITY_ROWS, seed: int = 0) -> Any:
    """The example rows plus ``n`` generated ones spread over (a little beyond) its range."""
    import numpy as np

    rng = np.random.default_rng(seed)
    low, high = example.min(axis=0), example.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    generated = rng.uniform(low - 0.1 * span, high + 0.1 * span, size=(n, example.shape[1]))
    return np.vstack([example, generated])


def check_parity(model: Any, onx: Any, rows: Any) -> dict[str, Any]:
    """Max absolute difference and label agreement of the ONNX copy against the loaded model."""
    import numpy as np

    from keel.formats.onnx import SessionPredictor, _session

    session = SessionPredictor(_session(onx.SerializeToString()))
    expected_labels, got_labels = np.asarray(model.predict(rows)), np.asarray(session.predict(rows)).ravel()
    if model.has_proba and hasattr(session, "predict_proba"):
        diff = float(np.max(np.abs(np.asarray(model.predict_proba(rows)) - session.predict_proba(rows))))
    else:
        diff = float(np.max(np.abs(expected_labels.astype(float).ravel() - got_labels.astype(float))))
    agreement = float(np.mean(expected_labels.ravel() == got_labels)) if model.has_proba else 1.0
    return {"rows": int(len(rows)), "max_abs_diff": diff, "label_agreement": agreement,
            "passed": bool(diff <= MAX_ABS_DIFF and agreement >= MIN_AGREEMENT)}


def _numeric(model: Any, example: Any) -> Any:
    """A DataFrame example as a float matrix, if every column is numeric (else ONNX is not attempted)."""
    import numpy as np

    frame = model.prepare(example)
    values = np.asarray(frame)
    if values.dtype == object:
        raise ValueError("the model takes non-numeric columns; keel converts numeric inputs only")
    return values


atexit.register(wait, 30.0)  # a short script still gets its ONNX copy (at most 30 s more)
