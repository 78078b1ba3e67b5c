"""Metric values stored in columnar chunks: one row per (run, key, flush).

A flush of 10,000 values of one metric writes one row holding three packed
arrays (steps, values, timestamps) instead of 10,000 rows: inserting rows one
by one was most of the cost of logging metrics, and the packed form is also
a third of the size. NaN and infinities are ordinary float64 values here.
Reading a history unpacks the chunks and orders by (step, timestamp); the
latest value per key, which search needs, is kept in ``latest_metrics``.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any, Iterable, Sequence

CHUNK_LIMIT = 100_000  # values per stored row, bounding one row's size (~2.4 MB)
COLUMNS = ("run_id", "key", "count", "first_step", "last_step", "steps", "vals", "timestamps")

# A metric row as buffered by the client: (run_id, key, value, is_nan, step, timestamp_ms)
Row = tuple


def pack(rows: Sequence[Row]) -> tuple[list[tuple], dict[str, dict]]:
    """Group buffered rows into chunk rows (in COLUMNS order) and a per-run summary.

    The summary (count, keys, step range, sha256 of the packed bytes) goes
    into the audit event, so the audit chain vouches for the stored values.
    """
    series: dict[tuple[str, str], tuple[list[int], list[float], list[int]]] = {}
    nan = float("nan")
    for run_id, key, value, is_nan, step, ts in rows:
        lists = series.get((run_id, key))
        if lists is None:
            lists = series[(run_id, key)] = ([], [], [])
        lists[0].append(step)
        lists[1].append(nan if is_nan else value)
        lists[2].append(ts)
    chunks: list[tuple] = []
    runs: dict[str, tuple[list[str], list[int], Any]] = {}
    for (run_id, key), (steps, vals, stamps) in series.items():
        keys, span, digest = runs.setdefault(run_id, ([], [], hashlib.sha256()))
        keys.append(key)
        for start in range(0, len(steps), CHUNK_LIMIT):
            s, v, t = steps[start:start + CHUNK_LIMIT], vals[start:start + CHUNK_LIMIT], stamps[start:start + CHUNK_LIMIT]
            n = len(s)
            packed = (struct.pack(f"<{n}q", *s), struct.pack(f"<{n}d", *v), struct.pack(f"<{n}q", *t))
            digest.update(b"".join(packed))
            low, high = min(s), max(s)
            span.extend((low, high))
            chunks.append((run_id, key, n, low, high, *packed))
    summary = {
        run_id: {"count": sum(len(series[(run_id, k)][0]) for k in keys), "keys": sorted(keys)[:50],
                 "steps": [min(span), max(span)], "sha256": digest.hexdigest()}
        for run_id, (keys, span, digest) in runs.items()
    }
    return chunks, summary


def unpack(chunks: Iterable[tuple[bytes, bytes, bytes]]) -> list[tuple[int, float, int]]:
    """(step, value, timestamp) of every value in the chunks, by step then time (stable)."""
    out: list[tuple[int, float, int]] = []
    for steps, vals, stamps in chunks:
        n = len(steps) // 8
        out.extend(zip(struct.unpack(f"<{n}q", steps), struct.unpack(f"<{n}d", vals),
                       struct.unpack(f"<{n}q", stamps)))
    out.sort(key=lambda x: (x[0], x[2]))
    return out
