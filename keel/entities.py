"""Plain, frozen records that the API returns. No behaviour, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class RunStatus:
    """Run states. A run starts RUNNING and ends in one of the others."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"
    TERMINAL = frozenset({FINISHED, FAILED, KILLED})
    ALL = frozenset({RUNNING, FINISHED, FAILED, KILLED})


@dataclass(frozen=True)
class Experiment:
    id: str
    name: str
    created_at: int  # ms since epoch, UTC


@dataclass(frozen=True)
class Source:
    """Where the code of a run came from."""

    commit: str | None = None
    dirty: bool | None = None
    entry_point: str | None = None


@dataclass(frozen=True)
class Metric:
    key: str
    value: float
    step: int
    timestamp: int  # ms since epoch, UTC


@dataclass(frozen=True)
class Run:
    id: str
    experiment_id: str
    name: str
    status: str
    start_time: int
    end_time: int | None
    user: str
    source: Source
    parent_run_id: str | None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # latest value per key

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ArtifactInfo:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class DatasetInfo:
    id: str
    name: str
    digest: str
    source: str | None
    schema: list[dict[str, Any]]
    num_rows: int
    profile: dict[str, Any]
    data_sha256: str | None = None  # blob of the data itself, when saved
    context: str | None = None  # how a run used it ("training", "evaluation", ...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    time: str
    actor: str
    action: str
    object_type: str
    object_id: str
    details: str  # canonical JSON text, exactly as hashed
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
