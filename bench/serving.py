"""keel serve vs MLServer and BentoML (and a bare ASGI floor) under wrk, side by side, in one run.

    python bench/serving.py                      # full run (about 17 minutes); creates the peer venvs
    python bench/serving.py --duration 5         # shorter wrk runs
    python bench/serving.py --quick              # smoke test: 3 s runs, one more round
    python bench/serving.py --servers keel,floor --models tiny   # a subset

Run from the repository root with keel (and its ``serve`` extra) installed in the
current interpreter; needs ``wrk`` on PATH (Debian/Ubuntu: ``apt-get install wrk``).
MLServer and BentoML live in their own virtualenvs under ``~/.cache/keel-bench``
(pinned below, with the same scikit-learn as this interpreter so that one joblib file
serves all), created on first use and reused after. Loopback traffic only.

The two standard models, "tiny" = LogisticRegression(max_iter=1000) and "forest" =
RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0), are fit on
make_classification(n_samples=10000, n_features=20, random_state=0) in a prepare
subprocess with a fresh ``KEEL_HOME``: it saves them as joblib files (for the peers)
and logs them with ``keel.log_model(model, "model", input_example=X[:5],
register=name)``, waits for the background ONNX copy, and times the one-row
in-process predict (the raw estimator and keel's loaded model): the floor under any
server. Then, one server at a time (tiny, then forest):

  floor)    a bare ASGI app on uvicorn (httptools, uvloop) that decodes the v2 JSON
            with orjson, computes the logistic regression's dot product with numpy
            and answers: the best a Python server can do here (tiny only)
  keel)     ``keel serve models:/<name>/1`` with prediction logging on (default),
            then with ``--no-log-predictions``; keel's download cache is emptied
            before each start, so cold start includes fetching the model
  MLServer) mlserver_sklearn.SKLearnModel from a joblib file; adaptive batching off,
            then on (max_batch_size 64, max_batch_time 0.02 s)
  BentoML)  a BentoML 1.4 ``@bentoml.service`` (POST /predict, body {"x": [[...]]});
            adaptive batching off, then on (max_batch_size 64, max_latency_ms 1000)

Per server: cold start (process start -> first 2xx answer to a one-row infer that
carries the right prediction), idle RSS of the whole process tree 2 s later, a 3 s
``wrk -c4`` warm-up, then ``wrk -t1 -c1`` and ``-t1 -c16`` for --duration with
``--latency`` (req/s, p50, p99); batching-on peers run at 16 connections only. The v2
body is ``{"inputs":[{"name":NAME,"shape":[1,20],"datatype":"FP64","data":[...]}]}``
with NAME from the server's model metadata. 16 connections on 2 shared cores are
noisy, so the floor and both keel servers stay up (idle) and then take turns for
--rounds more runs each (floor, keel off, keel on): the 16-connection targets, logging's
cost among them, compare medians. Writes everything to --out (default
bench/results/serving.json) and prints a Markdown table and the targets, PASS/FAIL.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("tiny", "forest")
SERVERS = ("floor", "keel", "mlserver", "bentoml")
MLSERVER_VERSION = "1.7.1"
BENTOML_VERSION = "1.4.40"
# MLServer 1.7.1's inference worker crashes at start with uvloop >= 0.22 (SeldonIO/MLServer#2286)
MLSERVER_EXTRA = ["uvloop<0.22"]
READY_TIMEOUT_S = 120.0

# The targets of the serving issue, checked on keel's numbers from this run.
T_FLOOR_FRACTION = 0.40  # tiny, 16 connections, keel req/s >= this x the floor's
T_VS_MLSERVER = 10.0  # 16 connections, keel req/s >= this x MLServer's best, each model
T_P50_C1_MS = 0.5  # tiny, 1 connection
T_P99_C16_MS = 10.0  # each model, 16 connections
T_LOG_COST = 0.05  # 1 - req/s(logging on) / req/s(logging off), 16 connections, each model
T_COLD_S = 2.0
T_RSS_MIB = 150.0
FLOOR, NOLOG = "floor (bare ASGI)", "keel --no-log-predictions"  # server labels

WRK_LUA = r"""
local f = assert(io.open(os.getenv("WRK_BODY_FILE"), "r"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_s":%.3f,"rps":%.1f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""

BENTO_SERVICE = '''"""BentoML 1.4 service for keel's serving benchmark (written by bench/serving.py)."""
import os

import bentoml
import joblib
import numpy as np

MODEL_PATH = os.environ["KEEL_BENCH_MODEL"]
if os.environ.get("KEEL_BENCH_BATCH") == "1":  # adaptive batching; max_latency_ms is an SLO (503s under it)
    _api = bentoml.api(batchable=True, batch_dim=0, max_batch_size=64, max_latency_ms=1000)
else:
    _api = bentoml.api


@bentoml.service(workers=1, traffic={"timeout": 30})
class PeerModel:
    def __init__(self) -> None:
        self.model = joblib.load(MODEL_PATH)

    @_api
    def predict(self, x: list[list[float]]) -> list[int]:
        return self.model.predict(np.asarray(x, dtype=np.float64)).tolist()
'''


# ---------------------------------------------------------------- prepare (keel's interpreter, own KEEL_HOME)
def prepare(workdir: Path, calls: int, models: list[str]) -> dict[str, Any]:
    """Fit both models; save joblib files; log and register them in keel; time in-process predict."""
    import joblib
    import numpy as np
    import sklearn
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    import keel
    from keel.formats import onnx_copy

    X, y = make_classification(n_samples=10000, n_features=20, random_state=0)
    row = [round(float(v), 6) for v in X[0]]  # the one row every request carries
    x1 = np.asarray([row], dtype=np.float64)
    makers: dict[str, Callable[[], Any]] = {
        "tiny": lambda: LogisticRegression(max_iter=1000),
        "forest": lambda: RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0),
    }
    res: dict[str, Any] = {"keel": keel.__version__, "python": platform.python_version(),
                           "sklearn": sklearn.__version__, "numpy": np.__version__, "row": row, "models": {}}
    for name in models:
        est = makers[name]().fit(X, y)
        path = workdir / f"{name}.joblib"
        joblib.dump(est, path)
        with keel.start_run(experiment="bench-serving"):
            info = keel.log_model(est, "model", input_example=X[:5], register=name)
        t0 = time.perf_counter()
        settled = onnx_copy.wait(120)
        tags = keel.get_run(info.run_id).tags
        r: dict[str, Any] = {"joblib": str(path), "uri": info.registered, "onnx_wait_s": time.perf_counter() - t0,
                             "onnx_settled": settled, "onnx_copy": json.loads(tags.get(onnx_copy.tag_key("model"), "null")),
                             "expected": int(est.predict(x1)[0])}
        loaded = keel.load_model(info.registered)
        for key, fn in (("raw", lambda: est.predict(x1)), ("keel_loaded", lambda: loaded.predict(x1))):
            r[f"inproc_{key}_p50_ms"], r[f"inproc_{key}_p99_ms"] = call_times(fn, calls)
        res["models"][name] = r
    return res


def call_times(fn: Callable[[], Any], calls: int) -> tuple[float, float]:
    """p50 and p99 ms of ``fn()`` over ``calls`` calls, after 50 warm-up calls."""
    for _ in range(50):
        fn()
    ts: list[float] = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return statistics.median(ts) * 1000, ts[int(0.99 * (len(ts) - 1))] * 1000


# ---------------------------------------------------------------- the bare floor (keel's interpreter)
def floor_server(model_path: str, port: int) -> None:
    """A bare ASGI app: v2 JSON in (orjson), the logistic regression's dot product (numpy), v2 JSON out."""
    import joblib
    import numpy as np
    import orjson
    import uvicorn

    m = joblib.load(model_path)
    w, b = m.coef_.ravel(), float(m.intercept_[0])

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        if scope["method"] == "GET":
            out = b"{}"
        else:
            req = orjson.loads(body)
            x = np.asarray(req["inputs"][0]["data"], dtype=np.float64).reshape(-1, w.size)
            yv = (x @ w + b > 0).astype(np.int64)
            out = orjson.dumps({"model_name": "tiny", "outputs": [
                {"name": "predict", "shape": [len(yv), 1], "datatype": "INT64", "data": yv.tolist()}]})
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": out})

    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning")


# ---------------------------------------------------------------- driver (standard library only)
from _common import bench_venv, run_checked  # noqa: E402  (beside this script)


@dataclass
class Server:
    """One server configuration to start, check and load."""

    label: str  # the table's server column
    kind: str  # floor | keel | mlserver | bentoml
    model: str
    batching: bool
    cmd: list[str]
    url: str  # the infer endpoint
    body_of: Callable[[str], bytes]  # v2 input name -> request body
    check: Callable[[Any], bool]  # parsed answer -> right prediction?
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    meta_url: str | None = None  # v2 model metadata: the input name comes from here
    before_start: Callable[[], None] | None = None
    conns: tuple[int, ...] = (1, 16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of a GET (or POST of JSON ``body``) to a loopback URL; (0, b'') if unreachable."""
    assert url.startswith("http://127.0.0.1:"), "loopback only"
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def tree_rss(pid: int) -> dict[str, Any]:
    """RSS (MiB) of ``pid`` and of its whole process tree, from /proc (or psutil elsewhere)."""
    def kids(p: int) -> list[int]:
        out: list[int] = []
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                try:
                    out += [int(c) for c in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
                except OSError:
                    pass
        except OSError:
            pass
        return out

    def rss_kib(p: int) -> int:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    if not Path("/proc/self/status").exists():
        try:
            import psutil
        except ImportError:
            return {"root_mib": None, "tree_mib": None, "procs": None}
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        return {"root_mib": root.memory_info().rss / 2**20, "procs": len(procs),
                "tree_mib": sum(p.memory_info().rss for p in procs) / 2**20}
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += kids(p)
    return {"root_mib": rss_kib(pid) / 1024, "tree_mib": sum(map(rss_kib, seen)) / 1024, "procs": len(seen)}


def tree_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) of ``pid`` and its child processes so far; None off Linux."""
    total, todo = 0.0, [pid]
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            if p == pid:
                return None
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
        for t in os.listdir(f"/proc/{p}/task"):
            try:
                todo += [int(c) for c in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
            except OSError:
                pass
    return total


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process group this script started for a server (SIGTERM, then SIGKILL)."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(0.5)  # the group's other members (workers) go with their parent; make sure of it
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def wrk(url: str, body_file: Path, lua: Path, conns: int, seconds: float) -> dict[str, Any]:
    """One ``wrk -t1 -cN --latency`` run; its WRKJSON summary plus the load average before it."""
    load = os.getloadavg()[0]
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(lua), url],
                         capture_output=True, text=True, env={**os.environ, "WRK_BODY_FILE": str(body_file)})
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            r = json.loads(line[8:])
            r["errors"] = sum(v for k, v in r.items() if k.startswith("err_"))
            r["loadavg_before"] = load
            return r
    return {"error": f"wrk exit {out.returncode}: {(out.stderr or out.stdout)[-500:]}", "loadavg_before": load}


class Running:
    """A started server: its process, request body file and readiness numbers."""

    def __init__(self, srv: Server, workdir: Path) -> None:
        self.srv, self.result = srv, {"server": srv.label, "kind": srv.kind, "model": srv.model,
                                      "batching": srv.batching}
        slug = re.sub(r"[^a-z0-9]+", "-", f"{srv.label} {srv.model} batching {srv.batching}".lower())
        self.log = workdir / "logs" / f"{slug}.log"
        self.log.parent.mkdir(exist_ok=True)
        self.body_file = workdir / f"body-{srv.kind}-{srv.model}.json"
        if srv.before_start:
            srv.before_start()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}, **srv.env}
        with open(self.log, "wb") as logf:
            self.t0 = time.perf_counter()
            self.proc = subprocess.Popen(srv.cmd, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                         cwd=srv.cwd or workdir, start_new_session=True)

    def wait_ready(self) -> bool:
        """Poll until a one-row infer answers 2xx with the right prediction; records the cold start."""
        srv, r, name = self.srv, self.result, None
        refused_since: float | None = None
        deadline = self.t0 + READY_TIMEOUT_S
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                r["error"] = f"exited with {self.proc.returncode} before answering"
                break
            if srv.meta_url and name is None:
                status, text = http(srv.meta_url)
                if status != 200:
                    time.sleep(0.02)
                    continue
                r["metadata"] = meta = json.loads(text)
                name = next((i["name"] for i in meta.get("inputs") or [] if i.get("name")), "input")
                r["input_name"] = name
                r["engine"] = (meta.get("parameters") or {}).get("engine")  # keel: onnxruntime or the native library
            body = srv.body_of(name or "input")
            status, text = http(srv.url, body)
            if 200 <= status < 300:
                r["cold_start_s"] = time.perf_counter() - self.t0
                r["first_answer"] = text.decode(errors="replace")[:300]
                try:
                    r["answer_ok"] = bool(srv.check(json.loads(text)))
                except ValueError:
                    r["answer_ok"] = False
                self.body_file.write_bytes(body)
                return True
            if status >= 400:  # up but refusing (MLServer: "not ready yet" while it loads): wait, within reason
                refused_since = refused_since or time.perf_counter()
                r["last_refusal"] = f"{status}: {text.decode(errors='replace')[:300]}"
                if time.perf_counter() - refused_since > 30:
                    r["error"] = f"refused for 30 s: {r['last_refusal']}"
                    break
            time.sleep(0.02)
        else:
            r["error"] = f"no 2xx answer within {READY_TIMEOUT_S:.0f} s"
        r["log_tail"] = self.log.read_text(errors="replace")[-2000:]
        print(f"   {srv.label} {srv.model}: {r['error']}\n{r['log_tail']}", file=sys.stderr)
        return False

    def load(self, lua: Path, conns: int, seconds: float) -> dict[str, Any]:
        """A wrk run, plus the server's CPU time per answered request during it.

        CPU per request is the steadier measure of a server's own cost on a shared
        machine: req/s moves with whatever else takes the cores, CPU per request much less.
        """
        before = tree_cpu_s(self.proc.pid)
        result = wrk(self.srv.url, self.body_file, lua, conns, seconds)
        after = tree_cpu_s(self.proc.pid)
        if before is not None and after is not None and result.get("requests"):
            result["cpu_us_per_req"] = (after - before) / result["requests"] * 1e6
        return result


