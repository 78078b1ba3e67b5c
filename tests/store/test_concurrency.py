"""Many processes writing to one store at once: nothing lost, no lock errors, chain intact."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.store

WORKERS = 8
VALUES = 1500

WORKER = textwrap.dedent("""
    import sys, time
    from keel.tracking.client import Client
    run_id, worker, n, start_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    client = Client()
    client.log_params(run_id, {f"worker_{worker}": worker})
    while time.time() < start_at:  # start every worker's writes together
        time.sleep(0.001)
    for i in range(n):
        client.log_metric(run_id, f"w{worker}", worker * 1_000_000 + i, step=i)
        client.log_metric(run_id, "shared", float(i), step=worker * n + i)
    client.close()
""")


def test_eight_processes_log_to_one_run(client, keel_env, raw_engine):
    import time

    run = client.create_run("concurrent")
    # A small buffer makes each worker commit often: 8 x 40 interleaved write transactions.
    env = {**keel_env, "KEEL_METRIC_BUFFER_SIZE": "75"}
    start_at = time.time() + 3.0
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, run.id, str(w), str(VALUES), str(start_at)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in range(WORKERS)
    ]
    results = [(p.wait(timeout=180), p.stderr.read()) for p in procs]
    for code, stderr in results:
        assert code == 0, stderr
        assert "locked" not in stderr.lower()

    with raw_engine.connect() as conn:
        total = conn.execute(sa.text("SELECT SUM(count) FROM metric_chunks WHERE run_id = :r"), {"r": run.id}).scalar()
    assert total == WORKERS * VALUES * 2
    for w in range(WORKERS):
        history = client.metric_history(run.id, f"w{w}")
        assert [m.value for m in history] == [w * 1_000_000 + i for i in range(VALUES)]
    shared = client.metric_history(run.id, "shared")
    assert sorted(m.step for m in shared) == list(range(WORKERS * VALUES))
    got = client.get_run(run.id)
    assert got.metrics["shared"] == float(VALUES - 1)  # value at the highest step
    assert set(got.params) == {f"worker_{w}" for w in range(WORKERS)}
    report = client.verify_audit()
    assert report.ok, report
    assert report.events_checked > WORKERS * (VALUES * 2 // 75)
