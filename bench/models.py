"""keel vs MLflow model logging, loading and 1-row prediction, side by side, in one run.

    python bench/models.py                                          # full run; creates an MLflow venv
    python bench/models.py --mlflow-venv /tmp/keelbench/mlflow-venv # reuse an existing venv
    python bench/models.py --skip-mlflow                            # keel only, against the targets
    python bench/models.py --calls 200 --repeat 1 --out /tmp/m.json # smoke test

Run from the repository root with keel installed in the current interpreter.
MLflow lives in its own virtualenv (default ``~/.cache/keel-bench/mlflow-<spec>``,
created with ``python -m venv`` + ``pip install <spec> scikit-learn``). Each tool runs
in its own subprocess (this file in ``--worker`` mode, under that tool's interpreter),
in a fresh temp dir (keel: ``KEEL_HOME`` there; MLflow: a SQLite store and file
artifacts there), and prints one JSON line. For each standard model, "tiny" =
LogisticRegression(max_iter=1000) and "forest" = RandomForestClassifier(100 trees,
max_depth=8, random_state=0), fit on make_classification(n_samples=10000,
n_features=20, random_state=0) as a DataFrame with columns f0..f19:

  log)   ``log_model(model, "model", input_example=X[:5])`` with defaults, each call
         into a fresh run; median of --repeat (all values kept). MLflow 3 saves
         sklearn with skops and may refuse the forest: the failure is recorded and
         the call retried with ``skops_trusted_types`` (as the MLflow peer bench does)
  load)  ``load_model`` of the logged URI: the first call (keel's download cache
         emptied first; modules already imported by log), then the median of 3 more
  pred)  1-row ``predict`` p50/p99 over --calls calls, on the same 1-row DataFrame:
         the raw fitted estimator vs the loaded model (keel LoadedModel, MLflow
         pyfunc); calls interleaved raw/loaded so machine noise hits both alike
  size)  bytes and number of files of the logged model folder
keel's log_model may start a background ONNX copy: the worker waits for it (untimed,
reported apart) so it never overlaps the next measurement. Prints a markdown table
(ratio = MLflow / keel); writes everything to ``--out`` (default bench/results/models.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("tiny", "forest")
LOG_TARGET_S = 0.5  # keel log_model, per model
PREDICT_SLACK = 1.10  # keel 1-row predict p50 <= raw p50 x this


# ---------------------------------------------------------------- worker (tool interpreter)
def folder_stats(path: Path) -> tuple[int, list[str]]:
    """Total bytes and relative paths of every file under ``path``."""
    files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    return sum((path / f).stat().st_size for f in files), files


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall seconds of ``fn()`` and its value."""
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def latencies(raw: Callable[[], Any], loaded: Callable[[], Any], calls: int) -> dict[str, float]:
    """p50/p99 ms of both callables, interleaved call by call, after 20 warm-up calls each."""
    for _ in range(20):
        raw(), loaded()
    tr: list[float] = []  # raw
    tl: list[float] = []  # loaded
    for _ in range(calls):
        tr.append(timed(raw)[0])
        tl.append(timed(loaded)[0])
    out: dict[str, float] = {}
    for key, ts in (("raw", tr), ("loaded", tl)):
        ts.sort()
        out[f"predict_{key}_p50_ms"] = statistics.median(ts) * 1000
        out[f"predict_{key}_p99_ms"] = ts[int(0.99 * (len(ts) - 1))] * 1000
    return out


