"""Every keel setting, declared once: name, type, default and a line of doc.

Resolution order, first found wins: an explicit override (CLI flag or keyword
argument), the ``KEEL_*`` environment variable, ``keel.toml`` in the working
directory, the default. ``keel.toml`` holds the same names in lower case
without the prefix (``store_uri = "..."``); its other tables (policies,
serving, ...) are read by the capability that owns them via :func:`load_toml`.
"""

from __future__ import annotations

import getpass
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from keel.errors import ConfigError

TOML_FILE = "keel.toml"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): still need an actor name
        return "unknown"


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true/false, got {text!r}")


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with :meth:`Settings.load`."""

    home: Path = field(metadata={"doc": 'KEEL_HOME: local state folder (embedded store, artifacts). Default ``./.keel``.'})
    store_uri: str = field(metadata={"doc": 'KEEL_STORE_URI: SQLAlchemy URL of the metadata store. Default ``sqlite:///$KEEL_HOME/keel.db``.'})
    artifact_uri: str = field(metadata={"doc": 'KEEL_ARTIFACT_URI: fsspec URL or path of the artifact store. Default ``$KEEL_HOME/artifacts``.'})
    tracking_uri: str | None = field(metadata={"doc": 'KEEL_TRACKING_URI: ``http(s)://`` address of a keel server; set means remote mode.'})
    token: str | None = field(metadata={"doc": 'KEEL_TOKEN: API token for the keel server.'})
    user: str = field(metadata={"doc": 'KEEL_USER: actor name recorded in embedded mode. Default: the OS user.'})
    metric_flush_interval: float = field(metadata={"doc": 'KEEL_METRIC_FLUSH_INTERVAL: seconds buffered metrics may wait before a background flush.'})
    metric_buffer_size: int = field(metadata={"doc": 'KEEL_METRIC_BUFFER_SIZE: buffered metric values that trigger a flush from the logging call.'})
    allow_nonfinite_metrics: bool = field(metadata={"doc": 'KEEL_ALLOW_NONFINITE_METRICS: accept NaN and +/-inf metric values (a diverging loss is information).'})
    sqlite_busy_timeout: float = field(metadata={"doc": 'KEEL_SQLITE_BUSY_TIMEOUT: seconds a SQLite writer waits for the lock before failing.'})
    ray_address: str | None = field(default=None, metadata={"doc": 'KEEL_RAY_ADDRESS: the Ray cluster of `--executor ray` (``ray://head:10001`` or host:port). Default: a local Ray.'})
    # Tables of keel.toml (no environment variable): read as they are, checked by their users.
    policy: Mapping[str, Any] = field(default_factory=dict, compare=False, metadata={
        "table": True, "doc": '[policy]: promotion checks and approvals per alias (docs/governance.md).'})
    serve: Mapping[str, Any] = field(default_factory=dict, compare=False, metadata={
        "table": True, "doc": '[serve]: defaults of `keel serve` flags (docs/serving.md).'})
    profiles: Mapping[str, Any] = field(default_factory=dict, compare=False, metadata={
        "table": True, "doc": '[profiles.STAGE]: resources per stage for deploys (docs/deploy.md).'})

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> "Settings":
        """Resolve every setting from overrides, environment, keel.toml and defaults."""
        env = os.environ if env is None else env
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        toml = load_toml(cwd)
        raw: dict[str, Any] = {}
        for f in fields(cls):
            name = f.name
            if f.metadata.get("table"):
                raw[name] = overrides.get(name, toml.get(name, {}))
                continue
            env_name = f"KEEL_{name.upper()}"
            if name in overrides:
                raw[name] = overrides[name]
            elif env.get(env_name, "") != "":
                raw[name] = env[env_name]
            elif name in toml:
                raw[name] = toml[name]
        home = Path(raw.get("home", ".keel")).expanduser()
        defaults: dict[str, Any] = {
            "home": home,
            "store_uri": f"sqlite:///{home.absolute() / 'keel.db'}",
            "artifact_uri": str(home.absolute() / "artifacts"),
            "tracking_uri": None,
            "token": None,
            "user": _os_user(),
            "metric_flush_interval": 2.0,
            "metric_buffer_size": 10_000,
            "allow_nonfinite_metrics": True,
            "sqlite_busy_timeout": 30.0,
            "ray_address": None,
        }
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.metadata.get("table"):
                if not isinstance(raw[f.name], Mapping):
                    raise ConfigError(f"keel.toml: [{f.name}] must be a table, got {raw[f.name]!r}")
                values[f.name] = raw[f.name]
                continue
            value = raw.get(f.name, defaults[f.name])
            values[f.name] = _coerce(f.name, value, defaults[f.name])
        return cls(**values)


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Convert an env/TOML value to the declared type, naming the setting on failure."""
    kind = Path if isinstance(default, Path) else type(default)
    if value is None or default is None:
        return value if value is None else str(value)
    try:
        if kind is bool:
            return value if isinstance(value, bool) else _bool(str(value))
        if kind is Path:
            return Path(value).expanduser()
        if kind is float:
            result = float(value)
            if result <= 0:
                raise ValueError("must be > 0")
            return result
        if kind is int:
            result = int(value)
            if result <= 0:
                raise ValueError("must be > 0")
            return result
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"setting {name} (KEEL_{name.upper()}) must be a {kind.__name__}: got {value!r} ({exc})"
        ) from None


def load_toml(cwd: Path | None = None) -> dict[str, Any]:
    """Parse ``keel.toml`` in ``cwd`` (default: the working directory); {} if absent."""
    path = (cwd or Path.cwd()) / TOML_FILE
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def describe() -> list[tuple[str, str]]:
    """(variable, doc) for every setting, for the docs and `keel --help`."""
    rows = []
    for f in fields(Settings):
        var, _, doc = f.metadata["doc"].partition(": ")
        rows.append((var, doc))
    return rows
