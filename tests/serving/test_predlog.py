"""The prediction log: spool on disk, ingestion into the store, windows, labels, crashes."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from keel.errors import InvalidInput
from keel.service import prediction_windows, predictions
from keel.serving import spool
from keel.serving.predlog import PredictionLog

pytestmark = pytest.mark.store


@pytest.fixture
def ctx(client):
    return client.ctx


def _now() -> int:
    return int(time.time() * 1000)


def _record(log: PredictionLog, model: str, version: int, ids: list, received_ms: list, inputs: dict, outputs: dict,
            *, latency_ms: float = 1.0, rows: list | None = None) -> bool:
    """``log.record`` of requests received at these Unix milliseconds, the last answered ``latency_ms`` later."""
    started = [ms / 1000 if isinstance(ms, (int, float)) else ms for ms in received_ms]
    finished = max((t for t in started if isinstance(t, float)), default=0.0) + latency_ms / 1000
    return log.record(model, version, ids, started, finished, inputs, outputs, rows, epoch_offset=0.0)


def _audit_actions(raw_engine, action: str) -> list[dict]:
    with raw_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT details FROM audit_events WHERE action = :a ORDER BY seq"),
                            {"a": action}).all()
    return [json.loads(r[0]) for r in rows]


def test_round_trip_of_several_models(ctx, tmp_path, raw_engine):
    log = PredictionLog(tmp_path / "spool", functools.partial(predictions.ingest_segment, ctx), flush_interval=0.02)
    t0 = _now()
    expected = []  # (request_id, row, received, x row, prediction)
    for b in range(20):
        k = 1 + b % 3
        ids = [f"tensor-{b}-{j}" for j in range(k)]
        x = np.arange(k * 3, dtype=np.float32).reshape(k, 3) + b
        pred = x.sum(axis=1).astype(np.float64)
        proba = np.stack([np.full(k, 0.25), np.full(k, 0.75)], axis=1)
        received = [t0 + b] * k
        assert _record(log, "tensor", 1, ids, received, {"input": x},
                       {"predict": pred, "proba": proba}, latency_ms=0.5 + b)
        expected += [(ids[j], 0, t0 + b, x[j], pred[j]) for j in range(k)]
    # one request of three rows
    x = np.ones((3, 3), np.float32) * 7
    assert _record(log, "tensor", 1, ["multi"], [t0 + 30], {"input": x},
                   {"predict": x.sum(axis=1).astype(np.float64), "proba": np.full((3, 2), 0.5)}, latency_ms=9.0, rows=[3])
    # a columnar model, two versions, with a string column and a reserved name
    for version in (1, 2):
        for b in range(5):
            assert _record(log, "tabular", version, [f"tab-{version}-{b}"], [t0 + b],
                              {"age": np.array([30 + b]), "city": np.array(["Oslo"], dtype=object),
                               "label": np.array([b])}, {"score": np.array([0.1 * b])})
    log.close()
    stats = log.stats()
    assert stats["logged"] == len(expected) + 3 + 10 and stats["dropped"] == 0 and stats["pending"] == 0
    assert stats["ingest_errors"] == 0 and stats["segments_ingested"] >= 3  # one per model version at least
    assert list((tmp_path / "spool").iterdir()) == []  # everything ingested, nothing left behind

    table = prediction_windows.read_window(ctx, "tensor")
    assert table.column_names == ["request_id", "version", "row", "received_ms", "latency_ms",
                                  "input_0", "input_1", "input_2", "output:predict", "output:proba_0",
                                  "output:proba_1", "label"]
    got = table.to_pylist()
    assert len(got) == len(expected) + 3
    for want, row in zip(expected, got):
        assert (row["request_id"], row["row"], row["received_ms"], row["version"]) == (want[0], 0, want[2], 1)
        assert [row["input_0"], row["input_1"], row["input_2"]] == want[3].tolist()
        assert row["output:predict"] == want[4] and row["output:proba_1"] == 0.75 and row["label"] is None
    assert [(r["request_id"], r["row"], round(r["latency_ms"], 3)) for r in got[-3:]] == [("multi", i, 9.0) for i in range(3)]

    tab = prediction_windows.read_window(ctx, "tabular", with_labels=False)
    assert tab.num_rows == 10 and set(tab["version"].to_pylist()) == {1, 2}
    assert tab.column_names == ["request_id", "version", "row", "received_ms", "latency_ms",
                                "age", "city", "input:label", "output:score"]
    assert tab["city"].to_pylist() == ["Oslo"] * 10
    only_v2 = prediction_windows.read_window(ctx, "tabular", version=2, start_ms=t0 + 1, end_ms=t0 + 3)
    assert only_v2["request_id"].to_pylist() == ["tab-2-1", "tab-2-2"]
    assert prediction_windows.read_window(ctx, "nobody").num_rows == 0

    # one audit event per stored segment, none per prediction
    with raw_engine.connect() as conn:
        segments = conn.execute(sa.text("SELECT segment, rows, sha256 FROM prediction_segments")).all()
    events = _audit_actions(raw_engine, "predictions.ingest")
    assert sorted((e["segment"], e["rows"], e["sha256"]) for e in events) == sorted(map(tuple, segments))
    assert sum(e["rows"] for e in events) == stats["logged"]
    with raw_engine.connect() as conn:  # each segment's time span, which windows select segments by
        span = conn.execute(sa.text("SELECT min(first_ms), max(last_ms) FROM prediction_segments "
                                    "WHERE model = 'tensor'")).one()
    assert tuple(span) == (t0, t0 + 30)


def test_labels_before_and_after_ingestion(ctx, tmp_path, raw_engine):
    # Labels may arrive before the predictions reach the store.
    assert predictions.attach_labels(ctx, "m", {"a": 1, "b": 0}) == 2
    log = PredictionLog(tmp_path / "spool", functools.partial(predictions.ingest_segment, ctx), flush_interval=0.02)
    t0 = _now()
    _record(log, "m", 1, ["a", "b", "c"], [t0, t0 + 1, t0 + 2], {"input": np.zeros((3, 2))},
            {"predict": np.array([1, 1, 0])})
    _record(log, "m", 1, ["batch"], [t0 + 3], {"input": np.zeros((2, 2))}, {"predict": np.array([1, 0])}, rows=[2])
    log.close()
    assert prediction_windows.read_window(ctx, "m")["label"].to_pylist() == [1, 0, None, None, None]
    # ...or after; attaching again replaces; a list for a two-row request is one value per row.
    assert predictions.attach_labels(ctx, "m", [("c", 1), ("b", 1), ("batch", [0, 1])]) == 3
    assert prediction_windows.read_window(ctx, "m")["label"].to_pylist() == [1, 1, 1, 0, 1]
    assert prediction_windows.read_window(ctx, "other")["label"].to_pylist() == []
    # Labels of mixed types come back as their JSON text rather than failing.
    predictions.attach_labels(ctx, "m", {"a": "cat"})
    assert prediction_windows.read_window(ctx, "m")["label"].to_pylist() == ['"cat"', "1", "1", "0", "1"]
    events = _audit_actions(raw_engine, "predictions.label")
    assert [(e["count"], e["replaced"]) for e in events] == [(2, 0), (3, 1), (1, 1)]
    with pytest.raises(InvalidInput, match="'x'"):
        predictions.attach_labels(ctx, "m", {"x": float("nan")})
    with pytest.raises(InvalidInput, match="request ids"):
        predictions.attach_labels(ctx, "m", {"": 1})


def test_queue_is_bounded_when_the_writer_is_blocked(ctx, tmp_path, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    write = spool.Segment.write

    def blocked_write(self, batch):
        entered.set()
        assert release.wait(30)
        write(self, batch)

    monkeypatch.setattr(spool.Segment, "write", blocked_write)
    log = PredictionLog(tmp_path / "spool", None, flush_interval=0.01, max_pending_rows=100)
    x = {"input": np.zeros((10, 4))}
    y = {"predict": np.zeros(10)}
    ids = lambda b: [f"{b}-{j}" for j in range(10)]  # noqa: E731
    assert _record(log, "m", 1, ids(0), [_now()] * 10, x, y)
    assert entered.wait(10)  # the writer holds the first batch and is stuck on the disk
    accepted = [b for b in range(1, 30) if _record(log, "m", 1, ids(b), [_now()] * 10, x, y)]
    assert accepted == list(range(1, 10))  # 100 rows in memory, no more
    assert log.stats()["pending"] == 100 and log.stats()["dropped"] == 200
    release.set()
    log.close()
    assert log.stats()["logged"] == 100 and log.stats()["pending"] == 0
    assert not _record(log, "m", 1, ids(99), [_now()] * 10, x, y)  # closed
    # With no ingester the sealed segments wait in the spool; a replay stores them.
    assert predictions.ingest_spool(ctx, tmp_path / "spool") == 100
    got = prediction_windows.read_window(ctx, "m", with_labels=False)["request_id"].to_pylist()
    assert sorted(got) == sorted(i for b in range(10) for i in ids(b))


def test_a_second_ingest_of_the_same_segments_adds_nothing(ctx, tmp_path, raw_engine):
    log = PredictionLog(tmp_path / "spool", None, flush_interval=0.01, segment_rows=10)
    for b in range(6):
        _record(log, "m", 3, [f"r{b}-{j}" for j in range(5)], [_now()] * 5,
                {"input": np.full((5, 2), b)}, {"predict": np.full(5, b)})
        time.sleep(0.05)  # separate flushes, so that segments rotate by rows
    log.close()
    sealed = sorted((tmp_path / "spool").glob("*.log"))
    assert len(sealed) >= 2
    shutil.copytree(tmp_path / "spool", tmp_path / "copy")
    assert predictions.ingest_spool(ctx, tmp_path / "spool") == 30
    # As if the process had died after the commit and before deleting the files:
    for path in (tmp_path / "copy").iterdir():
        shutil.copy(path, tmp_path / "spool" / path.name)
    assert predictions.ingest_spool(ctx, tmp_path / "spool") == 0
    assert predictions.ingest_segment(ctx, tmp_path / "copy" / sealed[0].name) == 0
    assert list((tmp_path / "spool").iterdir()) == []
    assert prediction_windows.read_window(ctx, "m").num_rows == 30
    with raw_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM prediction_segments")).scalar() == len(sealed)
    assert len(_audit_actions(raw_engine, "predictions.ingest")) == len(sealed)


def test_a_torn_tail_keeps_every_whole_batch(tmp_path):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    chunks = [spool.encode_chunk([f"r{i}"], [i], [1.0], {"input": np.full((1, 3), i)}, {"predict": np.array([i])})
              for i in range(5)]
    segment = spool.Segment(spool_dir, "m", 1, chunks[0].signature)
    for chunk in chunks:
        segment.write(chunk)
    segment.sync()
    data = segment.path.read_bytes()
    torn = tmp_path / "torn.open"
    seen = set()
    for cut in range(len(data) + 1):  # what a writer killed at any byte would leave
        torn.write_bytes(data[:cut])
        found = spool.read_segment(torn)
        rows = [] if found is None else [rid for c in found.chunks for rid in c.decode().request_ids]
        assert rows == [f"r{i}" for i in range(len(rows))]  # a prefix, never garbage
        if found is not None:
            assert found.valid_bytes <= cut and spool.parse_segment(data[:found.valid_bytes]).rows == len(rows)
        seen.add(len(rows))
    assert seen == set(range(6))
    assert (spool.read_segment(segment.path).model, spool.read_segment(segment.path).version) == ("m", 1)

    # A live writer's segment is left alone by recovery, even from the same process.
    assert spool.seal_abandoned(spool_dir) == 0 and segment.path.exists()
    sealed = segment.seal()
    assert sealed.suffix == ".log" and spool.read_segment(sealed).rows == 5


def test_a_flipped_byte_ends_the_segment_there(tmp_path):
    chunks = [spool.encode_chunk([f"r{i}"], [i], [1.0], {"x": np.full(1, float(i))}, {}) for i in range(3)]
    segment = spool.Segment(tmp_path, "m", 1, chunks[0].signature)
    for chunk in chunks:
        segment.write(chunk)
    segment.sync()
    chunks_end = segment.path.stat().st_size  # the seal record comes after
    data = bytearray(segment.seal().read_bytes())
    data[chunks_end - 3] ^= 0xFF  # inside the last chunk's values: its checksum no longer holds
    found = spool.parse_segment(bytes(data))
    assert [c.decode().request_ids for c in found.chunks] == [["r0"], ["r1"]] and found.sealed is None
    with pytest.raises(spool.CorruptSegment, match="magic"):
        spool.parse_segment(b"PAR1 something else entirely")


def test_a_sealed_segment_says_what_it_holds_at_its_end(tmp_path):
    chunks = [spool.encode_chunk([f"r{i}", f"s{i}"], [100 - i, 200 + i], [1.0, 2.0], {"x": np.full((3, 2), i)}, {},
                                 rows=[1, 2]) for i in range(4)]
    segment = spool.Segment(tmp_path, "m", 2, chunks[0].signature)
    for chunk in chunks:
        segment.write(chunk)
    sealed = segment.seal()
    summary = {"model": "m", "version": 2, "rows": 12, "requests": 8, "first_ms": 97, "last_ms": 203}
    assert spool.sealed_summary(sealed) == summary  # read from the end, chunks untouched
    found = spool.read_segment(sealed)
    assert found.sealed == summary and found.rows == 12 and found.valid_bytes == sealed.stat().st_size
    data = sealed.read_bytes()
    for cut in range(len(data) - 40, len(data)):  # a seal record cut short is no seal record
        sealed.write_bytes(data[:cut])
        assert spool.sealed_summary(sealed) is None
        assert spool.read_segment(sealed).rows == 12  # every chunk is still there
    flipped = bytearray(data)
    flipped[-20] ^= 0xFF  # inside the summary: its checksum no longer holds
    sealed.write_bytes(bytes(flipped))
    assert spool.sealed_summary(sealed) is None and spool.read_segment(sealed).rows == 12


def test_every_kind_of_tensor_survives_the_segment_format():
    from keel.serving.log_table import segment_table

    inputs = {"img": np.arange(12, dtype=np.uint8).reshape(3, 2, 2), "row": np.array([1, 2, 3]),
              "half": np.ones(3, np.float16), "flag": np.array([True, False, True]),
              "city": np.array(["Zürich", None, "Oslo"], object), "raw": np.array([b"\x00a", b"", b"z"], object),
              "big_endian": np.array([1.5, 2.5, 3.5], ">f8"), "wide": np.array(["a", "bc", "d"])}
    chunk = spool.encode_chunk(["r1", "r2"], [10, 20], [1.0, 2.0], inputs, {"proba": np.eye(3, dtype=np.float32)},
                               rows=[1, 2])
    data = b"".join(bytes(p) for p in [spool.MAGIC, *spool.frame([b'{"model": "m", "version": 3}']),
                                       *spool.frame(chunk.parts)])
    model, version, table = segment_table(data)
    assert (model, version, table.num_rows) == ("m", 3, 3)
    rows = table.to_pylist()
    assert [r["request_id"] for r in rows] == ["r1", "r2", "r2"] and [r["row"] for r in rows] == [0, 0, 1]
    assert [r["img"] for r in rows] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert [r["input:row"] for r in rows] == [1, 2, 3] and [r["flag"] for r in rows] == [True, False, True]
    assert [r["city"] for r in rows] == ["Zürich", None, "Oslo"] and [r["raw"] for r in rows] == [b"\x00a", b"", b"z"]
    assert [r["big_endian"] for r in rows] == [1.5, 2.5, 3.5] and [r["wide"] for r in rows] == ["a", "bc", "d"]
    assert [r["output:proba_1"] for r in rows] == [0.0, 1.0, 0.0]
    assert table.schema.field("half").type == pa.float32()
    with pytest.raises(TypeError, match="cannot log a int among strings"):
        spool.encode_chunk(["r1", "r2"], [1, 2], [1.0, 1.0], {"mixed": np.array(["a", 3], object)}, {})


def test_a_file_that_is_no_segment_is_set_aside_and_the_others_ingested(ctx, tmp_path, caplog):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / "0000000000001-junk.log").write_bytes(b"this is not a segment at all")
    log = PredictionLog(spool_dir, functools.partial(predictions.ingest_segment, ctx), flush_interval=0.01)
    _record(log, "m", 1, ["ok"], [_now()], {"input": np.zeros((1, 2))}, {"predict": np.zeros(1)})
    log.close()
    assert prediction_windows.read_window(ctx, "m")["request_id"].to_pylist() == ["ok"]
    assert [p.name for p in spool_dir.iterdir()] == ["0000000000001-junk.corrupt"]
    assert "not a readable prediction segment" in caplog.text


def test_segments_of_earlier_servers_are_still_ingested_and_read(ctx, tmp_path):
    """Arrow IPC spool segments, and Parquet blobs in the store, from before the segment format."""
    import pyarrow.parquet as pq

    from keel.serving.log_table import record_batch
    from keel.store.schema import prediction_segments

    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    t0 = _now()
    batch = record_batch(["old-1", "old-2"], [t0, t0 + 1], [1.0, 1.0], {"input": np.ones((2, 2))},
                         {"predict": np.array([1, 0])})
    schema = batch.schema.with_metadata({b"keel.model": b"m", b"keel.version": b"1"})
    with pa.OSFile(str(spool_dir / f"{t0:013d}-legacy.arrows"), "wb") as sink:
        with pa.ipc.new_stream(sink, schema) as writer:
            writer.write_batch(batch)
    assert predictions.ingest_spool(ctx, spool_dir) == 2
    parquet = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_batches([batch]), parquet)
    sha, size = ctx.blobs.put_bytes(parquet.getvalue().to_pybytes())
    with ctx.store.engine.begin() as conn:
        conn.execute(prediction_segments.insert().values(
            id="p", model="m", version=1, segment="parquet-era", sha256=sha, size=size, rows=2, first_ms=t0 + 5,
            last_ms=t0 + 6, created_at=t0))
    got = prediction_windows.read_window(ctx, "m", with_labels=False)
    assert got["request_id"].to_pylist() == ["old-1", "old-1", "old-2", "old-2"]
    assert got["input_1"].to_pylist() == [1.0] * 4


def test_two_logs_share_a_spool_directory(ctx, tmp_path):
    ingest = functools.partial(predictions.ingest_segment, ctx)
    first = PredictionLog(tmp_path / "spool", ingest, flush_interval=0.01, segment_seconds=60)
    _record(first, "m", 1, ["a"], [_now()], {"input": np.zeros((1, 2))}, {"predict": np.zeros(1)})
    deadline = time.time() + 10
    while not list((tmp_path / "spool").glob("*.open")) and time.time() < deadline:
        time.sleep(0.01)
    second = PredictionLog(tmp_path / "spool", ingest, flush_interval=0.01)  # its recovery must not steal
    _record(first, "m", 1, ["b"], [_now()], {"input": np.zeros((1, 2))}, {"predict": np.zeros(1)})
    _record(second, "m", 1, ["c"], [_now()], {"input": np.zeros((1, 2))}, {"predict": np.zeros(1)})
    second.close()
    first.close()
    assert first.stats()["dropped"] == second.stats()["dropped"] == 0
    assert sorted(prediction_windows.read_window(ctx, "m")["request_id"].to_pylist()) == ["a", "b", "c"]


CHILD = textwrap.dedent("""
    import functools, sys, time
    import numpy as np
    from keel.serving.predlog import PredictionLog
    from keel.service.predictions import ingest_segment
    from keel.tracking.client import Client

    spool_dir, tag = sys.argv[1], sys.argv[2]
    ctx = Client().ctx
    log = PredictionLog(spool_dir, functools.partial(ingest_segment, ctx), segment_seconds=2.0)
    print("ready", flush=True)
    i = 0
    while True:
        k = 1 + i % 3
        ids = [f"{tag}-{i}-{j}" for j in range(k)]
        x = np.full((k, 3), i, np.float64)
        if log.record("m", 1, ids, [time.perf_counter()] * k, time.perf_counter(), {"input": x}, {"predict": x[:, 0] * 2}):
            print(time.time(), *ids, flush=True)  # acknowledged
        i += 1
        time.sleep(0.0005)
