"""Running the inference server: options, the app with its prediction log, uvicorn.

Every server process (and worker) spools predictions under ``$KEEL_HOME/spool``.
Each open segment is locked by its writer; a process that crashed leaves its
segments unlocked, and the next server to start seals and ingests them, so
nothing acknowledged is lost across a SIGKILL (keel/serving/spool.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.errors import ConfigError, InvalidInput
from keel.settings import Settings

log = logging.getLogger("keel.serving")
SPEC_ENV = "KEEL_SERVE_SPEC"


@dataclass
class ServeOptions:
    targets: list[str]
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_batch_size: int = 64
    max_wait_ms: float = 0.0
    max_queue: int = 256
    max_body_mb: float = 16.0
    log_predictions: bool = True
    native: bool = False
    access_log: bool = True
    auth: bool = False
    graceful_timeout: float = 30.0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def resolve(cls, targets: list[str], flags: dict[str, Any], table: dict[str, Any]) -> "ServeOptions":
        """Flags (None = not given) over keel.toml's [serve] table over defaults; bad values name the key."""
        names = {f.name for f in dataclasses.fields(cls)} - {"targets", "extra"}
        unknown = set(table) - names
        if unknown:
            raise ConfigError(f"keel.toml: unknown key(s) in [serve]: {', '.join(sorted(unknown))}; "
                              f"expected {', '.join(sorted(names))}")
        values = {**{k: v for k, v in table.items()}, **{k: v for k, v in flags.items() if v is not None}}
        options = cls(targets=list(targets), **values)
        for name, low in (("port", 0), ("workers", 1), ("max_batch_size", 1), ("max_queue", 1)):
            value = getattr(options, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"serve option {name} must be an integer >= {low}, got {value!r}")
        if not targets:
            raise InvalidInput("give at least one MODEL_URI to serve")
        return options


def build_app(options: ServeOptions, settings: Settings) -> Any:
    from keel.serving.app import InferenceApp
    from keel.serving.runtime import load_served

    models = [load_served(target, settings, native=options.native) for target in options.targets]
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise InvalidInput(f"two served models share a name ({', '.join(names)}); name them: NAME=URI")
    predlog = labels = None
    if options.log_predictions:
        from functools import partial

        from keel.service.predictions import attach_labels, ingest_segment
        from keel.serving.predlog import PredictionLog
        from keel.tracking.fluent import client_for

        ctx = client_for(settings).ctx
        predlog = PredictionLog(Path(settings.home) / "spool", partial(ingest_segment, ctx))
        labels = partial(attach_labels, ctx)
    return InferenceApp(models, max_batch_size=options.max_batch_size, max_wait_ms=options.max_wait_ms,
                        max_queue=options.max_queue, max_body_bytes=int(options.max_body_mb * 2**20),
                        predlog=predlog, labels=labels, access_log=options.access_log,
                        authenticate=TokenCheck(settings) if options.auth else None)


class TokenCheck:
    """Token -> role for ``--auth``, from the store; a result is reused for ``ttl`` seconds
    (a revoked token stops working within that time, without a store read per request)."""

    def __init__(self, settings: Settings, ttl: float = 1.0) -> None:
        from keel.tracking.fluent import client_for

        self._store = client_for(settings).ctx.store
        self._ttl = ttl
        self._seen: dict[str, tuple[float, str | None, str]] = {}

    def __call__(self, token: str) -> str:
        import time

        from keel.errors import PermissionDenied
        from keel.service.users import authenticate, hash_token

        key = hash_token(token)
        now = time.monotonic()
        hit = self._seen.get(key)
        if hit is None or now - hit[0] > self._ttl:
            if len(self._seen) > 10_000:  # bounded: made-up tokens must not grow it forever
                self._seen.clear()
            try:
                hit = (now, authenticate(self._store, token).role, "")
            except PermissionDenied as exc:
                hit = (now, None, str(exc))
            self._seen[key] = hit
        if hit[1] is None:
            raise PermissionDenied(hit[2])
        return hit[1]


def app_from_env() -> Any:
    """uvicorn's factory in each worker process when ``--workers`` > 1."""
    spec = json.loads(os.environ[SPEC_ENV])
    settings = Settings.load(spec.pop("settings"))
    return build_app(ServeOptions(**spec), settings)


def serve(options: ServeOptions, settings: Settings) -> None:
    import uvicorn

    # No proxy-header rewriting (nothing here reads the client address) and no Server header: less per request.
    common = dict(host=options.host, port=options.port, loop="uvloop", http="httptools", lifespan="on",
                  proxy_headers=False, server_header=False,
                  log_level="warning", access_log=False, timeout_graceful_shutdown=options.graceful_timeout,
                  backlog=2048, limit_concurrency=max(1000, options.max_queue * 4 * len(options.targets)))
    if options.workers == 1:
        app = build_app(options, settings)  # models load before the port opens: ready means ready
        _announce(app.models.values(), options)
        uvicorn.Server(uvicorn.Config(app, **common)).run()
        return
    overrides = {"home": str(settings.home), "store_uri": settings.store_uri, "artifact_uri": settings.artifact_uri,
                 "user": settings.user}
    os.environ[SPEC_ENV] = json.dumps({**dataclasses.asdict(options), "settings": overrides})
    print(f"keel serve: {options.workers} workers on http://{options.host}:{options.port}", file=sys.stderr,
          flush=True)
    uvicorn.run("keel.serving.server:app_from_env", factory=True, workers=options.workers, **common)


def _announce(models: Any, options: ServeOptions) -> None:
    for m in models:
        print(f"keel serve: {m.name} version {m.version} ({m.loaded.format}, engine {m.engine}) from {m.uri}",
              file=sys.stderr, flush=True)
    logging_state = "on" if options.log_predictions else "off"
    print(f"keel serve: listening on http://{options.host}:{options.port} (prediction logging {logging_state})",
          file=sys.stderr, flush=True)
