"""Windows of served traffic: their boundaries, and a logged window split into what the checks need.

Pure functions over plain data: the service layer reads the window from the
prediction log (``keel.service.prediction_windows.read_window``) and stores what
comes out; nothing here touches a store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keel.errors import InvalidInput

__all__ = ["PREDICTION", "Window", "WindowData", "due_windows", "parse_duration", "split_window"]

# The model's answer, as a column of both the reference summary and each window:
# prediction drift is then one more column of the drift result.
PREDICTION = "prediction"
_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_META = ("request_id", "version", "row", "received_ms", "latency_ms", "label")
_OUTPUT = "output:"


def parse_duration(text: str, *, what: str = "window") -> int:
    """Milliseconds in ``"90s"``, ``"15m"``, ``"1h"``, ``"1d"``, ``"1w"`` (at least one second)."""
    match = _DURATION.match(str(text))
    if not match:
        raise InvalidInput(f"{what} must be a number and a unit (ms, s, m, h, d, w), like 15m or 1h; got {text!r}")
    ms = int(float(match.group(1)) * _UNITS[match.group(2)])
    if ms < 1000:
        raise InvalidInput(f"{what} must be at least 1s, got {text!r}")
    return ms


@dataclass(frozen=True)
class Window:
    start_ms: int
    end_ms: int


def due_windows(next_ms: int, window_ms: int, now_ms: int, max_windows: int) -> tuple[list[Window], int]:
    """The complete windows from ``next_ms`` up to ``now_ms``, at most the newest ``max_windows``.

    Returns them and how many older ones were skipped (a monitor that was
    not run for a long time catches up on recent traffic, not on all of it).
    """
    complete = max(0, (now_ms - next_ms) // window_ms)
    skipped = max(0, complete - max_windows)
    first = next_ms + skipped * window_ms
    return [Window(first + i * window_ms, first + (i + 1) * window_ms) for i in range(complete - skipped)], skipped


@dataclass(frozen=True)
class WindowData:
    """A window of logged traffic, split by role.

    Attributes:
        features: The model's input columns (named as the reference names them)
            plus the ``prediction`` column when the model's answer was logged.
        labels: Ground truth attached by request id (null where none arrived).
        scores: The positive class's probability for a binary classifier, else None.
        versions: The model versions that answered in the window.
    """

    features: pa.Table
    labels: pa.Array | None
    scores: np.ndarray | None
    versions: list[int]

    @property
    def rows(self) -> int:
        return self.features.num_rows


def split_window(table: pa.Table) -> WindowData:
    """Split a table from ``read_window`` into input features, prediction, labels and scores."""
    names = table.column_names
    features = [n for n in names if n not in _META and not n.startswith(_OUTPUT)]
    columns = {n.removeprefix("input:"): table[n] for n in features}
    answer = next((n for n in (f"{_OUTPUT}label", f"{_OUTPUT}prediction") if n in names), None)
    if answer is not None:
        columns[PREDICTION] = table[answer]
    probabilities = sorted((n for n in names if n.startswith(f"{_OUTPUT}probabilities_")),
                           key=lambda n: int(n.rsplit("_", 1)[1]))
    scores = None
    if len(probabilities) == 2:
        scores = table[probabilities[1]].to_numpy().astype(np.float64)
    labels = table["label"].combine_chunks() if "label" in names else None
    if labels is not None and labels.null_count == len(labels):
        labels = None
    versions = sorted(pc.unique(table["version"]).to_pylist()) if "version" in names and table.num_rows else []
    return WindowData(pa.table(columns) if columns else pa.table({}), labels, scores, versions)
