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
import sys
from array import array
from collections import defaultdict
from typing import Iterable, Sequence

CHUNK_LIMIT = 100_000  # values per stored row, bounding one row's size (~2.4 MB)
COLUMNS = ("run_id", "key", "count", "first_step", "last_step", "steps", "vals", "timestamps")

# A metric row as buffered by the client: (run_id, key, value, is_nan, step, timestamp_ms)
Row = tuple


def pack(rows: Sequence[Row]) -> tuple[list[tuple], dict[str, dict]]:
    """Group buffered rows into chunk rows (in COLUMNS order) and a per-run summary.

    The summary (count, keys, step range, sha256 of the packed bytes) goes
    into the audit event, so the audit chain vouches for the stored values.
    """
    series: dict[tuple[str, str], tuple[array, array, array]] = {}
    for run_id, key, value, is_nan, step, ts in rows:
        arrays = series.get((run_id, key))
        if arrays is None:
            arrays = series[(run_id, key)] = (array("q"), array("d"), array("q"))
        arrays[0].append(step)
        arrays[1].append(float("nan") if is_nan else value)
        arrays[2].append(ts)
    chunks: list[tuple] = []
    summary: dict[str, dict] = defaultdict(lambda: {"count": 0, "keys": [], "steps": None, "_sha": hashlib.sha256()})
    for (run_id, key), (steps, vals, stamps) in series.items():
        run = summary[run_id]
        run["count"] += len(steps)
        run["keys"].append(key)
        low, high = min(steps), max(steps)
        run["steps"] = [low, high] if run["steps"] is None else [min(run["steps"][0], low), max(run["steps"][1], high)]
        for start in range(0, len(steps), CHUNK_LIMIT):
            part = slice(start, start + CHUNK_LIMIT)
            s, v, t = _le(steps[part]), _le(vals[part]), _le(stamps[part])
            run["_sha"].update(s + v + t)
            chunks.append((run_id, key, len(steps[part]), min(steps[part]), max(steps[part]), s, v, t))
    done = {}
    for run_id, run in summary.items():
        sha = run.pop("_sha").hexdigest()
        done[run_id] = {**run, "keys": sorted(run["keys"])[:50], "sha256": sha}
    return chunks, done


def unpack(chunks: Iterable[tuple[bytes, bytes, bytes]]) -> list[tuple[int, float, int]]:
    """(step, value, timestamp) of every value in the chunks, by step then time (stable)."""
    out: list[tuple[int, float, int]] = []
    for steps, vals, stamps in chunks:
        s, v, t = _from_le("q", steps), _from_le("d", vals), _from_le("q", stamps)
        out.extend(zip(s, v, t))
    out.sort(key=lambda x: (x[0], x[2]))
    return out


def _le(values: array) -> bytes:
    if sys.byteorder == "big":  # stored little-endian whatever the machine
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _from_le(typecode: str, data: bytes) -> array:
    values = array(typecode)
    values.frombytes(bytes(data))
    if sys.byteorder == "big":
        values.byteswap()
    return values
