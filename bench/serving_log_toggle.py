"""Prediction logging's cost, measured by one keel server against itself.

    python bench/serving_log_toggle.py                     # tiny model, 2 s phases, 60 s of wrk -c16
    python bench/serving_log_toggle.py --model forest --seconds 120

Comparing a logging server with a non-logging one run after it does not resolve
a few per cent on a shared 2-core machine: the CPU time a request takes drifts
by up to 25 % from one minute to the next. Here one ``keel serve`` process,
with ``KEEL_BENCH_LOG_TOGGLE_S`` set, skips its prediction log in every other
phase of --phase seconds, under one long ``wrk -t1 -c16`` run. At each phase
boundary the script reads the process's CPU time (all threads, and the event
loop's thread alone, from ``/proc``) and the rows it has predicted (the
``keel_batch_size_sum`` metric). The result is the median, over adjacent
phases, of CPU per row with logging over CPU per row without. The log's
writer lags by at most its 0.2 s flush, so a little of an "on" phase's
writing lands in the next "off" phase, which slightly understates the cost.

Uses the same prepared models as bench/serving.py (prepared here in a fresh
KEEL_HOME) and needs ``wrk`` on PATH. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving as bench  # noqa: E402  (bench/serving.py: prepare, http, wrk's Lua script)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=bench.MODELS, default="tiny")
    ap.add_argument("--phase", type=float, default=2.0, help="seconds per phase (default 2)")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the wrk run (default 60)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the prepared models here (default: a temp dir)")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="keel-log-toggle-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env["KEEL_HOME"] = str(work / "home")
    prep_file = work / "prep.json"
    if not prep_file.exists():
        code = ("import json, sys; from pathlib import Path; sys.path.insert(0, %r); import serving; "
                "print(json.dumps(serving.prepare(Path(%r), 50, [%r])))" % (str(Path(__file__).parent), str(work),
                                                                             args.model))
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        prep_file.write_text(out.stdout.strip().splitlines()[-1])
    prep = json.loads(prep_file.read_text())

    port = bench.free_port()
    server = subprocess.Popen([*bench.keel_cmd(), "serve", prep["models"][args.model]["uri"], "--port", str(port)],
                              env={**env, "KEEL_BENCH_LOG_TOGGLE_S": str(args.phase)}, start_new_session=True,
                              stdout=open(work / "server.log", "wb"), stderr=subprocess.STDOUT)
    try:
        report(measure(server.pid, port, args, prep, work))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


def measure(pid: int, port: int, args: argparse.Namespace, prep: dict,
            work: Path) -> list[tuple[str, float, float, float]]:
    """(phase, CPU µs per row, event-loop thread CPU µs per row, rows per batch) of each whole phase."""
    base = f"http://127.0.0.1:{port}/v2/models/{args.model}"
    for _ in range(1200):
        status, text = bench.http(base)
        if status == 200:
            break
        time.sleep(0.05)
    else:
        sys.exit(f"the server did not start; see {work / 'server.log'}")
    name = json.loads(text)["inputs"][0]["name"]
    body, lua = work / "body.json", work / "wrk.lua"
    body.write_bytes(bench.v2_body(prep["row"])(name))
    lua.write_text(bench.WRK_LUA)
    bench.wrk(base + "/infer", body, lua, 4, 3)  # warm-up

    def sample() -> tuple[int, float, float, float, float]:
        total = loop = 0.0
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue  # a thread that just ended
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            total += cpu
            loop += cpu if tid == str(pid) else 0.0
        _, text = bench.http(f"http://127.0.0.1:{port}/metrics")
        rows, batches = (float(re.search(rb'keel_batch_size_%s\{model="%s"\} (\S+)' % (what, args.model.encode()),
                                         text).group(1)) for what in (b"sum", b"count"))
        return int(time.monotonic() / args.phase) % 2, total, loop, rows, batches

    load = subprocess.Popen(["wrk", "-t1", "-c16", f"-d{args.seconds:.0f}s", "-s", str(lua), base + "/infer"],
                            env={**os.environ, "WRK_BODY_FILE": str(body)}, stdout=subprocess.DEVNULL)
    time.sleep(1)
    samples = []
    while load.poll() is None:
        now = time.monotonic()
        time.sleep((int(now / args.phase) + 1) * args.phase + 0.05 - now)  # just past a boundary
        if load.poll() is None:
            samples.append(sample())
    phases = []
    for (odd, cpu0, loop0, rows0, n0), (_, cpu1, loop1, rows1, n1) in zip(samples, samples[1:]):
        if rows1 > rows0:  # odd phases skip the log (see keel/serving/app.py)
            phases.append(("off" if odd else "on", (cpu1 - cpu0) / (rows1 - rows0) * 1e6,
                           (loop1 - loop0) / (rows1 - rows0) * 1e6, (rows1 - rows0) / (n1 - n0)))
    return phases[:-1]  # the last one may be cut short by wrk's end


def report(phases: list[tuple[str, float, float, float]]) -> None:
    pairs = [(a, b) if a[0] == "on" else (b, a) for a, b in zip(phases, phases[1:]) if a[0] != b[0]]
    if not pairs:
        sys.exit("no adjacent on/off phases: run longer")
    for label, pick in (("all threads", 1), ("event loop", 2)):
        on = statistics.median(p[pick] for p in phases if p[0] == "on")
        off = statistics.median(p[pick] for p in phases if p[0] == "off")
        ratios = [on_[pick] / off_[pick] for on_, off_ in pairs]
        print(f"{label}: CPU per row {on:.1f} us logging, {off:.1f} us not; median of {len(ratios)} adjacent "
              f"ratios {statistics.median(ratios):.3f} (quartiles {statistics.quantiles(ratios, n=4)[0]:.3f}, "
              f"{statistics.quantiles(ratios, n=4)[2]:.3f})")
    print("rows per batch: %.1f logging, %.1f not" % tuple(statistics.median(p[3] for p in phases if p[0] == state)
                                                          for state in ("on", "off")))


if __name__ == "__main__":
    main()
