"""A monitor's cost per window: proportional to the window, not to the reference.

    python bench/monitor_window.py                 # references of 100k and 1M rows, windows of 10k and 100k
    python bench/monitor_window.py --repeat 1      # quicker

A monitor summarises its reference once, at creation, and stores the summary
as a blob (``keel.monitoring.summary_io``); each window then costs summarising
the window and binary searches into the stored reference (plus loading the
blob once per pass). This script builds references of two
sizes from ``bench/drift.py``'s seeded generator (25 columns, 8 drifted in the
windows), stores each summary once, and times what one window costs against
each: load the stored summary + ``detect_drift`` on the window (median of
``--repeat``, in this process). If the cost follows the window and not the
reference, the two reference columns of each row are close.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    import pyarrow as pa

    from drift import generate
    from keel.monitoring.columns import summarize
    from keel.monitoring.drift import detect_drift
    from keel.monitoring.summary_io import dump_summary, load_summary

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--references", default="100000,1000000", help="reference sizes (rows)")
    ap.add_argument("--windows", default="10000,100000", help="window sizes (rows)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    references = [int(x) for x in args.references.split(",")]
    windows = [int(x) for x in args.windows.split(",")]

    stored: dict[int, tuple[bytes, float]] = {}
    for rows in references:
        started = time.perf_counter()
        blob = dump_summary(summarize(pa.table(generate(rows, seed=1, drift=False))))
        stored[rows] = (blob, time.perf_counter() - started)
        print(f"reference {rows:,} rows: summarised and stored once in {stored[rows][1]:.2f} s "
              f"({len(blob) / 2**20:.1f} MiB blob)", flush=True)

    loaded = {}
    for rows in references:
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            loaded[rows] = load_summary(stored[rows][0])
            times.append(time.perf_counter() - started)
        print(f"reference {rows:,} rows: loading its stored summary takes {statistics.median(times) * 1000:,.0f} ms "
              f"(once per monitor pass; a running `keel monitor run --every` keeps it)", flush=True)

    print("\n| window rows | " + " | ".join(f"per window, reference {r:,} rows" for r in references) + " |")
    print("|---:|" + "---:|" * len(references))
    for rows in windows:
        window = pa.table(generate(rows, seed=2, drift=True))
        cells = []
        for ref_rows in references:
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                result = detect_drift(loaded[ref_rows], window)
                times.append(time.perf_counter() - started)
            cells.append(f"{statistics.median(times) * 1000:,.0f} ms ({len(result.drifted)} columns flagged)")
        print(f"| {rows:,} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
