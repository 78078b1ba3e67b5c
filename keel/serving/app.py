"""The inference server's ASGI app: Open Inference Protocol v2 routes, /predict, /metrics, labels.

A plain ASGI callable rather than a framework: the whole hot path (route,
read body, decode, validate, batch, encode) is a few dozen lines, and a
framework's routing and request objects would cost more than the model call
for small models (see bench/serving.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sys
import threading
import time
from typing import Any, Awaitable, Callable

import numpy as np
import orjson

from keel import __version__
from keel.serving import v2
from keel.serving.batcher import Batcher, Overloaded, Pending
from keel.serving.metrics import ServerMetrics
from keel.serving.runtime import ServedModel

log = logging.getLogger("keel.serving")
# For bench/serving_log_toggle.py only: skip the prediction log in every other phase of this many
# seconds, so that one process measures logging's cost against itself. Never set in production.
_LOG_TOGGLE_S = float(os.environ.get("KEEL_BENCH_LOG_TOGGLE_S", "0") or 0)
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
_JSON = [(b"content-type", b"application/json")]


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers or []


class InferenceApp:
    def __init__(self, models: list[ServedModel], *, max_batch_size: int = 64, max_wait_ms: float = 0.0,
                 max_queue: int = 256, max_body_bytes: int = 16 * 2**20, predlog: Any = None,
                 labels: Callable[[str, list[tuple[str, Any]]], int] | None = None,
                 access_log: bool = True, authenticate: Callable[[str], str] | None = None) -> None:
        self.models = {m.name: m for m in models}
        self._authenticate = authenticate  # token -> role; None: no authentication (the default)
        self.predlog = predlog
        self._labels = labels
        self.max_body = max_body_bytes
        self.batchers = {m.name: Batcher(m.predict, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
                                         max_queue=max_queue, on_batch=self._batch_done(m)) for m in models}
        self.metrics = ServerMetrics(lambda: self.batchers, predlog.stats if predlog is not None else None)
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(4).hex()
        self._access = AccessLog() if access_log else None
        self.ready = True

    # -- ASGI ----------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self._access is not None:
                    self._access.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.ready = False
                await asyncio.get_running_loop().run_in_executor(None, self.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    def close(self) -> None:
        """After the last request: stop batch threads, flush the prediction log, flush access logs."""
        for batcher in self.batchers.values():
            batcher.close()
        if self.predlog is not None:
            self.predlog.close()
        if self._access is not None:
            self._access.stop()

    async def _http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        model, route = "", path
        try:
            if self._authenticate is not None and path not in ("/v2/health/live", "/v2/health/ready"):
                self._check_token(scope, path)
            parts = path.strip("/").split("/")
            if parts[0] == "v2" and len(parts) >= 3 and parts[1] == "models":
                model, route = parts[2], _route_name(parts[3:])
                status, body, headers = await self._model_route(method, parts[3:], model, scope, receive)
            else:
                if path.startswith("/models/") and path.endswith("/predict"):
                    model, route = path[len("/models/"):-len("/predict")], "predict"
                status, body, headers = await self._other_route(method, path, scope, receive)
        except HTTPError as exc:
            status, body, headers = exc.status, v2.error_body(str(exc)), _JSON + exc.headers
        except Exception as exc:  # the server answers and stays up, whatever happened
            log.exception("keel serve: unexpected error on %s %s", method, path)
            status, body, headers = 500, v2.error_body(f"internal error: {type(exc).__name__}: {exc}"), _JSON
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        seconds = time.perf_counter() - started
        if model and model not in self.models:
            model, route = "", "unknown-model"  # a client's made-up names must not grow the label set
        elif not model and status == 404:
            route = "unknown-route"
        self.metrics.request(model, route, status, seconds)
        if self._access is not None:
            self._access.add(method, path, status, seconds, model)

    async def _model_route(self, method: str, rest: list[str], name: str, scope: dict[str, Any],
                           receive: Receive) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        version = None
        if len(rest) >= 2 and rest[0] == "versions":
            version, rest = rest[1], rest[2:]
        action = rest[0] if rest else ""
        if len(rest) > 1:
            raise HTTPError(404, f"no route {scope['path']!r}")
        served = self._model(name, version)
        if action == "infer":
            _method(method, "POST")
            return await self._infer(served, scope, receive)
        if action == "labels":
            _method(method, "POST")
            return await self._post_labels(served, scope, receive)
        if action == "ready":
            _method(method, "GET")
            return 200, orjson.dumps({"name": served.name, "ready": self.ready}), _JSON
        if action == "":
            _method(method, "GET")
            return 200, orjson.dumps(served.metadata()), _JSON
        raise HTTPError(404, f"no route {scope['path']!r}")

    async def _other_route(self, method: str, path: str, scope: dict[str, Any],
                           receive: Receive) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if path == "/v2/health/live":
            return 200, b'{"live":true}', _JSON
        if path == "/v2/health/ready":
            return (200 if self.ready else 503), orjson.dumps({"ready": self.ready}), _JSON
        if path in ("/v2", "/v2/"):
            return 200, orjson.dumps({"name": "keel", "version": __version__,
                                      "extensions": ["binary_tensor_data", "model_labels"]}), _JSON
        if path == "/metrics":
            return 200, self.metrics.render(), [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
        if path == "/predict" or (path.startswith("/models/") and path.endswith("/predict")):
            _method(method, "POST")
            if path == "/predict":
                if len(self.models) != 1:
                    raise HTTPError(400, f"several models are served ({', '.join(self.models)}): "
                                         "use /models/NAME/predict")
                served = next(iter(self.models.values()))
            else:
                served = self._model(path[len("/models/"):-len("/predict")], None)
            return await self._predict_json(served, scope, receive)
        raise HTTPError(404, f"no route {path!r}; see /v2/models/NAME/infer, /predict, /metrics")

    def _check_token(self, scope: dict[str, Any], path: str) -> None:
        """--auth: a bearer token of a viewer (an editor to post labels); health routes stay open."""
        from keel.governance.roles import EDITOR, VIEWER, allows

        header = _header(scope, b"authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPError(401, "this server needs an API token: send 'Authorization: Bearer keel_...'",
                            [(b"www-authenticate", b"Bearer")])
        try:
            role = self._authenticate(token.strip())
        except Exception as exc:  # PermissionDenied: unknown, revoked, expired, disabled
            raise HTTPError(401, str(exc), [(b"www-authenticate", b"Bearer")]) from None
        needed = EDITOR if path.endswith("/labels") else VIEWER
        if not allows(role, needed):
            raise HTTPError(403, f"the token's role ({role}) may not do this; {needed} or higher is needed")

    # -- handlers ----------------------------------------------------------------------
    def _model(self, name: str, version: str | None) -> ServedModel:
        served = self.models.get(name)
        if served is None:
            raise HTTPError(404, f"unknown model {name!r}; serving: {', '.join(self.models)}")
        if version is not None and version != served.version:
            raise HTTPError(404, f"model {name!r} has no version {version!r} here (serving version {served.version})")
        return served

    async def _infer(self, served: ServedModel, scope: dict[str, Any],
                     receive: Receive) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        body = await self._body(scope, receive)
        header_length = _header(scope, b"inference-header-content-length")
        try:
            request = v2.decode_request(body, int(header_length) if header_length is not None else None)
            arrays, rows = served.validate(request)
        except (v2.ProtocolError, ValueError) as exc:
            raise HTTPError(400, str(exc)) from None
        request_id = request.id or self._new_id()
        outputs = await self._run(served, arrays, rows, request_id)
        wanted = request.outputs or {name: request.binary_default for name in served.output_names}
        chosen = [(name, outputs[name], binary) for name, binary in wanted.items()]
        payload, head = v2.encode_response(served.name, served.version, request_id, chosen)
        headers = [(b"content-type", b"application/octet-stream" if head else b"application/json")]
        if head is not None:
            headers.append((b"inference-header-content-length", str(head).encode()))
        return 200, payload, headers

    async def _predict_json(self, served: ServedModel, scope: dict[str, Any],
                            receive: Receive) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        body = await self._body(scope, receive)
        try:
            doc = orjson.loads(body)
            request = v2.InferRequest(doc.get("id") if isinstance(doc, dict) else None,
                                      _plain_tensors(served, doc), None, False)
            if isinstance(request.id, str):
                v2.check_request_id(request.id)
            arrays, rows = served.validate(request)
        except (orjson.JSONDecodeError, v2.ProtocolError, ValueError) as exc:
            raise HTTPError(400, str(exc)) from None
        request_id = request.id if isinstance(request.id, str) else self._new_id()
        outputs = await self._run(served, arrays, rows, request_id)
        answer: dict[str, Any] = {"id": request_id, "model": served.name, "version": served.version}
        answer["predictions"] = outputs["label" if served.classifier else "prediction"]
        if served.classifier:
            answer["probabilities"] = outputs["probabilities"]
        return 200, orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY), _JSON

    async def _run(self, served: ServedModel, arrays: dict[str, np.ndarray], rows: int,
                   request_id: str) -> dict[str, np.ndarray]:
        item = Pending(arrays, rows, request_id, time.perf_counter())
        try:
            future = self.batchers[served.name].submit(item)
        except Overloaded as exc:
            raise HTTPError(503, f"overloaded: {exc}; retry shortly", [(b"retry-after", b"1")]) from None
        try:
            return await future
        except (ValueError, TypeError, KeyError) as exc:  # the model refused this input
            raise HTTPError(400, f"the model could not score this input: {type(exc).__name__}: {exc}") from None

    async def _post_labels(self, served: ServedModel, scope: dict[str, Any],
                           receive: Receive) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if self._labels is None:
            raise HTTPError(400, "prediction logging is off on this server: labels cannot be attached")
        doc = _json(await self._body(scope, receive))
        items = doc.get("labels") if isinstance(doc, dict) else None
        if not isinstance(items, list) or not items or not all(
                isinstance(i, dict) and isinstance(i.get("id"), str) and "label" in i for i in items):
            raise HTTPError(400, 'labels must be {"labels": [{"id": REQUEST_ID, "label": VALUE}, ...]}')
        pairs = [(i["id"], i["label"]) for i in items]
        stored = await asyncio.get_running_loop().run_in_executor(None, self._labels, served.name, pairs)
        return 200, orjson.dumps({"model": served.name, "labels": stored}), _JSON

    async def _body(self, scope: dict[str, Any], receive: Receive) -> bytes:
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise HTTPError(413, f"request body of {declared} bytes is over the {self.max_body} byte limit")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HTTPError(400, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise HTTPError(413, f"request body is over the {self.max_body} byte limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _new_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    def _batch_done(self, served: ServedModel) -> Callable[..., None]:
        name, version = served.name, int(served.version)

        def done(batch: list[Pending], inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
            rows = len(next(iter(inputs.values())))  # every request has one row or more (validate)
            self.metrics.batch(name, rows)
            if self.predlog is None or (_LOG_TOGGLE_S and int(time.monotonic() / _LOG_TOGGLE_S) % 2):
                return
            self.predlog.record(name, version, [p.request_id for p in batch], [p.started for p in batch],
                                time.perf_counter(), inputs, outputs,
                                None if rows == len(batch) else [p.rows for p in batch])
        return done


def _plain_tensors(served: ServedModel, doc: Any) -> list[v2.Tensor]:
    """``{"instances": [[...], ...]}``, ``{"records": [{col: v}, ...]}`` or ``{"inputs": {col: [...]}}``."""
    if not isinstance(doc, dict):
        raise v2.ProtocolError('the body must be {"instances": [...]}, {"records": [...]} or {"inputs": {...}}')
    names = [s.name for s in served.inputs]
    if "records" in doc and served.signature.columnar:
        records = doc["records"]
        if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
            raise v2.ProtocolError("'records' must be a non-empty list of objects")
        for i, r in enumerate(records):
            missing = [n for n in names if n not in r]
            if missing:
                raise v2.ProtocolError(f"records[{i}] lacks {', '.join(map(repr, missing))}")
        columns = {n: [r[n] for r in records] for n in names}
    elif "inputs" in doc and isinstance(doc["inputs"], dict):
        columns = doc["inputs"]
    elif "instances" in doc:
        instances = doc["instances"]
        if not isinstance(instances, list) or not instances:
            raise v2.ProtocolError("'instances' must be a non-empty list of rows")
        if not served.signature.columnar:
            columns = {names[0]: instances}
        else:
            if not all(isinstance(r, list) and len(r) == len(names) for r in instances):
                raise v2.ProtocolError(f"each instance must list {len(names)} values in the order "
                                       f"{', '.join(names)}")
            columns = {n: [r[j] for r in instances] for j, n in enumerate(names)}
    else:
        raise v2.ProtocolError('the body must hold "instances", "records" or "inputs"')
    tensors = []
    for name, values in columns.items():
        try:
            array = np.asarray(values)
        except ValueError:
            raise v2.ProtocolError(f"input {name!r}: ragged data (rows of different lengths)") from None
        if array.dtype.kind in "US":
            array = array.astype(object)
        tensors.append(v2.Tensor(name, v2.datatype_of(array), array.shape, array))
    return tensors


def _route_name(rest: list[str]) -> str:
    if len(rest) >= 2 and rest[0] == "versions":
        rest = rest[2:]
    return rest[0] if rest and rest[0] in ("infer", "ready", "labels") else "metadata"


def _method(method: str, allowed: str) -> None:
    if method != allowed:
        raise HTTPError(405, f"method {method} not allowed here; use {allowed}")


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPError(400, f"the request body is not valid JSON: {exc}") from None


def _quote(text: str) -> str:
    return orjson.dumps(text).decode()


class AccessLog:
    """Structured access log (JSON lines on stderr). The request path only appends a tuple; a
    thread formats and writes them in batches, so a slow stderr never stalls the event loop."""

    def __init__(self, interval: float = 0.2) -> None:
        self._lines: list[tuple[Any, ...]] = []
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="keel-access-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, method: str, path: str, status: int, seconds: float, model: str) -> None:
        self._lines.append((time.time(), method, path, status, seconds, model))

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def flush(self) -> None:
        lines, self._lines = self._lines, []  # one atomic swap under the GIL
        if lines:
            # Formatted by hand, the client's strings escaped by orjson: about 0.9 us a line against
            # 1.3 for one orjson.dumps of a dict, at one line per request.
            text = "".join('{"ts":%.6f,"method":%s,"path":%s,"status":%d,"ms":%.3f,"model":%s}\n'
                           % (t, _quote(m), _quote(p), s, sec * 1000, _quote(model) if model else "null")
                           for t, m, p, s, sec, model in lines)
            out = text.encode()
            try:
                sys.stderr.buffer.write(out)
                sys.stderr.buffer.flush()
            except (OSError, ValueError):  # stderr closed: the log is best effort, serving goes on
                pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.flush()
