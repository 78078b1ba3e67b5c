"""keel vs MLflow tracking, side by side, in one run.

    python bench/tracking.py                                   # full run; creates an MLflow venv
    python bench/tracking.py --mlflow-venv /tmp/keelbench/mlflow-venv   # reuse an existing venv
    python bench/tracking.py --mlflow-spec 'mlflow==3.17.2'    # pin the MLflow release installed
    python bench/tracking.py --skip-mlflow                     # keel only, against the targets
    python bench/tracking.py --n-metrics 1000 --n-runs 100 --repeat 1 --out /tmp/t.json  # smoke test

Run from the repository root with keel installed in the current interpreter.
MLflow lives in its own virtualenv (default ``~/.cache/keel-bench/mlflow-<spec>``,
created with ``python -m venv`` + ``pip install <spec> scikit-learn``), so it never
enters keel's environment. Each tool runs in its own subprocess (this file in
``--worker`` mode, under that tool's interpreter), in a fresh temp dir with a fresh
SQLite store, and prints one JSON line. Workloads, identical for both tools
(values from seeded RNGs, so both stores hold the same numbers):

  a) N ``log_metric(key, value, step=i)`` calls in one run, timed until the run has ended
  b) the same N values through the batch call, chunks of 1,000, then run end
  c) R runs, each with 5 params and 5 metrics
  d) search over those runs with ``metrics.m1 > 0.5``: first call, median of 3, rows
  e) ``python -c "import X"`` minus ``python -c pass``, median of 5

The schema-creating first touch of each store happens before (a) and is reported
apart. MLflow telemetry is disabled (MLFLOW_DISABLE_TELEMETRY, DO_NOT_TRACK).
Prints a markdown table; writes all numbers to ``--out`` (default bench/results/tracking.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FILTER = "metrics.m1 > 0.5"
DEFAULTS = {"n_metrics": 10_000, "n_runs": 1_000}  # the sizes the targets are defined at


class Timer:
    """Wall and process-CPU seconds (CPU counts all threads, e.g. keel's flush thread)."""

    def __enter__(self) -> "Timer":
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0


# ---------------------------------------------------------------- worker (tool interpreter)
def worker(tool: str, workdir: Path, n: int, n_runs: int, chunk: int) -> dict[str, Any]:
    """Run workloads a-d for one tool against a fresh SQLite store in ``workdir``."""
    import sqlite3

    res: dict[str, Any] = {"loadavg_start": os.getloadavg(), "python": platform.python_version(),
                           "sqlite": sqlite3.sqlite_version}
    rng_a = random.Random(0)  # (a) and (b): the same values for both tools
    values = [rng_a.random() for _ in range(n)]
    rng_c = random.Random(1)  # (c): same params and metrics for both tools
    c_values = [({f"p{k}": rng_c.randint(0, 1000) for k in range(1, 6)},
                 {f"m{k}": rng_c.random() for k in range(1, 6)}) for _ in range(n_runs)]
    ta, tb, tc = Timer(), Timer(), Timer()
    searches: list[Timer] = []
    rows: list[int] = []

    if tool == "keel":
        import keel

        res["version"] = keel.__version__
        with Timer() as t:  # first touch: creates the schema
            client = keel.Client()
            client.get_or_create_experiment("bench-a")
        res["first_touch_s"] = t.wall
        with keel.start_run(experiment="bench-a"):  # (a)
            ta.__enter__()
            for i, v in enumerate(values):
                keel.log_metric("loss", v, step=i)
        ta.__exit__()
        run = client.create_run("bench-b")  # (b)
        with tb:
            for s in range(0, n, chunk):
                client.log_batch(run.id, [("loss", values[i], i) for i in range(s, min(n, s + chunk))])
            client.end_run(run.id)
        with tc:  # (c)
            for p, m in c_values:
                with keel.start_run(experiment="bench-c"):
                    keel.log_params(p)
                    keel.log_metrics(m)
        for _ in range(3):  # (d)
            with Timer() as t:
                found = client.search_runs("bench-c", FILTER, max_results=max(1000, n_runs))
            searches.append(t)
            rows.append(len(found))
    else:
        import mlflow
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        res["version"] = mlflow.__version__
        mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow.db")
        with Timer() as t:  # first touch: runs every alembic migration
            client = MlflowClient()
            exp_a = client.create_experiment("bench-a", artifact_location=f"file://{workdir}/art-a")
        res["first_touch_s"] = t.wall
        mlflow.set_experiment(experiment_id=exp_a)
        with mlflow.start_run():  # (a)
            ta.__enter__()
            for i, v in enumerate(values):
                mlflow.log_metric("loss", v, step=i)
        ta.__exit__()
        with mlflow.start_run() as run:  # (b)
            tb.__enter__()
            ts = int(time.time() * 1000)
            for s in range(0, n, chunk):
                batch = [Metric("loss", values[i], ts, i) for i in range(s, min(n, s + chunk))]
                client.log_batch(run.info.run_id, metrics=batch, synchronous=True)
        tb.__exit__()
        exp_c = client.create_experiment("bench-c", artifact_location=f"file://{workdir}/art-c")
        mlflow.set_experiment(experiment_id=exp_c)
        with tc:  # (c)
            for p, m in c_values:
                with mlflow.start_run():
                    mlflow.log_params(p)
                    mlflow.log_metrics(m)
        for _ in range(3):  # (d)
            with Timer() as t:
                df = mlflow.search_runs(experiment_ids=[exp_c], filter_string=FILTER)
            searches.append(t)
            rows.append(len(df))

    for name, t in (("a_log_metric", ta), ("b_log_batch", tb), ("c_runs", tc)):
        res[f"{name}_s"], res[f"{name}_cpu_s"] = t.wall, t.cpu
    res["d_search_first_s"], res["d_search_first_cpu_s"] = searches[0].wall, searches[0].cpu
    res["d_search_median_s"] = statistics.median(t.wall for t in searches)
    res["d_search_median_cpu_s"] = statistics.median(t.cpu for t in searches)
    res["d_search_rows"] = rows[0]
    res["loadavg_end"] = os.getloadavg()
    return res


# ---------------------------------------------------------------- driver (standard library only)
from _common import mlflow_python, run_checked  # noqa: E402  (beside this script)


def run_worker(tool: str, python: str, args: argparse.Namespace) -> dict[str, Any]:
    """One worker subprocess in a fresh temp dir; returns its JSON result."""
    workdir = Path(tempfile.mkdtemp(prefix=f"keelbench-{tool}-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "MLFLOW_"))}
    env.update(KEEL_HOME=str(workdir), KEEL_STORE_URI=f"sqlite:///{workdir}/keel.db",
               MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    cmd = [python, str(Path(__file__).resolve()), "--worker", tool, "--workdir", str(workdir),
           "--n-metrics", str(args.n_metrics), "--n-runs", str(args.n_runs), "--chunk", str(args.chunk)]
    try:  # cwd = workdir: no keel.toml from the caller's directory leaks in
        out = run_checked(cmd, f"{tool} worker", env=env, cwd=workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return json.loads(out.strip().splitlines()[-1])


def import_time(python: str, module: str, repeat: int = 5) -> float:
    """Median of (``python -c "import module"`` - ``python -c pass``) wall seconds."""
    def once(code: str) -> float:
        t0 = time.perf_counter()
        run_checked([python, "-c", code], f"`{python} -c {code!r}`", cwd=tempfile.gettempdir())
        return time.perf_counter() - t0
    return statistics.median(once(f"import {module}") - once("pass") for _ in range(repeat))


def median_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-field median of numeric results; other fields from the first result."""
    out = dict(results[0])
    for k, v in out.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = statistics.median(r[k] for r in results)
    return out


def fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def table(k: dict[str, Any], m: dict[str, Any] | None, args: argparse.Namespace) -> str:
    """Markdown table: workload | keel | MLflow | ratio | target | met."""
    default_size = args.n_metrics == DEFAULTS["n_metrics"] and args.n_runs == DEFAULTS["n_runs"]

    def ratio(key: str) -> float | None:
        return m[key] / k[key] if m and k[key] > 0 else None

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None or not default_size else ("met" if ok else "NOT met")

    ra = ratio("a_log_metric_s")
    fast_a = k["a_log_metric_s"] < 0.1
    # (label, result key, target text, target met? None = cannot tell)
    rows: list[tuple[str, str, str, bool | None]] = [
        (f"a) {args.n_metrics:,} log_metric, 1 run (incl. end)", "a_log_metric_s", "< 0.1 s and >= 500x MLflow",
         False if not fast_a else (None if ra is None else ra >= 500)),
        (f"b) {args.n_metrics:,} values via log_batch ({args.chunk:,}/call)", "b_log_batch_s", "", None),
        (f"c) {args.n_runs:,} runs x (5 params + 5 metrics)", "c_runs_s", "< 1 s", k["c_runs_s"] < 1),
        (f"d) search `{FILTER}`, first call", "d_search_first_s", "", None),
        (f"d) search `{FILTER}`, median of 3", "d_search_median_s", "< 50 ms", k["d_search_median_s"] < 0.05),
        ("d) rows returned (same seeded values)", "d_search_rows", "", None),
        ("e) `import` (median of 5, minus bare python)", "import_s", "< 0.3 s", k["import_s"] < 0.3),
        ("e) `import` + `.start_run` attribute (info)", "import_api_s", "", None),
    ]
    lines = ["| workload | keel | MLflow | ratio | target | met |", "|---|---|---|---|---|---|"]
    for label, key, target, ok in rows:
        if key == "d_search_rows":  # a count, not a time: the two tools must agree
            same = "-" if not m else ("yes" if m[key] == k[key] else "NO")
            lines.append(f"| {label} | {k[key]} | {m[key] if m else '-'} | - | equal | {same} |")
            continue
        r = ratio(key)
        cpu = k.get(key[:-2] + "_cpu_s")  # wall (process CPU) where the worker measured both
        kcell = fmt_s(k[key]) + ("" if cpu is None else f" (cpu {fmt_s(cpu)})")
        mcell = "-" if not m else fmt_s(m[key]) + ("" if cpu is None else f" (cpu {fmt_s(m[key[:-2] + '_cpu_s'])})")
        lines.append(f"| {label} | {kcell} | {mcell} | {'-' if r is None else f'{r:,.0f}x'} | "
                     f"{target or '-'} | {verdict(ok) if target else '-'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mlflow-venv", type=Path, help="MLflow virtualenv: reused as is if it imports mlflow, else created here")
    ap.add_argument("--mlflow-spec", default="mlflow", help="pip spec for MLflow, e.g. 'mlflow==3.17.2'")
    ap.add_argument("--n-metrics", type=int, default=DEFAULTS["n_metrics"])
    ap.add_argument("--n-runs", type=int, default=DEFAULTS["n_runs"])
    ap.add_argument("--chunk", type=int, default=1_000, help="values per log_batch call")
    ap.add_argument("--repeat", type=int, default=3, help="keel worker runs; the median is reported")
    ap.add_argument("--repeat-mlflow", action="store_true", help="also repeat MLflow (default: once)")
    ap.add_argument("--skip-mlflow", action="store_true", help="keel only")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tracking.json")
    ap.add_argument("--worker", choices=["keel", "mlflow"], help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:  # inside the tool's interpreter: one JSON line on stdout
        print(json.dumps(worker(args.worker, args.workdir, args.n_metrics, args.n_runs, args.chunk)))
        return

    load_start = os.getloadavg()
    mpy = None if args.skip_mlflow else mlflow_python(args.mlflow_venv, args.mlflow_spec)
    print(f"keel worker x{args.repeat} ...", file=sys.stderr)
    keel_runs = [run_worker("keel", sys.executable, args) for _ in range(args.repeat)]
    mlflow_runs: list[dict[str, Any]] = []
    if mpy:
        n = args.repeat if args.repeat_mlflow else 1
        print(f"MLflow worker x{n} (about a minute or two each) ...", file=sys.stderr)
        mlflow_runs = [run_worker("mlflow", mpy, args) for _ in range(n)]
    print("import times ...", file=sys.stderr)
    k = median_of(keel_runs)
    k["import_s"] = import_time(sys.executable, "keel")
    k["import_api_s"] = import_time(sys.executable, "keel; keel.start_run")
    m = median_of(mlflow_runs) if mlflow_runs else None
    if m and mpy:
        m["import_s"] = import_time(mpy, "mlflow")
        m["import_api_s"] = import_time(mpy, "mlflow; mlflow.start_run")

    md = table(k, m, args)
    results = {
        "argv": sys.argv, "nproc": os.cpu_count(), "platform": platform.platform(),
        "loadavg_start": load_start, "loadavg_end": os.getloadavg(), "filter": FILTER,
        "sizes": {"n_metrics": args.n_metrics, "n_runs": args.n_runs, "chunk": args.chunk},
        "keel": k, "keel_all": keel_runs, "mlflow": m, "mlflow_all": mlflow_runs,
        "mlflow_python": mpy, "table_md": md,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    ver = f"keel {k['version']} (python {k['python']}, sqlite {k['sqlite']})"
    if m:
        ver += f" vs MLflow {m['version']} (python {m['python']}, sqlite {m['sqlite']})"
    print(f"{ver}; nproc {os.cpu_count()}; keel median of {len(keel_runs)}, MLflow x{len(mlflow_runs)}\n")
    print(md)
    print(f"\nloadavg start {load_start} end {results['loadavg_end']}; "
          f"first touch (schema): keel {fmt_s(k['first_touch_s'])}"
          + (f", MLflow {fmt_s(m['first_touch_s'])}" if m else "") + f"\nfull results: {args.out}")


if __name__ == "__main__":
    main()
