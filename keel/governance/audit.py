"""The audit chain as pure functions: canonical form, hashing, verification.

Each event's ``hash`` is the sha256 of its canonical form, which includes the
previous event's hash (``prev_hash``). Editing, deleting, inserting or
reordering any event therefore breaks the chain at that event, and
:func:`verify_chain` names the first sequence number where it breaks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable

GENESIS_HASH = "0" * 64


def canonical_details(details: dict[str, Any]) -> str:
    """Details as canonical JSON text (sorted keys, no spaces): stored verbatim."""
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def event_hash(
    seq: int, time: str, actor: str, action: str, object_type: str, object_id: str,
    details: str, prev_hash: str,
) -> str:
    """sha256 (hex) of one event's canonical form."""
    payload = json.dumps(
        [seq, time, actor, action, object_type, object_id, details, prev_hash],
        separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """Outcome of :func:`verify_chain`."""

    ok: bool
    events_checked: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    reason: str | None = None


def verify_chain(events: Iterable[Any], head_seq: int, head_hash: str) -> ChainReport:
    """Check events (rows with the audit columns, ordered by seq) against the head.

    Detects: a changed field (hash mismatch), a removed or inserted event
    (sequence gap or prev_hash mismatch), reordering (prev_hash mismatch) and a
    truncated tail (the last event is not the recorded head).
    """
    expected_seq, prev, checked = 1, GENESIS_HASH, 0
    for ev in events:
        if ev.seq != expected_seq:
            missing = "missing" if ev.seq > expected_seq else "duplicate or out of order"
            return _bad(checked, head_seq, head_hash, min(ev.seq, expected_seq),
                        f"expected event {expected_seq}, found {ev.seq} ({missing})")
        if ev.prev_hash != prev:
            return _bad(checked, head_seq, head_hash, ev.seq,
                        "prev_hash does not match the previous event (removed, inserted or reordered)")
        recomputed = event_hash(ev.seq, ev.time, ev.actor, ev.action, ev.object_type,
                                ev.object_id, ev.details, ev.prev_hash)
        if recomputed != ev.hash:
            return _bad(checked, head_seq, head_hash, ev.seq, "content does not match its hash (edited)")
        prev, expected_seq, checked = ev.hash, expected_seq + 1, checked + 1
    if checked != head_seq or prev != head_hash:
        return _bad(checked, head_seq, head_hash, checked + 1 if checked < head_seq else head_seq,
                    f"chain ends at event {checked} but the recorded head is event {head_seq}")
    return ChainReport(True, checked, head_seq, head_hash)


def _bad(checked: int, head_seq: int, head_hash: str, seq: int, reason: str) -> ChainReport:
    return ChainReport(False, checked, head_seq, head_hash, first_bad_seq=seq, reason=reason)