def worker(tool: str, workdir: Path, calls: int, repeat: int) -> dict[str, Any]:
    """Fit both models, then log / load / predict / measure them with one tool."""
    import numpy as np
    import pandas as pd
    import sklearn
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=10000, n_features=20, random_state=0)
    Xdf = pd.DataFrame(X, columns=[f"f{i}" for i in range(20)])
    x1 = Xdf.iloc[:1]  # the same 1-row DataFrame for raw and loaded models
    makers: dict[str, Callable[[], Any]] = {
        "tiny": lambda: LogisticRegression(max_iter=1000),
        "forest": lambda: RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0),
    }
    res: dict[str, Any] = {"loadavg_start": os.getloadavg(), "python": platform.python_version(),
                           "sklearn": sklearn.__version__, "pandas": pd.__version__, "models": {}}
    if tool == "keel":
        import keel
        from keel.formats.api import resolve_bundle

        res["version"] = keel.__version__

        def log(est: Any, extra: dict[str, Any]) -> Any:
            with keel.start_run(experiment="bench"):  # a fresh run per call; only log_model is timed
                return timed(lambda: keel.log_model(est, "model", input_example=Xdf.head(5)))

        def settle() -> float | None:
            """Wait, untimed, for background ONNX copies started by log_model; seconds waited."""
            try:
                from keel.formats import onnx_copy
            except ImportError:  # a keel without background ONNX copies
                return None
            return timed(onnx_copy.wait)[0]

        # the ONNX copy loads the model too, filling the cache: empty it for a cold first load
        clear_cache: Callable[[], None] = lambda: shutil.rmtree(workdir / "cache", ignore_errors=True)
        uri_of: Callable[[Any], str] = lambda info: info.uri
        load: Callable[[str], Any] = keel.load_model
        local_folder: Callable[[str], Path] = lambda uri: resolve_bundle(uri)[0]
    else:
        import mlflow
        import mlflow.sklearn
        from mlflow.exceptions import MlflowException

        res["version"] = mlflow.__version__
        mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow.db")
        exp = mlflow.tracking.MlflowClient().create_experiment(
            "bench", artifact_location=f"file://{workdir}/artifacts")
        mlflow.set_experiment(experiment_id=exp)

        def log(est: Any, extra: dict[str, Any]) -> Any:
            with mlflow.start_run():
                try:
                    return timed(lambda: mlflow.sklearn.log_model(
                        est, name="model", input_example=Xdf.head(5), **extra))
                except MlflowException as e:  # skops refused a type: the caller records and retries
                    return None, e

        settle = lambda: None  # MLflow's log_model leaves nothing running
        clear_cache = lambda: None  # pyfunc.load_model downloads afresh on every call
        uri_of = lambda info: info.model_uri
        load = mlflow.pyfunc.load_model
        local_folder = lambda uri: Path(mlflow.artifacts.download_artifacts(uri))

    for name in MODELS:
        r: dict[str, Any] = {}
        est = makers[name]()
        r["fit_s"], _ = timed(lambda: est.fit(Xdf, y))

        # log) --repeat calls, each into a fresh run
        extra: dict[str, Any] = {}
        log_s: list[float] = []
        bg_s: list[float | None] = []  # background work still running when log_model returned
        for _ in range(repeat):
            t0 = time.perf_counter()
            secs, info = log(est, extra)
            if secs is None:  # MLflow default (skops) refused the model: record, retry trusted
                r["log_default_failed_after_s"] = time.perf_counter() - t0
                r["log_default_error"] = str(info).splitlines()[0][:300]
                extra = {"skops_trusted_types": ["sklearn.tree._tree.Tree"]}
                r["log_retry_kwargs"] = extra
                secs, info = log(est, extra)
                if secs is None:
                    raise info
            log_s.append(secs)
            bg_s.append(settle())
        r["log_all_s"], r["log_first_s"], r["log_s"] = log_s, log_s[0], statistics.median(log_s)
        r["uri"] = uri = uri_of(info)
        r["background_wait_s"], r["onnx_copy"] = bg_s, getattr(info, "onnx", None)
        r["background_max_s"] = max((b for b in bg_s if b is not None), default=None)

        # load) first call, then the median of 3 more
        clear_cache()
        r["load_first_s"], model = timed(lambda: load(uri))
        r["load_median_s"] = statistics.median(timed(lambda: load(uri))[0] for _ in range(3))

        # the loaded model must agree with the raw estimator before its speed counts
        r["predictions_equal"] = bool(np.array_equal(np.asarray(model.predict(Xdf)).ravel(), est.predict(Xdf)))
        if tool == "keel":
            r["proba_close"] = bool(np.allclose(model.predict_proba(Xdf), est.predict_proba(Xdf)))

        # pred) 1-row latency, raw vs loaded, interleaved
        r.update(latencies(lambda: est.predict(x1), lambda: model.predict(x1), calls))

        # size) the logged folder as it comes back from the artifact store
        r["artifact_bytes"], r["artifact_files"] = folder_stats(local_folder(uri))
        r["n_files"] = len(r["artifact_files"])
        res["models"][name] = r
    res["loadavg_end"] = os.getloadavg()
    return res


# ---------------------------------------------------------------- driver (standard library only)
from _common import mlflow_python, run_checked  # noqa: E402  (beside this script)


