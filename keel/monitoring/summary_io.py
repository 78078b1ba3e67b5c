"""A reference summary as bytes, and a summary built from a logged dataset profile.

A monitor summarises its reference once, at creation, and stores the
summary as a blob; every later window is compared with it without reading
the reference data again. The bytes are an Arrow IPC stream per column
behind a JSON header: no pickle, so a stored summary cannot run code when
loaded, and the blob store checks its sha256 on every read anyway.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pyarrow as pa

from keel.errors import InvalidInput
from keel.monitoring.columns import CATEGORICAL, NUMERIC, ColumnSummary, Summary

__all__ = ["PROFILE_POINTS", "dump_summary", "load_summary", "summary_from_profile"]

_MAGIC = b"KEELSUM1"
# A profile keeps 101 quantiles; they are interpolated to this many points,
# which then stand in for the reference's sorted values. Tests then see a
# reference of this many rows: honest power, never a p-value that pretends
# the whole training set was compared.
PROFILE_POINTS = 1001
_FIELDS = ("name", "type", "kind", "rows", "missing", "non_finite", "n_unique")


def dump_summary(summary: Summary) -> bytes:
    """The summary as bytes (header + one Arrow IPC stream per column with data)."""
    header: dict[str, Any] = {"rows": summary.rows, "source": summary.source, "columns": []}
    payloads: list[bytes] = []
    for col in summary.columns.values():
        entry = {f: getattr(col, f) for f in _FIELDS}
        arrays = {}
        if col.values is not None:
            arrays["values"] = pa.array(col.values, pa.float64())
        if col.categories is not None and col.counts is not None:
            arrays["categories"] = col.categories
            arrays["counts"] = pa.array(col.counts, pa.int64())
        if arrays:
            entry["payload"] = len(payloads)
            payloads.append(_ipc(arrays))
        header["columns"].append(entry)
    head = json.dumps(header, separators=(",", ":")).encode()
    parts = [_MAGIC, struct.pack("<I", len(head)), head]
    for payload in payloads:
        parts += [struct.pack("<Q", len(payload)), payload]
    return b"".join(parts)


def load_summary(data: bytes) -> Summary:
    """The summary :func:`dump_summary` wrote."""
    if not data.startswith(_MAGIC):
        raise InvalidInput("not a keel reference summary (bad header)")
    (size,) = struct.unpack_from("<I", data, len(_MAGIC))
    pos = len(_MAGIC) + 4
    header = json.loads(data[pos:pos + size])
    pos += size
    payloads: list[dict[str, pa.Array]] = []
    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        pos += 8
        with pa.ipc.open_stream(pa.py_buffer(data[pos:pos + length])) as reader:
            table = reader.read_all()
        payloads.append({name: table[name].combine_chunks() for name in table.column_names})
        pos += length
    columns = {}
    for entry in header["columns"]:
        arrays = payloads[entry["payload"]] if "payload" in entry else {}
        values = arrays["values"].to_numpy() if "values" in arrays else None
        counts = arrays["counts"].to_numpy() if "counts" in arrays else None
        columns[entry["name"]] = ColumnSummary(**{f: entry[f] for f in _FIELDS}, values=values,
                                               categories=arrays.get("categories"), counts=counts)
    return Summary(header["rows"], columns, header.get("source"))


def summary_from_profile(profile: dict[str, Any], rows: int, source: str | None = None) -> tuple[Summary, list[str]]:
    """A reference summary from a logged dataset's column profile, and the columns it had to leave out.

    Numeric columns: the 101 profile quantiles, linearly interpolated to
    :data:`PROFILE_POINTS` points (the empirical CDF between quantiles is
    taken as linear). Categorical columns: the profile's frequencies, when
    they hold every category (none folded into ``other``).
    """
    columns: dict[str, ColumnSummary] = {}
    left_out: list[str] = []
    for name, prof in profile.items():
        kind, missing = prof.get("kind"), int(prof.get("missing") or 0)
        base = {"name": name, "type": prof.get("type", "unknown"), "rows": rows, "missing": missing}
        quantiles = (prof.get("quantiles") or {}).get("values")
        freq = prof.get("frequencies")
        if freq and not freq.get("other") and freq.get("values"):
            order = np.argsort(np.asarray(freq["values"], dtype=object).astype(str), kind="stable")
            values = [freq["values"][i] for i in order]
            counts = np.asarray([freq["counts"][i] for i in order], np.int64)
            if kind == NUMERIC:  # a low-cardinality integer column: its exact values, repeated by count
                sample = np.repeat(np.asarray(values, np.float64), counts)
                sample.sort()
                columns[name] = ColumnSummary(**base, kind=NUMERIC, values=sample, n_unique=len(values))
            else:
                cats = pa.array(values)
                if pa.types.is_string(cats.type):
                    cats = cats.cast(pa.large_string())
                columns[name] = ColumnSummary(**base, kind=CATEGORICAL, categories=cats, counts=counts,
                                              n_unique=len(values))
        elif kind == NUMERIC and quantiles and all(q is not None for q in quantiles):
            levels = np.asarray(prof["quantiles"]["levels"], np.float64)
            points = np.interp(np.linspace(0, 1, PROFILE_POINTS), levels, np.asarray(quantiles, np.float64))
            columns[name] = ColumnSummary(**base, kind=NUMERIC, values=points,
                                          non_finite=int(prof.get("infinite") or 0),
                                          n_unique=int(prof.get("n_unique") or len(np.unique(points))))
        else:
            left_out.append(name)
    return Summary(rows, columns, source), left_out


def _ipc(arrays: dict[str, pa.Array]) -> bytes:
    table = pa.table(arrays)  # a column holds sorted values, or categories with their counts
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