def measure(run: Running, lua: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Cold start, idle RSS, warm-up, then wrk at each of the server's connection counts."""
    r = run.result
    if not run.wait_ready():
        return r
    time.sleep(2)
    r["idle_rss"] = tree_rss(run.proc.pid)
    run.load(lua, 4, args.warmup)
    for c in run.srv.conns:
        r[f"c{c}"] = run.load(lua, c, args.duration)
    r["rss_after_load"] = tree_rss(run.proc.pid)
    print(f"   {run.srv.label} {run.srv.model}: cold {r['cold_start_s']:.2f} s, idle {r['idle_rss']['tree_mib']:.0f} MiB"
          + "".join(f", c{c} {r[f'c{c}'].get('rps', 0):,.0f} req/s p99 {r[f'c{c}'].get('p99_ms', 0):.2f} ms"
                    for c in run.srv.conns), file=sys.stderr)
    return r


def v2_body(row: list[float]) -> Callable[[str], bytes]:
    return lambda name: json.dumps({"inputs": [{"name": name, "shape": [1, len(row)], "datatype": "FP64",
                                                "data": row}]}).encode()


def v2_check(expected: int) -> Callable[[Any], bool]:
    """A v2 answer is right when one of its outputs carries the expected label first."""
    def ok(ans: Any) -> bool:  # (not a probability that happens to equal 0 or 1)
        return any(o.get("data") and o["data"][0] == expected and not str(o.get("datatype", "")).startswith("FP")
                   for o in ans.get("outputs", []))
    return ok


def keel_cmd() -> list[str]:
    script = Path(sys.executable).with_name("keel")
    return [str(script)] if script.exists() else [sys.executable, "-m", "keel"]


def servers_for(model: str, prep: dict[str, Any], args: argparse.Namespace, workdir: Path,
                pythons: dict[str, str]) -> list[Server]:
    """The server configurations for one model, in the order they are measured."""
    m, row = prep["models"][model], prep["row"]
    v2, ok = v2_body(row), v2_check(m["expected"])
    out: list[Server] = []
    if "floor" in args.servers and model == "tiny":
        p = free_port()
        out.append(Server(FLOOR, "floor", model, False,
                          [sys.executable, str(Path(__file__).resolve()), "--floor-server", m["joblib"], "--port", str(p)],
                          f"http://127.0.0.1:{p}/v2/models/{model}/infer", v2, ok))
    if "keel" in args.servers:
        home = workdir / "keel_home"
        for flags, label in (([], "keel"), (["--no-log-predictions"], NOLOG)):
            p = free_port()
            out.append(Server(label, "keel", model, False,
                              [*keel_cmd(), "serve", m["uri"], "--host", "127.0.0.1", "--port", str(p), *flags],
                              f"http://127.0.0.1:{p}/v2/models/{model}/infer", v2, ok,
                              env={"KEEL_HOME": str(home)}, meta_url=f"http://127.0.0.1:{p}/v2/models/{model}",
                              # an empty download cache: cold start includes fetching the model
                              before_start=lambda: shutil.rmtree(home / "cache", ignore_errors=True)))
    if "mlserver" in args.servers:
        mls = Path(pythons["mlserver"]).with_name("mlserver")
        for batch in (False, True):
            p, grpc, metrics = free_port(), free_port(), free_port()
            repo = workdir / f"mlserver-{model}-{int(batch)}"
            (repo / model).mkdir(parents=True, exist_ok=True)
            (repo / "settings.json").write_text(json.dumps(
                {"host": "127.0.0.1", "http_port": p, "grpc_port": grpc, "metrics_port": metrics, "debug": False}))
            ms: dict[str, Any] = {"name": model, "implementation": "mlserver_sklearn.SKLearnModel",
                                  "parameters": {"uri": m["joblib"], "version": "v1"}}
            if batch:
                ms.update(max_batch_size=64, max_batch_time=0.02)
            (repo / model / "model-settings.json").write_text(json.dumps(ms))
            out.append(Server(f"MLServer {pythons['mlserver_version']}", "mlserver", model, batch,
                              [str(mls), "start", str(repo)], f"http://127.0.0.1:{p}/v2/models/{model}/infer",
                              v2, ok, cwd=repo, meta_url=f"http://127.0.0.1:{p}/v2/models/{model}",
                              conns=(16,) if batch else (1, 16)))
    if "bentoml" in args.servers:
        svc_dir = workdir / "bento"
        svc_dir.mkdir(exist_ok=True)
        (svc_dir / "bench_service.py").write_text(BENTO_SERVICE)
        bento = Path(pythons["bentoml"]).with_name("bentoml")
        expected = m["expected"]
        for batch in (False, True):
            p = free_port()
            out.append(Server(f"BentoML {pythons['bentoml_version']}", "bentoml", model, batch,
                              [str(bento), "serve", "bench_service:PeerModel", "--host", "127.0.0.1", "--port", str(p)],
                              f"http://127.0.0.1:{p}/predict", lambda _n: json.dumps({"x": [row]}).encode(),
                              lambda ans: ans == [expected], cwd=svc_dir,
                              env={"KEEL_BENCH_MODEL": m["joblib"], "KEEL_BENCH_BATCH": "1" if batch else "0",
                                   "BENTOML_HOME": str(workdir / "bentoml_home"), "BENTOML_DO_NOT_TRACK": "True",
                                   "DO_NOT_TRACK": "1"},
                              conns=(16,) if batch else (1, 16)))
    return out


def run_model(model: str, prep: dict[str, Any], args: argparse.Namespace, workdir: Path, lua: Path,
              pythons: dict[str, str]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Measure every server for one model; then 16-connection rounds over the floor and keel's two servers.

    The floor and both keel servers stay up (idle) until keel's second one is measured; then
    --rounds more rounds take turns between them (floor, keel off, keel on), so that machine
    noise hits each alike. Returns the results and, per server label, every c16 sample (the
    first one from its own measurement).
    """
    results: list[dict[str, Any]] = []
    up: dict[str, Running] = {}  # label -> a server kept up for the rounds
    rounds: dict[str, Any] | None = None
    try:
        for srv in servers_for(model, prep, args, workdir, pythons):
            print(f"== {srv.label} / {model}{' / batching' if srv.batching else ''}", file=sys.stderr)
            run = Running(srv, workdir)
            try:
                results.append(measure(run, lua, args))
            finally:
                if srv.kind in ("floor", "keel") and "error" not in run.result:
                    up[srv.label] = run
                else:
                    stop(run.proc)
            if srv.kind == "keel" and sum(r.srv.kind == "keel" for r in up.values()) == 2:
                order = sorted(up.values(), key=lambda r: (FLOOR, NOLOG, "keel").index(r.srv.label))
                samples = {r.srv.label: [r.result["c16"]] for r in order}
                print(f"   {args.rounds} more round(s) at 16 connections: "
                      + ", ".join(r.srv.label for r in order), file=sys.stderr)
                for _ in range(args.rounds):
                    for r in order:
                        samples[r.srv.label].append(r.load(lua, 16, args.duration))
                rounds = {label: {"samples": ss, **{f"median_{k}": statistics.median(x.get(k) or 0.0 for x in ss)
                                                    for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")}}
                          for label, ss in samples.items()}
            if srv.kind == "keel" and rounds is not None or srv.kind not in ("floor", "keel"):
                for run_ in up.values():  # nothing else may share the machine with the peers
                    stop(run_.proc)
                up.clear()
    finally:
        for run_ in up.values():
            stop(run_.proc)
    return results, rounds


def pair_with_mlserver(model: str, prep: dict[str, Any], args: argparse.Namespace, workdir: Path, lua: Path,
                       pythons: dict[str, str], results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """keel and MLServer's best configuration for ``model``, both up, taking turns at 16 connections.

    The 10x target is a ratio; on a shared machine the two sides of it, measured minutes apart,
    meet different noise (MLServer's own c16 figure doubled between two sittings here). Pairs of
    adjacent runs put both under the same conditions; the target takes the median of the pairs.
    """
    mls = [r for r in pick(results, "mlserver", model) if get(r, 16, "rps")]
    if not mls or not pick(results, "keel", model, "keel"):
        return None
    best = max(mls, key=lambda r: get(r, 16, "rps") or 0.0)
    pair_args = argparse.Namespace(**{**vars(args), "servers": ["keel", "mlserver"]})
    chosen = [srv for srv in servers_for(model, prep, pair_args, workdir, pythons)
              if (srv.kind == "keel" and srv.label == "keel") or (srv.kind == "mlserver" and srv.batching == best["batching"])]
    print(f"== paired rounds / {model}: keel and MLServer ({'batching' if best['batching'] else 'no batching'}), "
          f"{args.rounds + 1} pairs at 16 connections", file=sys.stderr)
    runs: list[Running] = []
    try:
        for srv in chosen:
            run = Running(srv, workdir)
            runs.append(run)
            if not run.wait_ready():
                return {"error": f"{srv.label} did not start for the paired rounds"}
            run.load(lua, 4, args.warmup)
        keel_run, mls_run = sorted(runs, key=lambda r: r.srv.kind != "keel")
        pairs = []
        for _ in range(args.rounds + 1):
            k, m = keel_run.load(lua, 16, args.duration), mls_run.load(lua, 16, args.duration)
            pairs.append({"keel": k.get("rps"), "mlserver": m.get("rps")})
    finally:
        for run in runs:
            stop(run.proc)
    ratios = [pr["keel"] / pr["mlserver"] for pr in pairs if pr["keel"] and pr["mlserver"]]
    out = {"mlserver_batching": best["batching"], "pairs": pairs,
           "median_ratio": statistics.median(ratios) if ratios else None}
    print("   pairs (keel / MLServer req/s): " + ", ".join(f"{pr['keel']:,.0f} / {pr['mlserver']:,.0f}" for pr in pairs)
          + (f"; median ratio {out['median_ratio']:.1f}x" if ratios else ""), file=sys.stderr)
    return out


# ---------------------------------------------------------------- report
def pick(results: list[dict[str, Any]], kind: str, model: str, label: str | None = None,
         batching: bool | None = None) -> list[dict[str, Any]]:
    return [r for r in results if r["kind"] == kind and r["model"] == model and "error" not in r
            and (label is None or r["server"] == label) and (batching is None or r["batching"] == batching)]


def get(r: dict[str, Any] | None, conns: int, key: str) -> float | None:
    return None if r is None else (r.get(f"c{conns}") or {}).get(key)


def c16(res: dict[str, Any], model: str, label: str, key: str) -> tuple[float | None, int]:
    """The median of ``key`` over a server's 16-connection samples (its run plus the rounds); and their count."""
    rounds = (res["rounds"].get(model) or {}).get(label)
    if rounds:
        return rounds[f"median_{key}"], len(rounds["samples"])
    rs = [r for r in res["results"] if r["model"] == model and r["server"] == label and "error" not in r]
    return (get(rs[0], 16, key), 1) if rs else (None, 0)


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: what, the numbers it compares, PASS / FAIL (or n/a when a number is missing).

    16-connection numbers of keel and the floor are medians over their samples (see run_model).
    """
    results, out = res["results"], []

    def add(what: str, value: str, ok: bool | None) -> None:
        out.append({"target": what, "measured": value, "verdict": "n/a" if ok is None else ("PASS" if ok else "FAIL")})

    (kr, nk), (fr, nf) = c16(res, "tiny", "keel", "rps"), c16(res, "tiny", FLOOR, "rps")
    add(f"tiny, 16 conns: keel >= {T_FLOOR_FRACTION:.0%} of the bare floor's req/s",
        "-" if not (kr and fr) else f"{kr:,.0f} / {fr:,.0f} = {kr / fr:.0%} (medians of {nk} / {nf})",
        None if not (kr and fr) else kr / fr >= T_FLOOR_FRACTION)
    for model in MODELS:
        k, nk = c16(res, model, "keel", "rps")
        mls = [(get(r, 16, "rps") or 0.0, r["batching"]) for r in pick(results, "mlserver", model)]
        best = max(mls, default=None)
        alone = "-" if not (k and best and best[0]) else \
            f"{k:,.0f} / {best[0]:,.0f} ({'batching' if best[1] else 'no batching'}) = {k / best[0]:.1f}x"
        pair = (res.get("paired") or {}).get(model) or {}
        if pair.get("median_ratio"):  # the fair comparison: adjacent runs under the same machine noise
            ratio = pair["median_ratio"]
            each = ", ".join(f"{pr['keel']:,.0f} / {pr['mlserver']:,.0f}" for pr in pair["pairs"])
            add(f"{model}, 16 conns: keel >= {T_VS_MLSERVER:.0f}x MLServer's best req/s",
                f"{ratio:.1f}x, median of {len(pair['pairs'])} adjacent pairs ({each}); separate runs: {alone}",
                ratio >= T_VS_MLSERVER)
            continue
        add(f"{model}, 16 conns: keel >= {T_VS_MLSERVER:.0f}x MLServer's best req/s", alone,
            None if not (k and best and best[0]) else k / best[0] >= T_VS_MLSERVER)
    tiny = pick(results, "keel", "tiny", "keel")
    p50 = get(tiny[0] if tiny else None, 1, "p50_ms")
    add(f"tiny, 1 conn: keel p50 < {T_P50_C1_MS} ms", "-" if p50 is None else f"{p50:.3f} ms",
        None if p50 is None else p50 < T_P50_C1_MS)
    for model in MODELS:
        p99, nk = c16(res, model, "keel", "p99_ms")
        fp99 = c16(res, model, FLOOR, "p99_ms")[0]
        add(f"{model}, 16 conns: keel p99 < {T_P99_C16_MS:.0f} ms",
            "-" if p99 is None else f"{p99:.2f} ms (median of {nk})" + ("" if fp99 is None else f"; floor {fp99:.2f} ms"),
            None if p99 is None else p99 < T_P99_C16_MS)
    for model in MODELS:
        (on, n_on), (off, _) = c16(res, model, "keel", "rps"), c16(res, model, NOLOG, "rps")
        cost = 1 - on / off if on and off else None
        add(f"{model}, 16 conns: prediction logging costs < {T_LOG_COST:.0%} of req/s",
            "-" if cost is None else f"{cost:+.1%} (median {on:,.0f} on vs {off:,.0f} off, {n_on} rounds)",
            None if cost is None else cost < T_LOG_COST)
        (cpu_on, _), (cpu_off, _) = c16(res, model, "keel", "cpu_us_per_req"), c16(res, model, NOLOG, "cpu_us_per_req")
        cost = cpu_on / cpu_off - 1 if cpu_on and cpu_off else None
        add(f"{model}, 16 conns: prediction logging costs < {T_LOG_COST:.0%} of the server's CPU per request",
            "-" if cost is None else f"{cost:+.1%} (median {cpu_on:,.0f} us on vs {cpu_off:,.0f} us off)",
            None if cost is None else cost < T_LOG_COST)
    for model in MODELS:
        rs = pick(results, "keel", model)
        if rs:
            cold = max(r["cold_start_s"] for r in rs)
            add(f"{model}: keel cold start < {T_COLD_S:.0f} s", f"{cold:.2f} s (worst of {len(rs)})", cold < T_COLD_S)
            rss = max(r["idle_rss"]["tree_mib"] for r in rs)
            procs = max(r["idle_rss"]["procs"] for r in rs)
            add(f"{model}: keel idle RSS < {T_RSS_MIB:.0f} MiB (one worker)",
                f"{rss:.0f} MiB ({procs} process{'es' if procs > 1 else ''}, worst of {len(rs)})", rss < T_RSS_MIB)
        else:
            add(f"{model}: keel cold start < {T_COLD_S:.0f} s", "-", None)
            add(f"{model}: keel idle RSS < {T_RSS_MIB:.0f} MiB (one worker)", "-", None)
    return out


def table(res: dict[str, Any]) -> str:
    """The results table, the in-process floor and the targets, as Markdown."""
    def n(v: float | None, f: str = ",.0f") -> str:
        return "-" if v is None else format(v, f)

    floor_rps = {c: get(next(iter(pick(res["results"], "floor", "tiny")), None), c, "rps") for c in (1, 16)}
    lines = ["| model | server | batching | cold start | idle RSS (procs) | c1 req/s | c1 p50 ms | c1 p99 ms "
             "| c16 req/s | c16 p50 ms | c16 p99 ms | errors | c1 / c16 vs floor |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["results"]:
        engine = f" ({r['engine']})" if r.get("engine") else ""
        head = f"| {r['model']} | {r['server']}{engine} | {'on' if r['batching'] else 'off'} |"
        if "error" in r:
            lines.append(f"{head} failed: {r['error'][:80]} |" + " |" * 9)
            continue
        errs = sum((r.get(f"c{c}") or {}).get("errors", 0) for c in (1, 16))
        vs = "-"
        if r["model"] == "tiny" and r["kind"] != "floor" and floor_rps[16]:
            vs = " / ".join("-" if not (get(r, c, "rps") and floor_rps[c]) else f"{get(r, c, 'rps') / floor_rps[c]:.0%}"
                            for c in (1, 16))
        rss = r["idle_rss"]
        lines.append(f"{head} {r['cold_start_s']:.2f} s | {n(rss['tree_mib'])} MiB ({rss['procs']}) "
                     f"| {n(get(r, 1, 'rps'))} | {n(get(r, 1, 'p50_ms'), '.3f')} | {n(get(r, 1, 'p99_ms'), '.2f')} "
                     f"| {n(get(r, 16, 'rps'))} | {n(get(r, 16, 'p50_ms'), '.3f')} | {n(get(r, 16, 'p99_ms'), '.2f')} "
                     f"| {errs}{'' if r.get('answer_ok', True) else ' (wrong answer!)'} | {vs} |")
    if res["rounds"]:
        lines += ["", "16 connections, taking turns on the same machine (the first sample is the run above):", "",
                  "| model | server | req/s per sample | median req/s | median p50 ms | median p99 ms "
                  "| median server CPU us/req |",
                  "|---|---|---|---|---|---|---|"]
        for model, by_label in res["rounds"].items():
            for label, rr in by_label.items():
                per = ", ".join(n(x.get("rps")) for x in rr["samples"])
                lines.append(f"| {model} | {label} | {per} | {n(rr['median_rps'])} | {rr['median_p50_ms']:.3f} "
                             f"| {rr['median_p99_ms']:.2f} | {n(rr.get('median_cpu_us_per_req'), '.1f')} |")
    prep = res["prepare"]["models"]
    lines += ["", "In-process one-row predict (numpy row, p50 / p99):", ""]
    for model, m in prep.items():
        lines.append(f"- {model}: raw estimator {m['inproc_raw_p50_ms']:.3f} / {m['inproc_raw_p99_ms']:.3f} ms; "
                     f"keel.load_model {m['inproc_keel_loaded_p50_ms']:.3f} / {m['inproc_keel_loaded_p99_ms']:.3f} ms")
    lines += ["", "| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['measured']} | {t['verdict']} |" for t in res["targets"]]
    return "\n".join(lines)


# ---------------------------------------------------------------- main
def peer_pythons(args: argparse.Namespace, sklearn_version: str) -> dict[str, str]:
    """Create or reuse the pinned peer venvs; their interpreters and versions."""
    out: dict[str, str] = {}
    sk = f"scikit-learn=={sklearn_version}"
    probe_sk = f"import sklearn; assert sklearn.__version__ == {sklearn_version!r}, sklearn.__version__"
    if "mlserver" in args.servers:
        out["mlserver"] = bench_venv(
            f"mlserver-{MLSERVER_VERSION}-sklearn-{sklearn_version}",
            [f"mlserver=={MLSERVER_VERSION}", f"mlserver-sklearn=={MLSERVER_VERSION}", sk, "joblib", *MLSERVER_EXTRA],
            f"import mlserver, mlserver_sklearn; {probe_sk}", args.mlserver_venv)
        out["mlserver_version"] = run_checked([out["mlserver"], "-c", "import mlserver; print(mlserver.__version__)"],
                                              "MLServer version").strip()
    if "bentoml" in args.servers:
        out["bentoml"] = bench_venv(
            f"bentoml-{BENTOML_VERSION}-sklearn-{sklearn_version}", [f"bentoml=={BENTOML_VERSION}", sk, "joblib", "numpy"],
            f"import bentoml; {probe_sk}", args.bentoml_venv)
        out["bentoml_version"] = run_checked([out["bentoml"], "-c", "import bentoml; print(bentoml.__version__)"],
                                             "BentoML version").strip()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=15.0, help="seconds of each wrk run (default 15)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of the wrk -c4 warm-up before each server")
    ap.add_argument("--rounds", type=int, default=2,
                    help="extra 16-connection rounds taking turns between the floor and keel's two servers (default 2)")
    ap.add_argument("--calls", type=int, default=1000, help="in-process predict calls")
    ap.add_argument("--quick", action="store_true", help="smoke test: 3 s runs, 1 s warm-up, 1 more round, 200 calls")
    ap.add_argument("--servers", default=",".join(SERVERS), help=f"comma list from {','.join(SERVERS)}")
    ap.add_argument("--models", default=",".join(MODELS), help="comma list from tiny,forest")
    ap.add_argument("--mlserver-venv", type=Path, help="MLServer virtualenv (reused if it works, else created)")
    ap.add_argument("--bentoml-venv", type=Path, help="BentoML virtualenv (reused if it works, else created)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (server logs, models, KEEL_HOME)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serving.json")
    ap.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--floor-server", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.prepare:  # in a subprocess with its own KEEL_HOME: one JSON line on stdout
        print(json.dumps(prepare(args.prepare, args.calls, args.models.split(","))))
        return
    if args.floor_server:
        floor_server(args.floor_server, args.port)
        return

    if args.quick:
        args.duration, args.warmup, args.rounds, args.calls = 3.0, 1.0, 1, 200
    args.servers = [s for s in args.servers.split(",") if s]
    args.models = [m for m in args.models.split(",") if m]
    bad = sorted(set(args.servers) - set(SERVERS)) + sorted(set(args.models) - set(MODELS))
    if bad:
        ap.error(f"unknown server or model: {', '.join(bad)}")
    if not shutil.which("wrk"):
        sys.exit("error: wrk not found on PATH. Install it: `apt-get install wrk` (Debian/Ubuntu), "
                 "`brew install wrk` (macOS), or build it from its source.")

    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="keelbench-serving-"))
    try:
        lua = workdir / "post.lua"
        lua.write_text(WRK_LUA)
        print("prepare: fit both models, log them into keel, time in-process predict ...", file=sys.stderr)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
        env["KEEL_HOME"] = str(workdir / "keel_home")
        out = run_checked([sys.executable, str(Path(__file__).resolve()), "--prepare", str(workdir),
                           "--calls", str(args.calls), "--models", ",".join(args.models)], "prepare", env=env, cwd=workdir)
        prep = json.loads(out.strip().splitlines()[-1])
        pythons = peer_pythons(args, prep["sklearn"])
        git = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "keel"],
                               capture_output=True, text=True).stdout.splitlines()
        prep["git"] = {"head": git.stdout.strip()[:100], "keel_uncommitted": dirty}
        versions = {"keel": prep["keel"], "python": prep["python"], "scikit-learn": prep["sklearn"],
                    "numpy": prep["numpy"], "MLServer": pythons.get("mlserver_version"),
                    "BentoML": pythons.get("bentoml_version"),
                    "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0].strip()}
        print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v), file=sys.stderr)
        if "keel" in args.servers:  # fail early, with keel's own words, if `keel serve` is missing or changed
            usage = run_checked([*keel_cmd(), "serve", "--help"], "keel serve --help", env=env, cwd=workdir)
            if "--no-log-predictions" not in usage:
                sys.exit(f"error: `keel serve` has no --no-log-predictions flag; its usage:\n{usage}")
        results: list[dict[str, Any]] = []
        rounds: dict[str, Any] = {}
        paired: dict[str, Any] = {}
        for model in args.models:
            rs, rounds_m = run_model(model, prep, args, workdir, lua, pythons)
            results += rs
            if rounds_m:
                rounds[model] = rounds_m
            if "keel" in args.servers and "mlserver" in args.servers and args.rounds:
                paired[model] = pair_with_mlserver(model, prep, args, workdir, lua, pythons, rs)
        res: dict[str, Any] = {
            "argv": sys.argv, "date": started.isoformat(timespec="seconds"), "nproc": os.cpu_count(),
            "platform": platform.platform(), "loadavg_start": load_start, "versions": versions,
            "settings": {"duration_s": args.duration, "warmup_s": args.warmup, "rounds": args.rounds,
                         "calls": args.calls, "servers": args.servers, "models": args.models},
            "prepare": prep, "results": results, "rounds": rounds, "paired": paired,
        }
        res["targets"] = targets(res)
        res["loadavg_end"] = os.getloadavg()
        res["table_md"] = md = table(res)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")
        if prep["git"]["keel_uncommitted"]:
            print(f"note: keel/ has uncommitted changes (measured as they are): {prep['git']['keel_uncommitted']}")
        print(f"{started:%Y-%m-%d} -- " + ", ".join(f"{k} {v}" for k, v in versions.items() if v)
              + f"; nproc {os.cpu_count()}; wrk -t1 on the same machine, {args.duration:g} s per run\n")
        print(md)
        print(f"\nloadavg start {tuple(round(x, 2) for x in load_start)} end "
              f"{tuple(round(x, 2) for x in res['loadavg_end'])}\nfull results: {args.out}")
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