def run_worker(tool: str, python: str, args: argparse.Namespace) -> dict[str, Any]:
    """One worker subprocess in a fresh temp dir; returns its JSON result."""
    workdir = Path(tempfile.mkdtemp(prefix=f"keelbench-models-{tool}-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "MLFLOW_"))}
    env.update(KEEL_HOME=str(workdir), MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    cmd = [python, str(Path(__file__).resolve()), "--worker", tool, "--workdir", str(workdir),
           "--calls", str(args.calls), "--repeat", str(args.repeat)]
    try:  # cwd = workdir: no keel.toml from the caller's directory leaks in
        out = run_checked(cmd, f"{tool} worker", env=env, cwd=workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return json.loads(out.strip().splitlines()[-1])


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "s":
        return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"
    if unit == "ms":
        return f"{v * 1000:.0f} us" if v < 1 else f"{v:.3f} ms"
    return (f"{v / 1e6:.2f} MB" if v >= 1e6 else f"{v / 1e3:.1f} kB") if unit == "B" else f"{v:,.0f}"


def table(k: dict[str, Any], m: dict[str, Any] | None, args: argparse.Namespace) -> str:
    """Markdown table: model | measure | keel | MLflow | ratio | target | met."""
    lines = ["| model | measure | keel | MLflow | ratio | target | met |", "|---|---|---|---|---|---|---|"]
    for name in MODELS:
        kr, mr = k["models"][name], (m["models"][name] if m else None)
        p50_limit = kr["predict_raw_p50_ms"] * PREDICT_SLACK
        # (label, key, unit, target text, met?)
        rows: list[tuple[str, str, str, str, bool | None]] = [
            ("fit (same for both; info)", "fit_s", "s", "", None),
            ("log_model, first call in the process (info)", "log_first_s", "s", "", None),
            ("background work after log_model, waited untimed (max)", "background_max_s", "s", "", None),
            (f"log_model + input_example, median of {args.repeat}", "log_s", "s",
             f"< {LOG_TARGET_S} s", kr["log_s"] < LOG_TARGET_S),
            ("load_model, first call", "load_first_s", "s", "", None),
            ("load_model, median of 3 more", "load_median_s", "s", "", None),
            (f"1-row predict p50, raw estimator ({args.calls:,} calls)", "predict_raw_p50_ms", "ms", "", None),
            ("1-row predict p50, loaded model", "predict_loaded_p50_ms", "ms",
             f"<= raw x {PREDICT_SLACK:.2f} ({fmt(p50_limit, 'ms')})", kr["predict_loaded_p50_ms"] <= p50_limit),
            ("1-row predict p99, raw estimator", "predict_raw_p99_ms", "ms", "", None),
            ("1-row predict p99, loaded model", "predict_loaded_p99_ms", "ms", "", None),
            ("artifact size", "artifact_bytes", "B", "", None),
            ("artifact files", "n_files", "n", "", None),
        ]
        for label, key, unit, target, ok in rows:
            mv = mr.get(key) if mr else None
            ratio = "-" if mv is None or not kr[key] else f"{mv / kr[key]:.2f}x"
            met = "-" if not target else ("met" if ok else "NOT met")
            lines.append(f"| {name} | {label} | {fmt(kr[key], unit)} | {fmt(mv, unit)} | {ratio} | "
                         f"{target or '-'} | {met} |")
    for name in MODELS:  # MLflow needed the trusted-types retry: say so under the table
        mr = m["models"][name] if m else {}
        if "log_default_error" in mr:
            lines.append(f"\n{name}: MLflow default log_model failed after {fmt(mr['log_default_failed_after_s'], 's')}"
                         f" ({mr['log_default_error']}); retried with {mr['log_retry_kwargs']}, timed from the retry.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mlflow-venv", type=Path, help="MLflow virtualenv: reused as is if it imports mlflow, else created here")
    ap.add_argument("--mlflow-spec", default="mlflow", help="pip spec for MLflow, e.g. 'mlflow==3.17.2'")
    ap.add_argument("--skip-mlflow", action="store_true", help="keel only")
    ap.add_argument("--calls", type=int, default=1_000, help="1-row predict calls per model")
    ap.add_argument("--repeat", type=int, default=3, help="log_model calls per model (median reported)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "models.json")
    ap.add_argument("--worker", choices=["keel", "mlflow"], help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:  # inside the tool's interpreter: one JSON line on stdout
        print(json.dumps(worker(args.worker, args.workdir, args.calls, args.repeat)))
        return

    load_start = os.getloadavg()
    mpy = None if args.skip_mlflow else mlflow_python(args.mlflow_venv, args.mlflow_spec)
    print("keel worker ...", file=sys.stderr)
    k = run_worker("keel", sys.executable, args)
    m = None
    if mpy:
        print("MLflow worker (a minute or more) ...", file=sys.stderr)
        m = run_worker("mlflow", mpy, args)

    md = table(k, m, args)
    results = {"argv": sys.argv, "nproc": os.cpu_count(), "platform": platform.platform(), "loadavg_start": load_start,
               "loadavg_end": os.getloadavg(), "keel": k, "mlflow": m, "mlflow_python": mpy, "table_md": md}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    ver = " vs ".join(f"{t} {r['version']} (python {r['python']}, sklearn {r['sklearn']})"
                      for t, r in (("keel", k), ("MLflow", m)) if r)
    print(f"{ver}; nproc {os.cpu_count()}\n")
    print(md)
    agree = {t: {n: r["models"][n]["predictions_equal"] for n in MODELS} for t, r in (("keel", k), ("mlflow", m)) if r}
    print(f"\nloaded predictions equal to the raw estimator's: {agree}")
    print(f"loadavg start {load_start} end {results['loadavg_end']}\nfull results: {args.out}")


if __name__ == "__main__":
    main()
