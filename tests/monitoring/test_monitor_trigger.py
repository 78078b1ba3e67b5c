"""A monitor's alert is a trigger: each alerting window fires its action once, a clean one never."""

from __future__ import annotations

import textwrap
from datetime import datetime, timezone
from functools import partial

import numpy as np
import pytest

from keel.errors import InvalidInput, NotFound

pytestmark = pytest.mark.store  # also on PostgreSQL

PIPELINE = """
import keel


@keel.step
def count(path):
    with open(path) as fh:
        return sum(1 for _ in fh)


@keel.pipeline(datasets=["data"])
def lines(data="x.csv"):
    return count(data)
"""


def log_traffic(ctx, tmp_path, start_ms, a_shift, n=400, seed=0):
    """Predictions of model m received from ``start_ms``, as the server logs them, ingested into the store."""
    from keel.serving.predlog import PredictionLog
    from keel.service.predictions import ingest_segment

    rng = np.random.default_rng(seed)
    a, b = rng.normal(a_shift, 1, n), rng.normal(0, 1, n)
    log = PredictionLog(tmp_path / f"spool-{seed}", partial(ingest_segment, ctx))
    log.record("m", 1, [f"r{seed}-{i}" for i in range(n)], (start_ms + np.arange(n)) / 1000, (start_ms + n) / 1000,
               {"a": a, "b": b}, {"label": (a > 0).astype(np.int64)}, epoch_offset=0.0)
    log.close()


def test_alerting_windows_fire_the_trigger_once_each(client, tmp_path):
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import keel
    from keel.pipelines.triggers import scheduler_pass
    from keel.service import triggers as service
    from keel.service.monitors import create_monitor, run_monitors
    from keel.service.triggers import create_trigger

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(0, 1, 2000), "b": rng.normal(0, 1, 2000)})
    with keel.start_run("m", settings=client.settings):
        keel.log_model(LogisticRegression().fit(frame, frame.a > 0), "model", input_example=frame[:3], register="m")
    frame.to_csv(tmp_path / "ref.csv", index=False)
    (tmp_path / "lines.py").write_text(textwrap.dedent(PIPELINE))
    (tmp_path / "new.csv").write_text("x\n1\n2\n")
    ctx = client.ctx
    create_monitor(ctx, "models:/m/1", window="1m", reference=str(tmp_path / "ref.csv"), since_ms=0)
    with pytest.raises(NotFound, match="no monitor named 'nope'"):
        create_trigger(ctx, "t", "monitor_alert", {"monitor": "nope"}, {"pipeline": str(tmp_path / "lines.py"),
                                                                      "data": str(tmp_path / "new.csv")})
    with pytest.raises(InvalidInput, match="needs --monitor"):
        create_trigger(ctx, "t", "monitor_alert", {}, {"pipeline": str(tmp_path / "lines.py")})
    trigger = create_trigger(ctx, "on-drift", "monitor_alert", {"monitor": "m"},
                             {"pipeline": str(tmp_path / "lines.py"), "data": str(tmp_path / "new.csv")})

    log_traffic(ctx, tmp_path, 0, a_shift=0.0, seed=2)  # window 1: like the reference
    log_traffic(ctx, tmp_path, 60_000, a_shift=2.0, seed=3)  # window 2: a moved
    log_traffic(ctx, tmp_path, 120_000, a_shift=2.0, seed=4)  # window 3: still moved
    results = run_monitors(ctx, now=180_000)
    assert [r.status for r in results] == ["ok", "alert", "alert"]

    now = datetime.now(timezone.utc)
    assert scheduler_pass(ctx, client.settings, now=now) == 2
    assert scheduler_pass(ctx, client.settings, now=now) == 0  # each alert fires once
    firings = service.firings(ctx, trigger.id)
    assert sorted(f.dedupe_key for f in firings) == sorted(f"monitor-result:{r.id}" for r in results[1:])
    assert {f.status for f in firings} == {"succeeded"}, [f.outcome for f in firings]
    assert all(f.outcome["pipeline_run_id"] for f in firings)

    # Lineage, both ways: version -> its window results -> the runs their alerts started.
    from keel.service.lineage import build_graph

    graph = build_graph(ctx, "models:/m/1", direction="down")
    assert sorted(n.attrs["status"] for n in graph.of_kind("monitor_result")) == ["alert", "alert", "ok"]
    triggered = {(e.source, e.target) for e in graph.edges if e.kind == "triggered"}
    assert triggered == {(f"monitor-result:{f.dedupe_key.split(':', 1)[1]}", f"runs:/{f.outcome['pipeline_run_id']}")
                         for f in firings}
    run_id = firings[0].outcome["pipeline_run_id"]
    up = build_graph(ctx, f"runs:/{run_id}", direction="up")
    assert "models:/m/1" in up.nodes and any(n.kind == "monitor_result" for n in up.nodes.values())