""")


def _run_and_kill(keel_env, spool_dir: Path, tag: str, seconds: float) -> tuple[list[tuple[float, list[str]]], float]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(spool_dir), tag], env=keel_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout))
    reader.start()
    time.sleep(seconds)
    # Kill it while its open segment holds over a second of traffic: only flushes make that durable.
    deadline = time.time() + 60
    while not any(int(p.name.split("-")[0]) < (time.time() - 1.3) * 1000 for p in spool_dir.glob("*.open")):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() else "no segment"
        time.sleep(0.002)
    killed_at = time.time()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    reader.join(30)
    assert proc.returncode == -signal.SIGKILL
    acks = []
    for line in lines:
        parts = line.split()
        if len(parts) > 1 and line.endswith("\n"):  # the last line may be cut by the kill
            acks.append((float(parts[0]), parts[1:]))
    return acks, killed_at


def test_sigkill_keeps_what_was_acknowledged_a_second_before(ctx, keel_env, tmp_path):
    spool_dir = tmp_path / "spool"
    acks_a, killed_a = _run_and_kill(keel_env, spool_dir, "a", 2.5)
    leftovers = list(spool_dir.iterdir())
    assert any(p.suffix == ".open" for p in leftovers), leftovers  # killed mid-segment
    # A new log on the same spool ingests the leftovers at start; it is killed in turn.
    acks_b, killed_b = _run_and_kill(keel_env, spool_dir, "b", 2.0)
    assert not {spool.segment_name(p) for p in leftovers} & {spool.segment_name(p) for p in spool_dir.iterdir()}
    assert predictions.ingest_spool(ctx, spool_dir) >= 0
    assert list(spool_dir.iterdir()) == []

    table = prediction_windows.read_window(ctx, "m", with_labels=False)
    counts: dict[str, int] = {}
    for rid in table["request_id"].to_pylist():
        counts[rid] = counts.get(rid, 0) + 1
    assert all(n == 1 for n in counts.values()), "a prediction was stored twice"
    for acks, killed in ((acks_a, killed_a), (acks_b, killed_b)):
        durable = [rid for at, ids in acks if at < killed - 1.0 for rid in ids]
        assert len(durable) > 100, "the child acknowledged too little to test anything"
        missing = [rid for rid in durable if rid not in counts]
        assert not missing, f"{len(missing)} acknowledged predictions lost, e.g. {missing[:5]}"
    # The stored values are the recorded ones.
    by_id = {r["request_id"]: r for r in table.select(["request_id", "input_2", "output:predict"]).to_pylist()}
    for rid in list(counts)[:: max(1, len(counts) // 200)]:
        i = int(rid.split("-")[1])
        assert (by_id[rid]["input_2"], by_id[rid]["output:predict"]) == (i, 2 * i)


def test_record_batch_columns():
    from keel.serving.log_table import record_batch

    batch = record_batch(
        ["r1", "r2"], [10, 20], [1.0, 2.0],
        {"img": np.zeros((3, 2, 2), np.uint8), "row": np.array([1, 2, 3]), "half": np.ones(3, np.float16)},
        {"output": np.eye(3)}, rows=[1, 2])
    assert batch.column_names == ["request_id", "row", "received_ms", "latency_ms", "img", "input:row", "half",
                                  "output:output_0", "output:output_1", "output:output_2"]
    assert batch["request_id"].to_pylist() == ["r1", "r2", "r2"] and batch["row"].to_pylist() == [0, 0, 1]
    assert batch["received_ms"].to_pylist() == [10, 20, 20]
    assert batch.schema.field("img").type == pa.list_(pa.uint8(), 4)
    assert batch.schema.field("half").type == pa.float32()
    with pytest.raises(ValueError):
        record_batch(["r1"], [1], [1.0], {"input": np.zeros((2, 2))}, {})


def test_malformed_calls_are_dropped_and_the_others_kept(ctx, tmp_path, caplog):
    log = PredictionLog(tmp_path / "spool", functools.partial(predictions.ingest_segment, ctx), flush_interval=3600)
    t0 = _now()
    y = {"predict": np.zeros(1)}
    assert _record(log, "m", 1, ["a"], [t0], {"input": np.ones((1, 4))}, y)
    # Refused at once: the counts of ids and times disagree.
    assert not log.record("m", 1, ["h"], [1.0, 2.0], 3.0, {"input": np.ones((1, 4))}, y, epoch_offset=0.0)
    # Queued, then dropped when the queue folds them into its columns.
    assert _record(log, "m", 1, ["b", "c"], [t0] * 2, {"input": np.ones((1, 4))}, y)  # rows != ids
    assert _record(log, "m", 1, ["s"], [t0], {"input": np.float64(1.0)}, y)  # a scalar tensor
    assert _record(log, "m", 1, [7], [t0 + 2], {"input": np.ones((1, 4))}, y)  # not a string id
    assert _record(log, "m", 1, ["t"], [None], {"input": np.ones((1, 4))}, y)  # not a time
    assert _record(log, "m", 1, ["x\0y"], [t0 + 2], {"input": np.ones((1, 4))}, y)  # ids are joined by NULs

    class Odd(np.ndarray):  # an array whose length cannot be taken: an error no check expects
        def __len__(self):
            raise RuntimeError("no length")

    assert _record(log, "m", 1, ["odd"], [t0 + 2], {"input": np.ones((1, 4)).view(Odd)}, y)
    # Accepted, but they do not fit the others of their queue: written after them.
    assert _record(log, "m", 1, ["d"], [t0 + 1], {"input": np.full((1, 5), 2.0)}, y)
    assert _record(log, "m", 1, ["e"], [t0 + 3], {"other": np.ones(1)}, y)  # other tensors
    assert _record(log, "m", 1, ["f"], [t0 + 4], {"input": np.arange(8.0).reshape(2, 4).T[:1]}, y)  # strided
    assert _record(log, "m", 1, ["g"], [t0 + 5], {"input": np.full((1, 4), 7, np.int32)}, y)  # another dtype
    # One queue where a value cannot be stored: its calls are written one by one, the bad one dropped.
    for rid, city in (("ok1", "Oslo"), ("bad", {"not": "a string"}), ("ok2", "Rome")):
        city_tensor = np.empty(1, object)
        city_tensor[0] = city
        assert _record(log, "o", 1, [rid], [t0], {"city": city_tensor}, y)
    log.close()  # the one flush of this log
    assert log.stats()["logged"] == 7 and log.stats()["dropped"] == 9 and log.stats()["pending"] == 0
    assert prediction_windows.read_window(ctx, "o", with_labels=False)["city"].to_pylist() == ["Oslo", "Rome"]
    assert "dropped 1 prediction rows" in caplog.text  # warned once, however many follow
    assert "dropped 2 prediction rows" not in caplog.text
    table = prediction_windows.read_window(ctx, "m", with_labels=False)
    assert table["request_id"].to_pylist() == ["a", "d", "e", "f", "g"]
    assert table["input_1"].to_pylist() == [1.0, 2.0, None, 4.0, 7.0]
    assert table["input_4"].to_pylist() == [None, 2.0, None, None, None]
    assert table["other"].to_pylist() == [None, None, 1.0, None, None]


def test_calls_folded_in_groups_keep_every_value(ctx, tmp_path, caplog):
    from keel.serving.predlog import GROUP

    log = PredictionLog(tmp_path / "spool", functools.partial(predictions.ingest_segment, ctx), flush_interval=3600)
    t0 = _now() / 1000
    expected = {}  # request id -> (received_ms, latency_ms, x row, prediction)
    for c in range(4 * GROUP + 5):  # whole groups, each folded at once, and a rest the writer folds
        k = 1 + c % 3
        ids = [f"g{c}-{j}" for j in range(k)]
        if c == GROUP + 3:
            ids[1] = "bad\0id"  # drops its call only: the group is folded call by call
        rows = [2, 1, 1][:k] if c == 2 * GROUP + 1 else None  # a request of two rows in the third group
        n = k if rows is None else sum(rows)
        x = np.arange(n * 2, dtype=np.float32).reshape(n, 2) + c
        started = [t0 + c + j / 1000 for j in range(k)]
        finished = t0 + c + 0.005
        assert log.record("m", 1, ids, started, finished, {"input": x}, {"predict": x.sum(axis=1)}, rows,
                          epoch_offset=0.0)
        if c == GROUP + 3:
            continue
        row = 0
        for j, rid in enumerate(ids):
            for r in range(1 if rows is None else rows[j]):
                expected[(rid, r)] = (round((t0 + c + j / 1000) * 1000), 5.0 - j, x[row].tolist(), float(x[row].sum()))
                row += 1
    log.close()
    assert log.stats()["dropped"] == 1 + (GROUP + 3) % 3 and log.stats()["pending"] == 0  # the bad id's call
    assert log.stats()["logged"] == len(expected)
    assert "a request id holds a NUL character" in caplog.text
    table = prediction_windows.read_window(ctx, "m", with_labels=False).to_pylist()
    got = {(r["request_id"], r["row"]): (r["received_ms"], round(r["latency_ms"], 3), [r["input_0"], r["input_1"]],
                                         r["output:predict"]) for r in table}
    assert got == expected
